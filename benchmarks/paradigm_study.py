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
import statistics
from pathlib import Path

from study import DIFFTK, NET, bar_plot, lower_is_better, sh, train_arms, train_seconds

PARADIGMS = {
    "eps": ("cosine", "simple", "eps"),
    "v": ("cosine", "simple", "v"),
    "flow": ("flow", "flow-matching", "flow"),
    "edm": ("edm", "edm", "edm"),
}


def welch(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test (the core's :func:`difftk.maths.stats.welch_t_test`)."""
    from difftk.maths.stats import welch_t_test

    return welch_t_test(a, b).p


def train_all(root: Path, steps: int, seeds: list[int]) -> dict[str, str]:
    arms = {name: ["--schedule", schedule, "--sampler", "ddim", "--denoiser", "unet-attn", "--objective", objective,
                   *NET, "--set", f"denoiser.prediction={prediction}"]
            for name, (schedule, objective, prediction) in PARADIGMS.items()}
    return train_arms(root, arms, steps, seeds)


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
    seconds = {p: train_seconds(root, p, seeds) for p in PARADIGMS}
    if args.plot:
        bar_plot(values, Path(args.plot), f"{args.steps} training steps, 3 seeds each, DDIM 25 steps, n = {args.n}",
                 symlog=("kid",))
        print(f"wrote {args.plot}")
    for metric, per in values.items():
        lower = lower_is_better(metric)
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
