"""`difftk plot`: the training curves of one or several runs — the loss and every metric logged."""

from __future__ import annotations

import click
from difftk.training.history import read_run, replicate_groups
from rich.markup import escape

from difftk_cli.console import out
from difftk_cli.options import Command, OutputPath
from difftk_cli.plots import curve_quantities, plot_curves


@click.command(cls=Command)
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", type=OutputPath("picture"), required=True, help="Write the figure here, as PNG.")
@click.option("--smooth", type=click.FloatRange(min=0, max=1, max_open=True), default=0.6, show_default=True,
              help="Weight of the moving average drawn over the raw loss; 0 = none.")
def plot(runs, output, smooth) -> None:
    """Draw the loss and every metric a RUN logged against the step, one panel per quantity.

    RUN is a run directory (`difftk train --out`) or its log.jsonl. The loss is drawn smoothed,
    the raw values faint; the metrics are those `difftk train --eval-every K --eval-metric NAME`
    measured, with their spread. Runs that differ only by their seed (as their checkpoints
    record) share a colour, and their mean is drawn bold.

    \b
    Examples:
      difftk plot runs/mnist -o curves.png
      difftk plot runs/cosine-s0 runs/cosine-s1 runs/linear-s0 runs/linear-s1 -o schedules.png --smooth 0.9
    """
    logs = [read_run(r) for r in runs]
    for log in logs:
        for note in log.skipped:
            out.print(escape(f"warning: {note}"))
    groups = replicate_groups(logs)
    path = plot_curves(groups, output, smoothing=smooth)
    panels = curve_quantities(groups)
    pooled = sum(len(g) > 1 for g in groups)
    said = f"; {pooled} group(s) of runs that differ only by seed, drawn with their mean" if pooled else ""
    out.print(escape(f"wrote {path}: {len(panels)} panel(s) ({', '.join(panels)}) for {len(logs)} run(s){said}"))
