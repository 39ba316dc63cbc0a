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

    from difftk.runtime.files import PNG_MARK, atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": PNG_MARK})
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


def _short(checkpoint: str) -> str:
    """A checkpoint as a legend names it: a run directory's name, not its checkpoint file's."""
    name, sep, pooled = checkpoint.partition(" (+")  # "runs/a (+2 seeds)": the first of pooled runs
    path = Path(name)
    return (path.parent.name if path.suffix == ".safetensors" and path.parent.name else name) + sep + pooled


def plot_grid(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One panel per metric: value ± spread against steps (or guidance scale when steps are fixed),
    one line per checkpoint × sampler × the other grid dimension. Rows with ``k`` > 1 (cells
    pooled over seeds) carry their mean and its 95 % confidence interval as value and spread."""
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
                label = f"{_short(str(r['checkpoint']))} · {label}"
            series.setdefault(label, []).append((float(r[x_key] or 0), r["value"], r["spread"]))
        for label, points in series.items():
            points.sort()
            x, y, e = (np.array(v, dtype=float) for v in zip(*points, strict=True))
            ax.errorbar(x, y, yerr=np.nan_to_num(e), marker="o", capsize=3, label=label)
        unit = next((r["unit"] for r in rows if r["metric"] == metric and r["unit"]), "")
        pooled = any(int(r.get("k", 1)) > 1 for r in rows if r["metric"] == metric)
        ax.set(xlabel=x_key if x_key == "steps" else "guidance scale", ylabel=f"{metric}{f' ({unit})' if unit else ''}",
               title=f"{metric} (mean ± 95% CI)" if pooled else metric)
        if x_key == "steps":  # log axis, ticked at the step counts measured (25, not 2×10¹)
            from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator([float(s) for s in steps]))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def group_label(runs: Sequence[Any]) -> str:
    """How a legend names a group of runs that differ only by seed: their directories and seeds."""
    names = [str(r.root) for r in runs]
    if len(runs) == 1:
        return names[0]
    shown = ", ".join(names) if len(names) <= 3 else f"{names[0]} + {len(names) - 1} more"
    seeds = [r.seed for r in runs if r.seed is not None]
    return f"{shown} (seeds {', '.join(map(str, seeds))})" if seeds else shown


def curve_quantities(groups: Sequence[Sequence[Any]]) -> list[str]:
    """The panels of :func:`draw_curves`: ``loss`` (when a run logged it), then every metric logged."""
    runs = [r for g in groups for r in g]
    metrics = list(dict.fromkeys(m for r in runs for m in r.metrics))
    return (["loss"] if any(r.loss for r in runs) else []) + metrics


def draw_curves(groups: Sequence[Sequence[Any]], smoothing: float = 0.6) -> Any:
    """A figure with one panel per quantity (:func:`curve_quantities`) against the training step.

    ``groups`` are lists of :class:`difftk.training.history.RunHistory` that differ only by seed; each
    group has one colour. The loss is drawn raw (faint) and smoothed
    (:func:`~difftk.training.history.smoothed`, weight ``smoothing``); a metric as its values with
    their spread. A group of several runs adds their mean (bold), at the steps all of them logged.
    """
    from difftk.training.history import mean_curve, smoothed

    plt = _pyplot()
    quantities = curve_quantities(groups)
    cols = min(3, len(quantities))
    rows = -(-len(quantities) // cols)
    fig = plt.figure(figsize=(5 * cols, 3.8 * rows))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, quantity in enumerate(quantities):
        ax = fig.add_subplot(rows, cols, i + 1)
        low, high = np.inf, -np.inf
        for g, runs in enumerate(groups):
            colour, several = colours[g % len(colours)], len(runs) > 1
            curves = []
            for j, run in enumerate(runs):
                label = group_label(runs) if j == 0 and not several else None
                if quantity == "loss":
                    if not run.loss:
                        continue
                    steps, values = (list(v) for v in zip(*run.loss, strict=True))
                    ax.plot(steps, values, color=colour, alpha=0.2, linewidth=0.8)
                    curve = smoothed(values, smoothing)
                    ax.plot(steps, curve, color=colour, alpha=0.55 if several else 1.0, linewidth=1.2, label=label)
                    curves.append(list(zip(steps, curve, strict=True)))
                    low, high = min(low, min(values)), max(high, max(values))
                elif quantity in run.metrics:
                    steps, values, spreads = (np.array(v, dtype=float) for v in zip(*run.metrics[quantity], strict=True))
                    ax.fill_between(steps, values - np.nan_to_num(spreads), values + np.nan_to_num(spreads),
                                    color=colour, alpha=0.12, linewidth=0)
                    ax.plot(steps, values, color=colour, marker="o", markersize=3, alpha=0.55 if several else 1.0,
                            linewidth=1.2, label=label)
                    curves.append(list(zip(steps.tolist(), values.tolist(), strict=True)))
            if several and curves:
                mean_steps, mean = mean_curve(curves)
                ax.plot(mean_steps, mean, color=colour, linewidth=2.4, label=f"{group_label(runs)}, mean")
        unit = next((r.units[quantity] for g in groups for r in g if quantity in r.units), "")
        title = f"loss (smoothed {smoothing:g}, raw faint)" if quantity == "loss" else quantity
        ax.set(xlabel="step", ylabel=quantity + (f" ({unit})" if unit else ""), title=title)
        if quantity == "loss" and low > 0 and high > 10 * low:  # a loss that falls by decades
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_curves(groups: Sequence[Sequence[Any]], path: str | Path, smoothing: float = 0.6) -> Path:
    """:func:`draw_curves`, written as PNG."""
    return _save(draw_curves(groups, smoothing), path)
