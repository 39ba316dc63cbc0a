"""The share of pixels beyond ±1.05, x̂₀ clipping off, of exactly the samples ``difftk compare`` scores.

    .venv/bin/python benchmarks/pixel_range.py MODEL --sampler flow-euler --steps 1,2,4 -n 1000 [--seed 0]
    .venv/bin/python benchmarks/pixel_range.py MODEL --sampler flow-euler --set times=1,0.2 --steps 2 -n 1000

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
from difftk.errors import DifftkError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--sampler", required=True)
    parser.add_argument("--steps", required=True, type=lambda text: [int(k) for k in text.split(",")],
                        help="step counts, e.g. 1,2,4")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="a sampler option, e.g. times=1,0.2 (an explicit grid: --steps must count its times)")
    args = parser.parse_args()
    options = dict(item.split("=", 1) for item in args.set if "=" in item)
    if len(options) != len(args.set):
        parser.error(f"--set takes OPTION=VALUE, got {[item for item in args.set if '=' not in item]}")
    try:
        model = difftk.load(args.model)
        # as `difftk sample --sampler NAME --set` builds it: over the pipeline's own options when NAME is its sampler
        sampler = model.sampler(args.sampler, options)
    except DifftkError as error:
        parser.error(str(error))
    label = " ".join([args.sampler, *args.set])
    labels = torch.arange(args.n) % model.num_classes if model.num_classes else None
    print("| model | sampler | steps | n | pixels beyond ±1.05 | largest |x| | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    try:
        for steps in args.steps:
            start = time.perf_counter()
            x = model.sample(
                args.n,
                sampler=sampler,
                steps=steps,
                guidance="cfg",
                scale=0.0,
                labels=labels,
                seed=args.seed,
                batch_size=256,
            )
            print(
                f"| {args.model} | {label} | {steps} | {args.n} | {100 * float((x.abs() > 1.05).double().mean()):.2f} % "
                f"| {float(x.abs().max()):.2f} | {time.perf_counter() - start:.0f} |",
                flush=True,
            )
    except DifftkError as error:  # e.g. --steps that does not count the explicit times
        parser.error(str(error))


if __name__ == "__main__":
    main()
