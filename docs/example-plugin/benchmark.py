"""Function evaluations against quality, with the exact denoiser of a Gaussian mixture.

    python docs/example-plugin/benchmark.py [--n 10000] [--seeds 0,1,2]

Samples a 3-component 2-D mixture (stds 0.3) with its exact denoiser (difftk.testing) on the
linear schedule, from the same x_T for every sampler, and prints the sliced Wasserstein distance
to exact samples of the mixture (mean over seeds; the first row is the distance between two
sets of exact samples — the floor at this n). Needs the plugin importable (installed, or run
from a checkout: the script puts its src/ on the path).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "src"))

import difftk  # noqa: E402
import torch  # noqa: E402
from difftk.maths.distances import sliced_wasserstein  # noqa: E402
from difftk.testing import GaussianMixtureOracle  # noqa: E402
from difftk_fast_samplers.samplers import DPMSolverPP2M, EDMHeun  # noqa: E402

MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]])


class Counted(torch.nn.Module):
    """The denoiser, counting its calls (the NFE)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.prediction, self.calls = inner, inner.prediction, 0

    def forward(self, x, t, cond=None):
        self.calls += 1
        return self.inner(x, t, cond=cond)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    schedule = difftk.create("schedule", "linear")
    oracle = GaussianMixtureOracle(schedule, MEANS, stds=0.3)
    oracle.num_classes = 0  # the whole mixture
    runs = [("ddim", difftk.create("sampler", "ddim"), k) for k in (10, 20, 50, 100)]
    runs += [("dpm-solver-2m (logsnr)", DPMSolverPP2M(), k) for k in (10, 15, 20)]
    runs += [("heun (linspace)", EDMHeun(), k) for k in (5, 8, 10, 11)]
    results: dict[tuple[str, int], list[float]] = {}
    floor = []
    for seed in (int(s) for s in args.seeds.split(",")):
        g = torch.Generator().manual_seed(seed)
        x_T = torch.randn(args.n, 2, generator=g, dtype=torch.float64)
        exact = oracle.sample(args.n, generator=g)
        floor.append(sliced_wasserstein(oracle.sample(args.n, generator=g), exact))
        for name, sampler, steps in runs:
            counted = Counted(oracle)
            x = sampler.sample(counted, schedule, x_T, steps=steps)
            results.setdefault((name, counted.calls), []).append(sliced_wasserstein(x, exact))
    print(f"| sampler | NFE | sliced W₁ to exact samples (n = {args.n:,}, mean over {len(floor)} seeds) |")
    print("|---|---|---|")
    print(f"| exact samples (floor) | — | {statistics.mean(floor):.4f} |")
    for (name, nfe), values in results.items():
        print(f"| {name} | {nfe} | {statistics.mean(values):.4f} |")


if __name__ == "__main__":
    main()
