"""Schedule study: linear, quadratic, cosine and sigmoid trained with the same budget and seeds on
MNIST, scored by KID at n = 1,000 with Welch's t-test over the seeds.

    .venv/bin/python benchmarks/schedule_study.py [--out runs/schedule-study] [--steps 600] [--seeds 0,1,2]
                                                  [--n 1000] [--plot docs/img/schedule_study.png]

Each schedule (T = 1000, its paper's options) trains the same class-conditional unet-attn (two
levels, base 16 channels, one residual block, attention at 14×14, no dropout; 191 k parameters)
to predict ε with L_simple — the pairing of Ho et al. 2020 and Nichol & Dhariwal 2021 — for
--steps steps of batch 32, AdamW lr 1e-3, EMA 0.999, once per seed (the seed fixes the weights,
the data order and the noise).

Every checkpoint is then sampled the same way, twice, with `difftk compare` (DDIM η = 0,
25 steps, labels 0..9 in turn, seed 0):
  clipped    x̂₀ clipped to [−1, 1] at every step, as the papers' code samples; --n samples
  unclipped  the sampler as it is; --n/2 samples
and scored by KID (its unbiased MMD², the study's decision), FID and accuracy from the same
draws. The tables give mean ± sd over the seeds, `difftk compare`'s Welch test of each schedule
against the best one, and Welch's p for every pair.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

from study import DIFFTK, NET, bar_plot, lower_is_better, per_arm, sh, train_arms, train_seconds, verdicts

SCHEDULES = ("linear", "quadratic", "cosine", "sigmoid")
METRICS = ("kid", "fid", "accuracy")


def welch_p(a: list[float], b: list[float]) -> float:
    from difftk.maths.stats import welch_t_test

    return welch_t_test(a, b).p


def terminal_gain() -> dict[str, float]:
    """1/√ᾱ(1) per schedule, from the registered schedules themselves."""
    import torch
    from difftk.pipeline.compose import create_component

    gains = {}
    for name in SCHEDULES:
        schedule = create_component("schedule", name, {})
        gains[name] = float(schedule.alpha_bar(torch.ones((), dtype=torch.float64)).rsqrt())
    return gains


def report(values: dict[str, dict[str, list[float]]], summary: dict, runs: dict[str, str], label: str, n: int) -> None:
    first = {arm: run for run, arm in reversed(list(runs.items()))}  # the seed-0 checkpoint names the pooled cell
    for metric in METRICS:
        per = values[metric]
        lower = lower_is_better(metric)
        best = (min if lower else max)(per, key=lambda a: statistics.mean(per[a]))
        print(f"\n{label}: {metric} (n = {n}, {len(next(iter(per.values())))} seeds; best: {best}; "
              f"Welch's t against it, two-sided, from difftk compare)")
        print(f"| schedule | {metric}, mean ± sd | 95% CI (compare) | per seed | vs {best} |")
        print("|---|---|---|---|---|")
        for arm, vals in per.items():
            row = summary.get((f"{first[arm]} (+{len(vals) - 1} seeds)", metric), {})
            verdict = "best" if arm == best else (f"p = {float(row['p']):.3g}" if row.get("p") else "-")
            ci = f"± {float(row['ci95']):.3g}" if row.get("ci95") else "-"
            sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            print(f"| {arm} | {statistics.mean(vals):.4g} ± {sd:.2g} | {ci} | "
                  f"{', '.join(f'{v:.4g}' for v in vals)} | {verdict} |")
        pairs = [f"{a}–{b} {welch_p(per[a], per[b]):.3g}" for a, b in itertools.combinations(per, 2)]
        print("every pair, Welch's p: " + "; ".join(pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/schedule-study")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n", type=int, default=1000, help="samples per clipped measurement (half for unclipped)")
    parser.add_argument("--plot", default=None, help="write the bar chart here (PNG)")
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args()
    root = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = {name: ["--schedule", name, "--sampler", "ddim", "--denoiser", "unet-attn", "--objective", "simple", *NET]
            for name in SCHEDULES}
    runs = train_arms(root, arms, args.steps, seeds)
    if args.train_only:
        return
    ways = {"clipped": (args.n, ["--set", "sampler.clip_x0=1"]), "unclipped": (max(args.n // 2, 50), [])}
    results = {}
    for way, (n, extra) in ways.items():
        out = root / f"compare-{way}"
        if not (out / "summary.csv").exists():
            sh(DIFFTK, "compare", *runs, *[a for m in METRICS for a in ("--metric", m)], "--steps", "25", "-n", str(n),
               "--seed", "0", *extra, "-o", str(out))
        results[way] = (per_arm(out / "compare.csv", runs), verdicts(out / "summary.csv"), n)
    print(f"\ntraining: {args.steps} steps of batch 32, s per run (mean over seeds): "
          + ", ".join(f"{a} {train_seconds(root, a, seeds):.0f}" for a in SCHEDULES))
    for way, (values, summary, n) in results.items():
        report(values, summary, runs, way, n)
    gains = terminal_gain()
    print("\n1/√ᾱ(1), the gain on ε̂'s error in DDIM's first x̂₀: " + ", ".join(f"{a} {g:.3g}" for a, g in gains.items()))
    if args.plot:
        values = {f"{m} ({way}, n = {results[way][2]})": results[way][0][m] for way in ways for m in ("kid", "accuracy")}
        bar_plot(values, Path(args.plot), f"{args.steps} training steps, 3 seeds each, DDIM 25 steps",
                 symlog=[f"kid (unclipped, n = {results['unclipped'][2]})"])
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
