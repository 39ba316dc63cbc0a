"""Per-step overhead of each sampler against the raw tensor arithmetic of the same update.

The denoiser costs nothing (it returns a preallocated tensor), so what is timed is the
sampler's own work: its loop, its coefficient handling, noise, callbacks. The reference is
the paper's update written out by hand with coefficients precomputed in float64 — Ho et al.
2020 Algorithm 2 for `ancestral`, Song et al. 2020 eq. 12 for `ddim` — run in the same
process on the same tensors. Both sides call the same costless denoiser.

    python benchmarks/sampler_overhead.py [--steps 200] [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import difftk
import numpy as np
import torch
from difftk.maths.grids import time_grid
from difftk.maths.schedules import alpha_bar_table


class Free(torch.nn.Module):
    """A denoiser that costs nothing: returns the same preallocated ε̂ every call."""

    prediction = "eps"

    def __init__(self, like: torch.Tensor) -> None:
        super().__init__()
        self.out = torch.randn_like(like) * 0.1

    def forward(self, x, t, cond=None):
        return self.out


def raw_ancestral(net, schedule, x, steps, g):
    """Ho et al. 2020, Algorithm 2, σ² = β, on the grid the sampler uses."""
    times = np.append(time_grid(schedule, steps), 0.0)
    ab = alpha_bar_table(schedule, times)
    alpha = ab[:-1] / ab[1:]
    beta = 1 - alpha
    c_eps = (beta / np.sqrt(1 - ab[:-1])).tolist()
    inv_sqrt_alpha = (1 / np.sqrt(alpha)).tolist()
    sigma = np.sqrt(beta).tolist()
    t_b = [torch.full((x.shape[0],), float(t)) for t in times[:-1]]
    for k in range(len(t_b)):
        eps = net(x, t_b[k])
        x = (x - c_eps[k] * eps) * inv_sqrt_alpha[k]
        if k < len(t_b) - 1:
            x = x + sigma[k] * torch.randn(x.shape, generator=g)
    return x


def raw_ddim(net, schedule, x, steps, g, eta=0.0):
    """Song et al. 2020, eq. 12 with σ from eq. 16."""
    times = np.append(time_grid(schedule, steps), 0.0)
    ab = alpha_bar_table(schedule, times)
    ab_t, ab_s = ab[:-1], ab[1:]
    sig = eta * np.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
    sq_t, sq1_t = np.sqrt(ab_t).tolist(), np.sqrt(1 - ab_t).tolist()
    sq_s, dir_s = np.sqrt(ab_s).tolist(), np.sqrt(1 - ab_s - sig**2).tolist()
    sig = sig.tolist()
    t_b = [torch.full((x.shape[0],), float(t)) for t in times[:-1]]
    for k in range(len(t_b)):
        eps = net(x, t_b[k])
        x0 = (x - sq1_t[k] * eps) / sq_t[k]
        x = sq_s[k] * x0 + dir_s[k] * eps
        if sig[k] > 0:
            x = x + sig[k] * torch.randn(x.shape, generator=g)
    return x


def timeit(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    schedule = difftk.create("schedule", "linear")
    shapes = {"MNIST batch 64×1×28×28": (64, 1, 28, 28), "CIFAR batch 64×3×32×32": (64, 3, 32, 32), "2-D toy batch 1024×2": (1024, 2)}
    cases = [
        ("ancestral", difftk.create("sampler", "ancestral"), raw_ancestral),
        ("ddim η=0", difftk.create("sampler", "ddim", eta=0.0), lambda *a: raw_ddim(*a, eta=0.0)),
        ("ddim η=1", difftk.create("sampler", "ddim", eta=1.0), lambda *a: raw_ddim(*a, eta=1.0)),
    ]
    print(f"sampler overhead per step — {args.steps} steps, median of {args.repeats}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"{'shape':26} {'sampler':11} {'difftk µs/step':>15} {'raw µs/step':>12} {'ratio':>7}")
    worst = 0.0
    for label, shape in shapes.items():
        x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        net = Free(x_T)
        for name, sampler, raw in cases:
            ours = timeit(lambda: sampler.sample(net, schedule, x_T, steps=args.steps, generator=torch.Generator().manual_seed(1)), args.repeats)
            ref = timeit(lambda: raw(net, schedule, x_T, args.steps, torch.Generator().manual_seed(1)), args.repeats)
            ratio = ours / ref
            worst = max(worst, ratio) if "toy" not in label else worst
            print(f"{label:26} {name:11} {ours / args.steps * 1e6:15.1f} {ref / args.steps * 1e6:12.1f} {ratio:7.2f}×")
    print(f"worst ratio on image batches: {worst:.2f}× (target ≤ 1.20×)")


if __name__ == "__main__":
    main()
