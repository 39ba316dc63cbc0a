"""tests/test_shipped_samplers.py's cheap check on any model, before it ships: every registered sampler at 20
steps (the SDE samplers at their defaults, the adaptive ODE at rtol = atol = 10⁻³), then flow-euler at 1, 2 and 4 steps.

    .venv/bin/python benchmarks/cheap_samplers.py MODEL [N] [SEED]

N samples (default 10: one per digit, labels 0–9 in turn), unguided, seed SEED (default 0; the test reads a
student distilled from seed 0's noise on seed 1), clipping off; prints the share
of pixels beyond ±1.05 (the test's bar: 2 %) and the digit classifier's accuracy (the test's bar: 0.7).
"""

from __future__ import annotations

import argparse
import time

import difftk
from difftk.errors import DifftkError
from difftk.model import load
from difftk.sampling.draw import class_labels
from difftk_metrics.network import embed

#: the test's tolerances for the adaptive ODE (tests/test_shipped_samplers.py ODE_TOL gives the reason)
ODE_TOL = 1e-3
CHEAP = {"pc": dict(steps=None), "ode": dict(steps=None), "euler-maruyama": dict(steps=None)}


def report(name: str, x, labels, seconds: float) -> None:
    _, logits = embed(x.clamp(-1, 1))
    right = float((logits.argmax(1) == labels).double().mean())
    print(
        f"| {name} | {100 * float((x.abs() > 1.05).double().mean()):.2f} % | {right:.2f} | {seconds:.0f} |", flush=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("n", nargs="?", type=int, default=10, help="samples (default 10)")
    parser.add_argument("seed", nargs="?", type=int, default=0, help="seed of the draws (default 0)")
    args = parser.parse_args()
    if args.n < 1:
        parser.error(f"N must be at least 1, got {args.n}")
    try:
        model = load(args.model)
    except DifftkError as error:
        parser.error(str(error))
    n, seed = args.n, args.seed
    labels = class_labels(n, model.num_classes)
    print("| sampler | pixels beyond ±1.05 | accuracy | seconds |\n|---|---:|---:|---:|")
    for name in difftk.available("sampler"):
        start = time.perf_counter()
        sampler = (
            difftk.create("sampler", "ode", rtol=ODE_TOL, atol=ODE_TOL) if name == "ode" else difftk.create("sampler", name)
        )
        x = model.sample(n, sampler=sampler, guidance=False, labels=labels, seed=seed, **CHEAP.get(name, dict(steps=20)))
        report(name, x, labels, time.perf_counter() - start)
    for steps in (1, 2, 4):
        start = time.perf_counter()
        x = model.sample(n, sampler="flow-euler", guidance=False, labels=labels, seed=seed, steps=steps)
        report(f"flow-euler, {steps} steps", x, labels, time.perf_counter() - start)


if __name__ == "__main__":
    main()
