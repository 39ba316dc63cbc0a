"""Where each schedule puts the training effort, and what its time grid does to sampling.

    python docs/example-plugin/benchmark.py [--n 10000] [--seeds 0,1,2] [--steps 50]

Training draws t ~ U(0, 1), so the share of t whose log-SNR λ(t) = log(ᾱ/(1−ᾱ)) lies in a band is
the share of training spent there (computed on an even grid of 10⁶ times). Sampling: DDIM with the
exact denoiser of a 3-component 2-D Gaussian mixture (stds 0.3, difftk.testing), from the same
x_T on every schedule, on the schedule's own linspace grid and on the karras grid (σ spaced with
ρ = 7, down to σ = 0.002 on a continuous schedule); the score is the sliced Wasserstein distance
to exact samples of the mixture (mean over seeds; "floor" is that distance between two sets of
exact samples). Needs the plugin importable (installed, or run from a checkout: the script puts
its src/ on the path) and difftk's ddpm, iddpm, vp-sde and ddim plugins.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "src"))

import difftk  # noqa: E402
import torch  # noqa: E402
from difftk.maths.distances import sliced_wasserstein  # noqa: E402
from difftk.testing import GaussianMixtureOracle  # noqa: E402
from difftk_laplace_schedule.schedule import LaplaceSchedule  # noqa: E402

MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]])
SCHEDULES = {
    "linear (DDPM)": lambda: difftk.create("schedule", "linear"),
    "cosine (iDDPM)": lambda: difftk.create("schedule", "cosine"),
    "vp (VP SDE)": lambda: difftk.create("schedule", "vp"),
    "laplace μ=0, b=0.5": lambda: LaplaceSchedule(mu=0.0, b=0.5),
    "laplace μ=0, b=1": lambda: LaplaceSchedule(mu=0.0, b=1.0),
}


def shares(schedule) -> tuple[float, float, float]:
    """Shares of t ~ U(0, 1) with λ(t) < −5 (nearly pure noise), |λ| ≤ 2 (the crossover) and λ > 5 (nearly clean)."""
    t = (torch.arange(1_000_000, dtype=torch.float64) + 0.5) / 1_000_000
    ab = schedule.alpha_bar(t)
    lam = torch.log(ab) - torch.log1p(-ab)
    return tuple(float(m.double().mean()) for m in (lam < -5, lam.abs() <= 2, lam > 5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    K = args.steps
    print(f"| schedule | λ < −5 | \\|λ\\| ≤ 2 | λ > 5 | σ(1/{K}) | DDIM {K}, linspace | DDIM {K}, karras |")
    print("|---|---|---|---|---|---|---|")
    floor = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        floor.append(sliced_wasserstein(GaussianMixtureOracle(None, MEANS, stds=0.3).sample(args.n, generator=g),
                                        GaussianMixtureOracle(None, MEANS, stds=0.3).sample(args.n, generator=g)))
    for label, make in SCHEDULES.items():
        schedule = make()
        oracle = GaussianMixtureOracle(schedule, MEANS, stds=0.3)
        oracle.num_classes = 0  # the whole mixture
        ab = float(schedule.alpha_bar(torch.tensor([1.0 / K], dtype=torch.float64))[0])
        scores = {"linspace": [], "karras": []}
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            x_T = torch.randn(args.n, 2, generator=g, dtype=torch.float64)
            exact = oracle.sample(args.n, generator=g)
            for spacing, values in scores.items():
                x = difftk.create("sampler", "ddim", spacing=spacing).sample(oracle, schedule, x_T, steps=K)
                values.append(sliced_wasserstein(x, exact))
        noise, crossover, clean = shares(schedule)
        print(f"| {label} | {noise:.1%} | {crossover:.1%} | {clean:.1%} | {math.sqrt((1 - ab) / ab):.3f} | "
              f"{statistics.mean(scores['linspace']):.4f} | {statistics.mean(scores['karras']):.4f} |")
    print(f"\nfloor (exact against exact samples, n = {args.n:,}, mean over {len(seeds)} seeds): {statistics.mean(floor):.4f}")


if __name__ == "__main__":
    main()
