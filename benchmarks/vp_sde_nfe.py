"""Sample quality against the number of denoiser evaluations (NFE) for the VP-SDE samplers,
next to DDPM ancestral sampling and DDIM, on a 2-D Gaussian mixture with its exact score.

The denoiser is :class:`difftk.testing.GaussianMixtureOracle` (three components, the mixture
of plugins/vp_sde/tests), so every difference is the sampler's error. Quality is the sliced
1-Wasserstein distance (:func:`difftk.testing.distances.sliced_wasserstein`, 128 directions)
between N samples and N exact samples of the mixture; each seed draws new noise, a new
reference set and new sampler noise; the table shows the mean and standard deviation over
seeds. The first row is two exact sample sets: the distance that sampling noise alone gives.

    python benchmarks/vp_sde_nfe.py [--n 8000] [--seeds 3] [--schedule vp]
"""

from __future__ import annotations

import argparse
import statistics

import difftk
import torch
from difftk.maths.distances import sliced_wasserstein
from difftk.testing import GaussianMixtureOracle

MIX = dict(means=[[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0]], stds=[0.3, 0.5, 0.4], weights=[0.5, 0.3, 0.2])

#: (label, sampler, options, steps): every configuration in the table
CONFIGS = (
    [(f"euler-maruyama, {k} steps", "euler-maruyama", {}, k) for k in (10, 25, 50, 100, 250)]
    + [(f"pc (snr 0.16, 1 corrector), {k} steps", "pc", {}, k) for k in (5, 12, 25, 50, 125)]
    + [(f"ode rk45, rtol = atol = {tol:g}", "ode", {"rtol": tol, "atol": tol}, None) for tol in (1e-2, 1e-3, 1e-4, 1e-5)]
    + [(f"ode heun, {k} steps", "ode", {"method": "heun"}, k) for k in (5, 10, 25, 50)]
    + [(f"ode euler, {k} steps", "ode", {"method": "euler"}, k) for k in (10, 25, 50, 100)]
    + [(f"ancestral (DDPM), {k} steps", "ancestral", {}, k) for k in (10, 25, 50, 100, 250)]
    + [(f"ddim η=0, {k} steps", "ddim", {}, k) for k in (10, 25, 50, 100)]
)


class Counting(torch.nn.Module):
    """Wraps a denoiser and counts its calls (for samplers that do not report NFE)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.prediction, self.learned_variance, self.calls = inner, inner.prediction, False, 0

    def forward(self, x, t, cond=None):
        self.calls += 1
        return self.inner(x, t, cond)


def measure(name, options, steps, schedule, oracle, n, seed):
    """(NFE, sliced W₁ to an exact sample) for one configuration and seed."""
    exact = oracle.sample(n, torch.Generator().manual_seed(10_000 + seed))
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    counted = Counting(oracle)
    x = difftk.create("sampler", name, **options).sample(counted, schedule, x_T, steps=steps,
                                                         generator=torch.Generator().manual_seed(20_000 + seed))
    return counted.calls, sliced_wasserstein(x, exact)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8000, help="samples per seed")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    parser.add_argument("--schedule", default="vp", help="any registered schedule")
    args = parser.parse_args()
    torch.set_num_threads(1)
    schedule = difftk.create("schedule", args.schedule)
    oracle = GaussianMixtureOracle(schedule, **MIX)
    print(f"2-D mixture of 3 Gaussians, exact score; schedule {args.schedule}; N = {args.n:,} samples; "
          f"{args.seeds} seeds; sliced W₁ (mean ± std over seeds)\n")
    print("| sampler | NFE | sliced W₁ |")
    print("|---|---:|---:|")
    floor = [sliced_wasserstein(oracle.sample(args.n, torch.Generator().manual_seed(s)),
                                oracle.sample(args.n, torch.Generator().manual_seed(10_000 + s))) for s in range(args.seeds)]
    print(f"| exact samples (noise floor) | – | {statistics.mean(floor):.4f} ± {statistics.stdev(floor):.4f} |")
    for label, name, options, steps in CONFIGS:
        runs = [measure(name, options, steps, schedule, oracle, args.n, s) for s in range(args.seeds)]
        nfes = sorted({r[0] for r in runs})
        nfe = f"{nfes[0]}" if len(nfes) == 1 else f"{nfes[0]}–{nfes[-1]}"
        d = [r[1] for r in runs]
        print(f"| {label} | {nfe} | {statistics.mean(d):.4f} ± {statistics.stdev(d):.4f} |", flush=True)


if __name__ == "__main__":
    main()
