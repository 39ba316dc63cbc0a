"""Where a few-step sample's out-of-range pixels come from (docs/fast_sampling.md, "Where the overshoot comes from").

    .venv/bin/python benchmarks/range_sources.py PAIRS MODEL [MODEL …] --sampler flow-euler --steps 1,2,4 [-n 256]

PAIRS is a directory of the teacher's reflow pairs (``python -m difftk_distill.pairs``): pair i holds the
noise z_i that ``difftk sample --seed S`` starts sample i from, its label, and the teacher's solution r_i
from it. Each model samples the first n pairs' noise with their labels (those drawn unconditionally
left out), cfg at w = 0, clipping off. For each cell it prints:

- the share of pixels beyond ±1.05, and the share below −1.05 on the ground (r < 0);
- the starting noise left in the sample. A network that outputs a velocity or ε makes its x̂₀ by
  subtracting its output from x_t (x̂₀ = z − û at pure noise), so it must reproduce z pixel for pixel;
  what it misses stays in x̂₀. z is white, the digits are not, so the test is made on the high-pass
  part h(x) = x − (3×3 mean of x): β = ⟨h(x), h(z)⟩/⟨h(z), h(z)⟩ over every pixel, and ``z share``, the
  fraction of h(x)'s energy along h(z). The reference r gets the same two numbers (how much the
  teacher's own fine solution keeps of z);
- ``beyond without βz``: the share beyond ±1.05 of x − β·z, the sample with that much of the noise taken out.
"""

from __future__ import annotations

import argparse
import time

import difftk
import torch
import torch.nn.functional as F
from difftk_distill.pairs import load_pairs


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """x minus its 3×3 mean (edges replicated)."""
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return x - F.avg_pool2d(padded, 3, stride=1)


def noise_left(x: torch.Tensor, z: torch.Tensor) -> tuple[float, float]:
    """(β, share): the regression of h(x) on h(z) over every pixel, and the fraction of h(x)'s energy it explains."""
    hx, hz = high_pass(x.double()), high_pass(z.double())
    zz = float((hz * hz).sum())
    beta = float((hx * hz).sum()) / zz
    return beta, beta**2 * zz / float((hx * hx).sum())


def beyond(x: torch.Tensor) -> float:
    return 100 * float((x.abs() > 1.05).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--sampler", default="flow-euler")
    parser.add_argument("--steps", default="1,2,4")
    parser.add_argument("-n", type=int, default=256, help="pairs 0..n−1 (those of the null class left out)")
    args = parser.parse_args()
    pairs = load_pairs(args.pairs)
    n = min(args.n, len(pairs))
    classes = int(pairs.meta["classes"].strip("[]").split(",")[0])
    label = pairs.label[:n].clone()
    keep = label < classes
    label[~keep] = 0  # sampled (each pair's noise is its index's), then dropped
    r, z = pairs.x0[:n][keep], pairs.z[:n][keep]
    seed = int(pairs.meta["seed"])
    beta, share = noise_left(r, z)
    print(f"pairs 0..{n - 1} of {args.pairs} ({int(keep.sum())} conditional), seed {seed}, cfg w = 0, clipping off; "
          f"the reference r ({pairs.meta['teacher_sampler']}@{pairs.meta['teacher_steps']} of "
          f"{pairs.meta['teacher']}): {beyond(r):.2f} % beyond ±1.05, β {beta:+.4f}, z share {share:.3f}\n")
    print("| model | sampler | steps | beyond ±1.05 | below −1.05 on the ground | β | z share | "
          "beyond without βz | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for source in args.models:
        model = difftk.load(source)
        for steps in (int(k) for k in args.steps.split(",")):
            start = time.perf_counter()
            x = model.sample(n, sampler=args.sampler, steps=steps, guidance="cfg", scale=0.0, labels=label,
                             seed=seed, batch_size=min(n, 256))[keep]
            beta, share = noise_left(x, z)
            low = 100 * float(((x < -1.05) & (r < 0)).double().mean())
            print(f"| {source} | {args.sampler} | {steps} | {beyond(x):.2f} % | {low:.2f} % | {beta:+.4f} | "
                  f"{share:.3f} | {beyond(x - beta * z):.2f} % | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
