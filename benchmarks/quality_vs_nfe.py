"""Quality against denoiser evaluations (NFE) for every fast sampler, beside DDIM at 100, in one run.

    .venv/bin/python benchmarks/quality_vs_nfe.py                 # both parts (about 15 min on 2 cores)
    .venv/bin/python benchmarks/quality_vs_nfe.py --part mixture  # the exact oracle only (about 1 min)

Part 1, the mixture oracle: a 3-component 2-D Gaussian mixture (stds 0.3) with its exact denoiser
on the linear schedule (T = 1000), every sampler from the same x_T (n = 4,000, float64). Two
figures: the RMS distance to the exact probability-flow ODE solution from that x_T (rk45 at
tolerance 1e-9: the error of a deterministic solver; a stochastic one does not aim at it) and the
sliced W₁ distance to exact samples of the mixture (its floor, exact against exact, is the first row).

Part 2, the shipped model: FID and accuracy at n = 500 (the same seed for every cell, unguided,
clipping off), FID's own caveat at this n applying to every row alike.
"""

from __future__ import annotations

import argparse
import time

import difftk
import torch
from difftk.maths.distances import sliced_wasserstein
from difftk.maths.grids import SPACINGS
from difftk.model import Model
from difftk.testing import GaussianMixtureOracle

MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]])
TARGETS = (5, 10, 20, 50, 100)
FAST = ("ddim", "dpm-solver-2m", "dpm-solver-3m", "unipc", "heun", "ode")
STOCHASTIC = ("dpm-solver-2m-sde", "edm", "ancestral", "euler-maruyama")
#: the grids compared for every sampler: the paper's defaults differ (DDIM linspace, DPM-Solver logSNR, EDM karras)
SPACINGS_TRIED = tuple(s for s in ("linspace", "logsnr", "karras") if s in SPACINGS)


def options_of(name: str) -> dict:
    return {"method": "heun"} if name == "ode" else {}


def steps_for(sampler, schedule, nfe: int) -> int | None:
    """The most steps whose NFE is at most ``nfe`` (None when even one step costs more)."""
    best = None
    for steps in range(1, nfe + 1):
        if sampler.nfe(steps, schedule) <= nfe:
            best = steps
    return best


def mixture_part(n: int) -> None:
    schedule = difftk.create("schedule", "linear")
    oracle = GaussianMixtureOracle(schedule, MEANS, stds=0.3)
    oracle.num_classes = 0
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact_flow = difftk.create("sampler", "ode", rtol=1e-9, atol=1e-9).sample(oracle, schedule, x_T)
    g = torch.Generator().manual_seed(1)
    exact, other = oracle.sample(n, generator=g), oracle.sample(n, generator=g)
    print(f"\n## mixture oracle: n = {n:,}, linear T = 1000, float64, x_T seed 0\n")
    print("| sampler | spacing | steps | NFE | RMS to the exact ODE solution | sliced W₁ to exact samples |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| exact samples (floor) | — | — | — | — | {sliced_wasserstein(other, exact):.4f} |")
    names = [s for s in (*FAST, *STOCHASTIC) if s in difftk.available("sampler")]
    for name, spacing in [(s, g) for s in names for g in SPACINGS_TRIED]:
        sampler = difftk.create("sampler", name, spacing=spacing, **options_of(name))
        for target in TARGETS:
            steps = steps_for(sampler, schedule, target)
            if steps is None:
                continue
            x = sampler.sample(oracle, schedule, x_T, steps=steps, generator=torch.Generator().manual_seed(2))
            rms = float((x - exact_flow).pow(2).sum(1).mean().sqrt())
            shown = f"{rms:.4f}" if name in FAST else "(stochastic)"
            print(f"| {name} | {spacing} | {steps} | {sampler.nfe(steps, schedule)} | {shown} | "
                  f"{sliced_wasserstein(x, exact):.4f} |", flush=True)


def shipped_part(model_name: str, n: int, batch_size: int) -> None:
    from difftk.evaluation.compare import context_for, held_out_data, measure

    model: Model = difftk.load(model_name)
    data, why = held_out_data(model.data)
    if data is None:
        raise SystemExit(f"no held-out data: {why}")
    print(f"\n## shipped model {model_name}: n = {n}, unguided, clipping off, seed 0; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| sampler | steps | NFE | FID | accuracy | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    cells = [("ddim", 100)] + [(s, t) for s in FAST if s != "ode" for t in (5, 10, 20)]
    cells += [(s, 20) for s in ("dpm-solver-2m-sde", "edm")]
    for name, target in cells:
        if name not in difftk.available("sampler"):
            continue
        sampler = difftk.create("sampler", name, **options_of(name))
        steps = steps_for(sampler, model.schedule, target)
        if steps is None:
            continue
        start = time.perf_counter()
        context = context_for(model, data, sampler=name, guidance="cfg", guidance_options={"scale": "0"}, steps=steps)
        fid = measure("fid", {"n": str(n), "bootstrap": "5"}, context)
        accuracy = measure("accuracy", {"n": str(n)}, context)
        seconds = time.perf_counter() - start
        print(f"| {name} | {steps} | {sampler.nfe(steps, model.schedule)} | {fid.value:.1f} ± {fid.spread:.1f} | "
              f"{accuracy.value:.3f} | {seconds:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("mixture", "shipped", "both"), default="both")
    parser.add_argument("--n-mixture", type=int, default=4000)
    parser.add_argument("--model", default="mnist-cfg")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=250)
    args = parser.parse_args()
    if args.part in ("mixture", "both"):
        mixture_part(args.n_mixture)
    if args.part in ("shipped", "both"):
        shipped_part(args.model, args.n, args.batch_size)


if __name__ == "__main__":
    main()
