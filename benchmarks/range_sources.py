"""Where a few-step sample's out-of-range pixels come from (docs/fast_sampling.md, "Where the overshoot comes from").

    .venv/bin/python benchmarks/range_sources.py PAIRS MODEL [MODEL …] --sampler flow-euler --steps 1,2,4 [-n 256]

PAIRS is a directory of the teacher's reflow pairs (``python -m difftk_distill.pairs``): pair i holds the
noise z_i that ``difftk sample --seed S`` starts sample i from, its label, and the teacher's solution r_i
from it. Each model samples the first n pairs' noise with their labels (those drawn unconditionally
left out), cfg at w = 0, clipping off. For each cell it prints:

- the share of pixels beyond ±1.05, and how many of them lie on the far ground: pixels with no ink
  (r > −0.95) within 2 pixels in the reference, where the digits are exactly −1;
- the far ground's mean and spread in the sample (std, and the std of its high-pass part h(x) =
  x − 3×3 mean of x: pixel-scale grain against smooth blotches). The ground sits at the edge of the
  range, so a sample whose ground errs by a spread s either way puts about Φ(−0.05/s) of it below −1.05;
- the starting noise left in the sample. A network that outputs a velocity or ε makes its x̂₀ by
  subtracting its output from x_t (x̂₀ = z − û at pure noise), so it must reproduce z pixel for pixel;
  what it misses would stay in x̂₀. z is white, the digits are not, so the test is made on the high-pass
  part: β = ⟨h(x), h(z)⟩/⟨h(z), h(z)⟩ over every pixel. The reference's own β is printed with it (the
  coupling keeps some of z: a sample whose β is below the reference's keeps no more of z than it);
- the mean |x − r| (how closely the sample follows the teacher's coupling) and the digit classifier's
  accuracy on the labels asked for.
"""

from __future__ import annotations

import argparse
import time

import difftk
import torch
import torch.nn.functional as F
from difftk_distill.pairs import load_pairs
from difftk_metrics.network import embed


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """x minus its 3×3 mean (edges replicated)."""
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return x - F.avg_pool2d(padded, 3, stride=1)


def noise_left(x: torch.Tensor, z: torch.Tensor) -> float:
    """β: the regression coefficient of h(x) on h(z) over every pixel."""
    hx, hz = high_pass(x.double()), high_pass(z.double())
    return float((hx * hz).sum()) / float((hz * hz).sum())


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
    far = F.max_pool2d((r > -0.95).double(), 5, stride=1, padding=2) == 0
    beta = noise_left(r, z)
    print(f"pairs 0..{n - 1} of {args.pairs} ({int(keep.sum())} conditional), seed {seed}, cfg w = 0, clipping off; "
          f"the reference r ({pairs.meta['teacher_sampler']}@{pairs.meta['teacher_steps']} of "
          f"{pairs.meta['teacher']}): {beyond(r):.2f} % beyond ±1.05, β {beta:+.4f}; far ground "
          f"{100 * float(far.double().mean()):.1f} % of pixels\n")
    print("| model | sampler | steps | beyond ±1.05 | of them on the far ground | far ground: mean | std | "
          "std of h | β | mean \\|x − r\\| | accuracy | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for source in args.models:
        model = difftk.load(source)
        name = f"{source} (step {model.step})"
        for steps in (int(k) for k in args.steps.split(",")):
            start = time.perf_counter()
            x = model.sample(n, sampler=args.sampler, steps=steps, guidance="cfg", scale=0.0, labels=label,
                             seed=seed, batch_size=min(n, 256))[keep]
            beta = noise_left(x, z)
            out = x.abs() > 1.05
            on_far = 100 * float((out & far).sum()) / max(1, int(out.sum()))
            ground = x.double()[far]
            _, logits = embed(x.clamp(-1, 1))
            accuracy = float((logits.argmax(dim=1) == label[keep]).double().mean())
            print(f"| {name} | {args.sampler} | {steps} | {beyond(x):.2f} % | {on_far:.0f} % | "
                  f"{float(ground.mean()):+.4f} | {float(ground.std()):.4f} | "
                  f"{float(high_pass(x.double())[far].std()):.4f} | {beta:+.4f} | "
                  f"{float((x - r).abs().mean()):.4f} | {accuracy:.3f} | {time.perf_counter() - start:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
