"""Paradigm study: ε-prediction, v-prediction, flow matching and EDM trained with the same network,
data, optimizer, budget and seeds on MNIST, and sampled the same way.

    .venv/bin/python benchmarks/paradigm_study.py [--out runs/paradigm-study] [--steps 1000] [--seeds 0,1,2]
                                                  [--n 500] [--metrics fid,kid,accuracy]

Each paradigm trains the same class-conditional unet-attn (two levels, base 16 channels, one
residual block, attention at 14×14, no dropout; 191 k parameters) for --steps steps of batch 32,
AdamW lr 1e-3, EMA 0.999, once per seed (the seed fixes the weights, the data order and the
noise):

  eps   cosine schedule, L_simple on ε (Ho et al. 2020; Nichol & Dhariwal 2021)
  v     cosine schedule, L_simple on v (Salimans & Ho 2022)
  flow  flow schedule, conditional flow matching, logit-normal τ (Lipman et al. 2023; Esser et al. 2024)
  edm   edm schedule, EDM's loss with log-normal σ and the edm parameterisation (Karras et al. 2022)

Every checkpoint is then sampled the same way — DDIM (η = 0), 25 steps, no clipping, --n samples
with labels 0..9 in turn, seed 0 — so the differences come from training alone, and scored with
`difftk compare`. The table gives mean ± sd over seeds, and Welch's t-test of each paradigm
against the best one (two-sided, at 5 %).
"""

from __future__ import annotations

import argparse
import csv
import math
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

DIFFTK = str(Path(sys.executable).with_name("difftk"))
NET = ["--set", "denoiser.base_channels=16", "--set", "denoiser.norm_groups=8", "--set", "denoiser.channel_mult=1,2",
       "--set", "denoiser.num_res_blocks=1", "--set", "denoiser.attention_resolutions=14", "--set", "denoiser.dropout=0"]
PARADIGMS = {
    "eps": ("cosine", "simple", "eps"),
    "v": ("cosine", "simple", "v"),
    "flow": ("flow", "flow-matching", "flow"),
    "edm": ("edm", "edm", "edm"),
}
LOWER_IS_BETTER = {"fid": True, "kid": True, "accuracy": False}


def sh(*args: str) -> float:
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.time()
    subprocess.run(args, check=True)
    return time.time() - start


def welch(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test (the core's :func:`difftk.maths.stats.welch_t_test`)."""
    from difftk.maths.stats import welch_t_test

    return welch_t_test(a, b).p


def train_all(root: Path, steps: int, seeds: list[int]) -> dict[str, str]:
    runs = {}
    for name, (schedule, objective, prediction) in PARADIGMS.items():
        pipeline = root / f"{name}.toml"
        if not pipeline.exists():
            root.mkdir(parents=True, exist_ok=True)
            sh(DIFFTK, "compose", "--schedule", schedule, "--sampler", "ddim", "--denoiser", "unet-attn", "--objective",
               objective, *NET, "--set", f"denoiser.prediction={prediction}", "-o", str(pipeline))
        for seed in seeds:
            out = root / f"{name}-seed{seed}"
            if not (out / "checkpoint.safetensors").exists():
                took = sh(DIFFTK, "train", str(pipeline), "--data", "mnist", "--steps", str(steps), "--out", str(out),
                          "--batch-size", "32", "--lr", "1e-3", "--seed", str(seed), "--sample-every", "0",
                          "--checkpoint-every", str(steps))
                (out / "train_seconds.txt").write_text(f"{took:.0f}\n")
            runs[str(out)] = name
    return runs


def plot(values: dict[str, dict[str, list[float]]], path: Path, title: str) -> None:
    """One panel per metric: a bar per paradigm (mean, ± sd), its seeds as dots; FID and KID on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(values), figsize=(4.2 * len(values), 3.6), squeeze=False)
    for ax, (metric, per) in zip(axes[0], values.items(), strict=True):
        for i, (name, vals) in enumerate(per.items()):
            ax.bar(i, statistics.mean(vals), yerr=statistics.stdev(vals) if len(vals) > 1 else 0, capsize=5, alpha=0.6)
            ax.scatter([i] * len(vals), vals, color="black", s=12, zorder=3)
        ax.set_xticks(range(len(per)), list(per))
        if metric in ("fid", "kid") and all(v > 0 for vals in per.values() for v in vals):
            ax.set_yscale("log")
        ax.set(title=metric + (" (lower is better)" if LOWER_IS_BETTER.get(metric, True) else " (higher is better)"))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/paradigm-study")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n", type=int, default=500, help="samples per measurement")
    parser.add_argument("--metrics", default="fid,kid,accuracy")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--plot", default=None, help="write the bar chart here (PNG)")
    args = parser.parse_args()
    root = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = train_all(root, args.steps, seeds)
    if args.train_only:
        return
    metrics = args.metrics.split(",")
    table = root / "compare" / "compare.csv"
    if not table.exists():
        sh(DIFFTK, "compare", *runs, *[a for m in metrics for a in ("--metric", m)], "--sampler", "ddim", "-n",
           str(args.n), "--steps", "25", "--seed", "0", "-o", str(root / "compare"))
    values: dict[str, dict[str, list[float]]] = {m: {p: [] for p in PARADIGMS} for m in metrics}
    for row in csv.DictReader(table.open()):
        values[row["metric"]][runs[row["checkpoint"]]].append(float(row["value"]))
    seconds = {p: statistics.mean(float((root / f"{p}-seed{s}" / "train_seconds.txt").read_text()) for s in seeds)
               for p in PARADIGMS}
    if args.plot:
        plot(values, Path(args.plot), f"{args.steps} training steps, 3 seeds each, DDIM 25 steps, n = {args.n}")
        print(f"wrote {args.plot}")
    for metric, per in values.items():
        lower = LOWER_IS_BETTER.get(metric, True)
        best = (min if lower else max)(per, key=lambda p: statistics.mean(per[p]))
        print(f"\n{metric} (n = {args.n}, {len(seeds)} seeds; best: {best}; Welch's t against it, two-sided)")
        print(f"| paradigm | {metric}, mean ± sd | per seed | p vs {best} | train s/run |")
        print("|---|---|---|---|---|")
        for p, vals in per.items():
            sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            p_value = "—" if p == best else f"{welch(vals, per[best]):.3f}"
            print(f"| {p} | {statistics.mean(vals):.4g} ± {sd:.2g} | {', '.join(f'{v:.4g}' for v in vals)} | {p_value} | "
                  f"{seconds[p]:.0f} |")


if __name__ == "__main__":
    main()
