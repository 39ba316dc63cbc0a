"""Schedule study: linear, quadratic, cosine and sigmoid trained with the same budget and seeds on MNIST.

    .venv/bin/python benchmarks/schedule_study.py [--out runs/schedule-study] [--steps 1000] [--seeds 0,1,2] [--n 200]

Each schedule (T = 1000, default options) trains the same small class-conditional unet-attn
(two levels, base 16 channels, 1 residual block) with L_simple, batch 32, AdamW lr 1e-3, for
--steps steps, once per seed (the seed fixes the weights, the data order and the noise). Every
checkpoint is then sampled the same way — DDIM, 25 steps, x̂₀ clipped — and scored by FID on the
MNIST feature network (`difftk compare`, --n samples, seed 0). The table gives the mean FID over
seeds with its standard deviation, and docs/img/schedule_study.png plots every run.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

DIFFTK = str(Path(sys.executable).with_name("difftk"))
SCHEDULES = ("linear", "quadratic", "cosine", "sigmoid")
NET = ["--set", "denoiser.base_channels=16", "--set", "denoiser.norm_groups=8", "--set", "denoiser.channel_mult=1,2",
       "--set", "denoiser.num_res_blocks=1", "--set", "denoiser.attention_resolutions=14", "--set", "denoiser.dropout=0"]


def sh(*args: str) -> float:
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.time()
    subprocess.run(args, check=True)
    return time.time() - start


def plot(per_run: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, values) in enumerate(per_run.items()):
        ax.bar(i, statistics.mean(values), yerr=statistics.stdev(values) if len(values) > 1 else 0, capsize=6,
               alpha=0.6, label=name)
        ax.scatter([i] * len(values), values, color="black", zorder=3, s=14)
    ax.set_xticks(range(len(per_run)), list(per_run))
    ax.set(ylabel="FID (MNIST features, lower is better)", title="same budget, one bar per schedule, dots = seeds")
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/schedule-study")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n", type=int, default=200, help="samples per FID")
    parser.add_argument("--plot", default="docs/img/schedule_study.png")
    args = parser.parse_args()
    root = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {}
    for name in SCHEDULES:
        pipeline = root / f"{name}.toml"
        if not pipeline.exists():
            root.mkdir(parents=True, exist_ok=True)
            sh(DIFFTK, "compose", "--schedule", name, "--sampler", "ddim", "--denoiser", "unet-attn", "--objective",
               "simple", *NET, "-o", str(pipeline))
        for seed in seeds:
            out = root / f"{name}-seed{seed}"
            if not (out / "checkpoint.safetensors").exists():
                took = sh(DIFFTK, "train", str(pipeline), "--data", "mnist", "--steps", str(args.steps), "--out", str(out),
                          "--batch-size", "32", "--lr", "1e-3", "--seed", str(seed), "--sample-every", "0",
                          "--checkpoint-every", str(args.steps))
                (out / "train_seconds.txt").write_text(f"{took:.0f}\n")
            runs[str(out)] = name
    table = root / "compare" / "compare.csv"
    if not table.exists():
        sh(DIFFTK, "compare", *runs, "--metric", "fid", "-n", str(args.n), "--steps", "25", "--seed", "0",
           "-o", str(root / "compare"))
    per_run: dict[str, list[float]] = {name: [] for name in SCHEDULES}
    for row in csv.DictReader(table.open()):
        per_run[runs[row["checkpoint"]]].append(float(row["value"]))
    plot(per_run, Path(args.plot))
    print(f"\n| schedule | FID mean ± sd over {len(seeds)} seeds | per seed |")
    print("|---|---|---|")
    for name, values in per_run.items():
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"| {name} | {statistics.mean(values):.0f} ± {sd:.0f} | {', '.join(f'{v:.0f}' for v in values)} |")
    print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
