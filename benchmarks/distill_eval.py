"""A distilled student against its teacher at 1, 2 and 4 steps (docs/fast_sampling.md, "Distillation").

    .venv/bin/python benchmarks/distill_eval.py runs/mnist-flow-reflow/run --teacher mnist-flow [-n 100]

For each of teacher and student, from the same noise (labels 0–9 in turn, cfg at w = 0, clipping
off), sampled by ``--sampler`` at each step count: the classifier accuracy (the ``accuracy``
metric), the share of pixels beyond ±1.05 and the mean |x − x_ref|, x_ref the teacher's own
``--reference-sampler`` solution from that noise (reflow's student learns exactly that coupling).
"""

from __future__ import annotations

import argparse
import time

import difftk
import torch
from difftk.evaluation.compare import context_for, held_out_data, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student")
    parser.add_argument("--teacher", default="mnist-flow")
    parser.add_argument("--sampler", default="flow-euler")
    parser.add_argument("--reference-sampler", default="unipc")
    parser.add_argument("--reference-steps", type=int, default=20)
    parser.add_argument("--steps", default="1,2,4")
    parser.add_argument("-n", type=int, default=100)
    args = parser.parse_args()
    teacher, student = difftk.load(args.teacher), difftk.load(args.student)
    labels = torch.arange(args.n) % teacher.num_classes if teacher.num_classes else None
    common = dict(guidance="cfg", scale=0.0, labels=labels, seed=0, batch_size=args.n)
    reference = teacher.sample(args.n, sampler=args.reference_sampler, steps=args.reference_steps, **common)
    data, why = held_out_data(teacher.data)
    if data is None:
        raise SystemExit(f"no held-out data: {why}")
    print(f"student {args.student} (step {student.step}), teacher {args.teacher}; n = {args.n}, seed 0, cfg w = 0, "
          f"clipping off; reference: the teacher's {args.reference_sampler} at {args.reference_steps} steps\n")
    print("| model | sampler | steps | accuracy | pixels beyond ±1.05 | mean abs to the reference | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, model in (("teacher", teacher), ("student", student)):
        for steps in (int(k) for k in args.steps.split(",")):
            start = time.perf_counter()
            x = model.sample(args.n, sampler=args.sampler, steps=steps, **common)
            context = context_for(model, data, sampler=args.sampler, steps=steps, guidance="cfg",
                                  guidance_options={"scale": "0"}, batch_size=args.n)
            acc = measure("accuracy", {"n": str(args.n)}, context)
            print(f"| {name} | {args.sampler} | {steps} | {acc.value:.3f} ± {acc.spread:.3f} | "
                  f"{100 * float((x.abs() > 1.05).float().mean()):.2f} % | {float((x - reference).abs().mean()):.4f} | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
