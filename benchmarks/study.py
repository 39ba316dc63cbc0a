"""What the studies share: the small network, training one run per arm and seed through the CLI,
reading `difftk compare`'s tables back, and the bar chart with seeds as dots.

A study is a set of *arms* (ways of composing a pipeline) trained with the same network, data,
optimizer, budget and seeds, then sampled the same way; its script says which arms and how.
"""

from __future__ import annotations

import csv
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

DIFFTK = str(Path(sys.executable).with_name("difftk"))
#: the studies' class-conditional unet-attn: two levels, base 16 channels, one residual block,
#: attention at 14×14, no dropout (191,073 parameters with 10 classes)
NET = ["--set", "denoiser.base_channels=16", "--set", "denoiser.norm_groups=8", "--set", "denoiser.channel_mult=1,2",
       "--set", "denoiser.num_res_blocks=1", "--set", "denoiser.attention_resolutions=14", "--set", "denoiser.dropout=0"]


def lower_is_better(metric: str) -> bool:
    """Whether lower values of ``metric`` are better, as the metric's plugin declares (``better``);
    lower when it declares nothing, as for a distance."""
    from difftk.evaluation.summary import better_of

    return better_of(metric) != "higher"


def sh(*args: str) -> float:
    """Run a command, echoing it; return its wall time in seconds."""
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.time()
    subprocess.run(args, check=True)
    return time.time() - start


def train_arms(root: Path, arms: Mapping[str, Sequence[str]], steps: int, seeds: Sequence[int],
               batch_size: int = 32, lr: float = 1e-3) -> dict[str, str]:
    """Compose each arm (``difftk compose`` arguments) once and train it once per seed; runs that
    already have their checkpoint are kept. Returns {run directory: arm}."""
    runs = {}
    root.mkdir(parents=True, exist_ok=True)
    for name, compose in arms.items():
        pipeline = root / f"{name}.toml"
        if not pipeline.exists():
            sh(DIFFTK, "compose", *compose, "-o", str(pipeline))
        for seed in seeds:
            out = root / f"{name}-seed{seed}"
            if not (out / "checkpoint.safetensors").exists():
                took = sh(DIFFTK, "train", str(pipeline), "--data", "mnist", "--steps", str(steps), "--out", str(out),
                          "--batch-size", str(batch_size), "--lr", str(lr), "--seed", str(seed), "--sample-every", "0",
                          "--checkpoint-every", str(steps))
                (out / "train_seconds.txt").write_text(f"{took:.0f}\n")
            runs[str(out)] = name
    return runs


def train_seconds(root: Path, arm: str, seeds: Sequence[int]) -> float:
    """Mean wall time of an arm's training runs, in seconds."""
    return statistics.mean(float((root / f"{arm}-seed{s}" / "train_seconds.txt").read_text()) for s in seeds)


def per_arm(compare_csv: Path, runs: Mapping[str, str]) -> dict[str, dict[str, list[float]]]:
    """{metric: {arm: [value per training seed]}} from a `difftk compare` table."""
    values: dict[str, dict[str, list[float]]] = {}
    for row in csv.DictReader(compare_csv.open()):
        values.setdefault(row["metric"], {arm: [] for arm in dict.fromkeys(runs.values())})
        values[row["metric"]][runs[row["checkpoint"]]].append(float(row["value"]))
    return values


def verdicts(summary_csv: Path) -> dict[tuple[str, str], dict[str, str]]:
    """{(checkpoint, metric): summary row} from `difftk compare`'s summary.csv (mean, CI, Welch p)."""
    return {(row["checkpoint"], row["metric"]): row for row in csv.DictReader(summary_csv.open())}


def bar_plot(values: Mapping[str, Mapping[str, list[float]]], path: Path, title: str,
             symlog: Sequence[str] = ()) -> None:
    """One panel per metric: a bar per arm (mean ± sd), its seeds as dots. Metrics in ``symlog`` use
    a symmetric log scale (KID can be negative); FID uses a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(values), figsize=(4.2 * len(values), 3.6), squeeze=False)
    for ax, (metric, per) in zip(axes[0], values.items(), strict=True):
        base = metric.split()[0]  # a panel may be named "kid (clipped)"
        for i, vals in enumerate(per.values()):
            ax.bar(i, statistics.mean(vals), yerr=statistics.stdev(vals) if len(vals) > 1 else 0, capsize=5, alpha=0.6)
            ax.scatter([i] * len(vals), vals, color="black", s=12, zorder=3)
        long = max(map(len, per)) * len(per) > 36  # labels that would run into each other
        ax.set_xticks(range(len(per)), list(per), rotation=25 if long else 0, ha="right" if long else "center")
        if metric in symlog:
            ax.set_yscale("symlog", linthresh=1000)
        elif base == "fid" and all(v > 0 for vals in per.values() for v in vals):
            ax.set_yscale("log")
        ax.set(title=metric + ("\n(lower is better)" if lower_is_better(base) else "\n(higher is better)"))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10, y=1.0 + 0.05 * (title.count("\n") + 1))  # above the panels, any lines
    fig.savefig(path, dpi=110, bbox_inches="tight")
