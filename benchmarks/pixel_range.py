"""The share of pixels beyond ±1.05, x̂₀ clipping off, of exactly the samples ``difftk compare`` scores.

    .venv/bin/python benchmarks/pixel_range.py MODEL --sampler flow-euler --steps 1,2,4 -n 1000 [--seed 0]

Each cell is drawn as ``difftk compare … --guidance cfg --scale 0 -n N --seed S`` draws it (labels 0, 1, …,
C−1 in turn, cfg at w = 0, batches of 256), before the 8-bit quantisation that the metrics see, which
would hide the range: so its row pairs with that cell's KID, FID and accuracy (docs/fast_sampling.md,
"The trade").
"""

from __future__ import annotations

import argparse
import time

import difftk
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--sampler", required=True)
    parser.add_argument("--steps", required=True, help="step counts, e.g. 1,2,4")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = difftk.load(args.model)
    labels = torch.arange(args.n) % model.num_classes if model.num_classes else None
    print("| model | sampler | steps | n | pixels beyond ±1.05 | largest |x| | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for steps in (int(k) for k in args.steps.split(",")):
        start = time.perf_counter()
        x = model.sample(
            args.n,
            sampler=args.sampler,
            steps=steps,
            guidance="cfg",
            scale=0.0,
            labels=labels,
            seed=args.seed,
            batch_size=256,
        )
        print(
            f"| {args.model} | {args.sampler} | {steps} | {args.n} | {100 * float((x.abs() > 1.05).double().mean()):.2f} % "
            f"| {float(x.abs().max()):.2f} | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
