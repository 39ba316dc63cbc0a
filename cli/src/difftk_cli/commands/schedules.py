"""`difftk schedules`: every registered noise schedule, side by side."""

from __future__ import annotations

import click
import numpy as np
import torch
from difftk.components import plugins
from difftk.maths.schedules import log_snr
from rich.markup import escape
from rich.table import Table

from difftk_cli.console import out
from difftk_cli.options import Command, OutputPath
from difftk_cli.plots import plot_schedules


def curves(points: int = 500) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """t, ᾱ(t) and log-SNR λ(t) = log ᾱ − log(1 − ᾱ) (:func:`difftk.maths.schedules.log_snr`) of every
    registered schedule (default options)."""
    t = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    out_curves = {}
    for info in plugins.registry():
        if info.kind != "schedule":
            continue
        schedule = info.instantiate()
        ab = schedule.alpha_bar(t).to(torch.float64)
        out_curves[info.name] = (t.numpy(), ab.numpy(), log_snr(schedule, t).numpy())
    return out_curves


@click.command(cls=Command)
@click.option("--plot", "plot_file", type=OutputPath("picture"), help="Draw ᾱ(t) and log-SNR(t) of every schedule here (PNG).")
def schedules(plot_file) -> None:
    """List every registered schedule with ᾱ and log-SNR at a few times, and optionally plot them.

    \b
    Examples:
      difftk schedules
      difftk schedules --plot schedules.png
    """
    data = curves()
    table = Table(title="difftk schedules (default options)", title_justify="left")
    table.add_column("schedule")
    table.add_column("plugin")
    for t in (0.25, 0.5, 0.75, 1.0):
        table.add_column(f"ᾱ({t:g})", justify="right")
    table.add_column("log-SNR range", justify="right")
    registry = plugins.registry()
    for name, (t, ab, snr) in data.items():
        info = registry.get("schedule", name)
        at = [ab[np.abs(t - v).argmin()] for v in (0.25, 0.5, 0.75, 1.0)]
        finite = snr[np.isfinite(snr)]
        table.add_row(name, info.plugin, *(f"{v:.3g}" for v in at), f"{finite.min():.1f} … {finite.max():.1f}")
    out.print(table)
    if plot_file:
        plot_schedules(data, plot_file)
        out.print(f"wrote {escape(str(plot_file))}")
