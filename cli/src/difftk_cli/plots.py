"""Figures the CLI writes as PNG (matplotlib, Agg backend, imported only when a figure is drawn)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    import io

    from difftk.runtime.files import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def plot_schedules(curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """ᾱ(t) and log-SNR λ(t) of each schedule: ``curves[name] = (t, alpha_bar, log_snr)``."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    drawn: list[np.ndarray] = []
    for name, (t, ab, snr) in curves.items():
        # a curve that coincides with one drawn before (linear and vp do) is drawn dashed on top,
        # and the legend says which it matches, so neither hides the other
        same = next((k for k, prev in zip(curves, drawn, strict=False) if prev.shape == ab.shape
                     and np.allclose(prev, ab, rtol=0.0, atol=2e-3)), None)
        style = {"linestyle": (0, (4, 3)), "linewidth": 2.2} if same else {"linewidth": 1.6}
        label = f"{name} (≈ {same})" if same else name
        left.plot(t, ab, label=label, **style)
        right.plot(t, snr, label=label, **style)
        drawn.append(ab)
    left.set(xlabel="t", ylabel="ᾱ(t)", title="signal left, ᾱ(t)")
    right.set(xlabel="t", ylabel="λ(t) = log ᾱ/(1−ᾱ)", title="log-SNR")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_grid(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One panel per metric: value ± spread against steps (or guidance scale when steps are fixed),
    one line per checkpoint × sampler × the other grid dimension."""
    plt = _pyplot()
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    steps = sorted({r["steps"] for r in rows if r["steps"] != ""})
    x_key = "steps" if len(steps) > 1 or len({r["scale"] for r in rows}) <= 1 else "scale"
    other = "scale" if x_key == "steps" else "steps"
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        series: dict[str, list] = {}
        for r in rows:
            if r["metric"] != metric:
                continue
            label = f"{r['schedule']} · {r['sampler']}" + (f" · {other} {r[other]}" if r[other] != "" else "")
            if len({r2["checkpoint"] for r2 in rows}) > len({r2["schedule"] for r2 in rows}):
                label = f"{Path(r['checkpoint']).parent.name or r['checkpoint']} · {label}"
            series.setdefault(label, []).append((float(r[x_key] or 0), r["value"], r["spread"]))
        for label, points in series.items():
            points.sort()
            x, y, e = (np.array(v, dtype=float) for v in zip(*points, strict=True))
            ax.errorbar(x, y, yerr=np.nan_to_num(e), marker="o", capsize=3, label=label)
        unit = next((r["unit"] for r in rows if r["metric"] == metric and r["unit"]), "")
        ax.set(xlabel=x_key if x_key == "steps" else "guidance scale", ylabel=f"{metric}{f' ({unit})' if unit else ''}",
               title=metric)
        if x_key == "steps":  # log axis, ticked at the step counts measured (25, not 2×10¹)
            from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator([float(s) for s in steps]))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
