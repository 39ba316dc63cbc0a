"""The measurement behind the high-order solvers' default grids and final-step policies (docs/fast_sampling.md).

    .venv/bin/python benchmarks/solver_defaults.py                    # the oracles (a few minutes on 2 cores)
    .venv/bin/python benchmarks/solver_defaults.py --part shipped     # both shipped models (n = 40 each)
    .venv/bin/python benchmarks/solver_defaults.py --part why         # why 2M and 3M coincide on linspace
    .venv/bin/python benchmarks/solver_defaults.py --part truncated   # cosine's log-SNR grid cut at σ = 119 (~9 min)

Oracles: every solver at 10 steps, on every schedule and grid, with ``lower_order_final`` on and off,
from the same x_T (float64). Deterministic solvers: the mean absolute error to the probability-flow
ODE's endpoint from that x_T — closed form for the Gaussian N(0.5, 0.1²) (n = 2,048, as issue 37), the
adaptive ``ode`` sampler at 1e-9 for the 2-D three-Gaussian mixture (n = 1,000). Stochastic solvers
(marked ~) do not aim at that endpoint: for them the Gaussian column is the 2-Wasserstein distance
of the samples' moments to N(0.5, 0.1²) (n = 16,384) and the mixture column the sliced W₁ to exact
samples. The bar is DDIM at 100 steps with its defaults, measured the same way.
"""

from __future__ import annotations

import argparse
import time

import difftk
import numpy as np
import torch
from difftk.errors import DifftkError
from difftk.maths.grids import time_grid
from difftk.maths.distances import sliced_wasserstein
from difftk.maths.schedules import alpha_bar_table, grid_size_of
from difftk.maths.terminal import for_sampling
from difftk.testing import GaussianMixtureOracle, GaussianOracle

SCHEDULES = ("linear", "cosine", "vp", "flow", "edm")
GRIDS = ("linspace", "trailing", "karras", "logsnr")
#: solver → its variants measured: (label, options)
SOLVERS = {
    "dpm-solver-2m": [("lof", {"lower_order_final": True}), ("no-lof", {"lower_order_final": False})],
    "dpm-solver-3m": [("lof", {"lower_order_final": True}), ("no-lof", {"lower_order_final": False})],
    "unipc": [("lof", {"lower_order_final": True}), ("no-lof", {"lower_order_final": False})],
    "heun": [("", {})],
    "dpm-solver-2m-sde": [("lof", {"lower_order_final": True}), ("no-lof", {"lower_order_final": False})],
    "edm": [("", {})],
}
STOCHASTIC = ("dpm-solver-2m-sde", "edm")
#: on the shipped models: each solver's new default (first), its former default, and the runners-up of the oracles
SHIPPED_CELLS = {
    "dpm-solver-2m": [{"spacing": "logsnr", "lower_order_final": False}, {"spacing": "linspace", "lower_order_final": True},
                      {"spacing": "logsnr", "lower_order_final": True}, {"spacing": "linspace", "lower_order_final": False}],
    "dpm-solver-3m": [{"spacing": "logsnr", "lower_order_final": True}, {"spacing": "linspace", "lower_order_final": True}],
    "unipc": [{"spacing": "logsnr"}, {"spacing": "trailing"}, {"spacing": "linspace"}],
    "heun": [{"spacing": "karras"}, {"spacing": "logsnr"}],
}
MU, STD = 0.5, 0.1
MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]], dtype=torch.float64)


def gaussian_endpoint(schedule, x_T: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE from x_T at t = 1 to t = 0 for data N(μ, s²): it keeps z = (x − √ᾱ·μ)/√v,
    v = ᾱ·s² + 1 − ᾱ, so x₀ = μ + s·z(1)."""
    ab1 = float(alpha_bar_table(schedule, np.array([1.0]))[0])
    return MU + STD * (x_T - ab1**0.5 * MU) / (ab1 * STD**2 + 1 - ab1) ** 0.5


def gaussian_w2(x: torch.Tensor) -> float:
    """W₂ between N(mean(x), std(x)²) and N(μ, s²)."""
    return float(((x.mean() - MU) ** 2 + (x.std() - STD) ** 2).sqrt())


class Problem:
    """One schedule's two oracles, their starts and their truths."""

    def __init__(self, name: str) -> None:
        # as Model.sample hands it to every sampler: a schedule reaching ᾱ(1) = 0 floored (difftk.maths.terminal)
        self.name, self.schedule = name, for_sampling(difftk.create("schedule", name))
        self.gauss = GaussianOracle(self.schedule, mean=MU, std=STD)
        self.gauss_x = torch.randn(2048, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.gauss_x_big = torch.randn(16384, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.gauss_exact = gaussian_endpoint(self.schedule, self.gauss_x)
        self.mix = GaussianMixtureOracle(self.schedule, MEANS, stds=0.3)
        self.mix.num_classes = 0
        self.mix_x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.mix_exact = difftk.create("sampler", "ode", rtol=1e-9, atol=1e-9).sample(self.mix, self.schedule, self.mix_x)
        self.mix_samples = self.mix.sample(4000, generator=torch.Generator().manual_seed(1))

    def errors(self, sampler, steps: int, stochastic: bool) -> tuple[float, float]:
        """(Gaussian error, mixture error) of ``sampler`` at ``steps``, by the rule of the module docstring."""
        g = torch.Generator().manual_seed(2)
        if stochastic:
            x = sampler.sample(self.gauss, self.schedule, self.gauss_x_big.clone(), steps=steps, generator=g)
            y = sampler.sample(self.mix, self.schedule, self.mix_x.clone(), steps=steps, generator=g)
            return gaussian_w2(x), sliced_wasserstein(y, self.mix_samples)
        x = sampler.sample(self.gauss, self.schedule, self.gauss_x.clone(), steps=steps, generator=g)
        y = sampler.sample(self.mix, self.schedule, self.mix_x.clone(), steps=steps, generator=g)
        return float((x - self.gauss_exact).abs().mean()), float((y - self.mix_exact).abs().mean())


def cell(problem: Problem, name: str, steps: int, stochastic: bool, **options) -> str:
    try:
        sampler = difftk.create("sampler", name, **options)
        g, m = problem.errors(sampler, steps, stochastic)
    except DifftkError as err:  # a grid this schedule cannot have (karras/logsnr need ᾱ(1) > 0)
        return "n/a" if "pure noise" in str(err) or "ᾱ(1)" in str(err) else "error"
    if not (np.isfinite(g) and np.isfinite(m)):
        return "nan"
    return f"{g:.1e} / {m:.1e}"


def oracle_part(schedules, steps: int) -> None:
    print(f"\n## oracles at {steps} steps: Gaussian / mixture error (~ = stochastic: distribution distances)\n")
    for name in schedules:
        start = time.perf_counter()
        problem = Problem(name)
        print(f"\n### {name}\n")
        bar = [cell(problem, "ddim", 100, False), cell(problem, "ddim", 100, True, eta=1.0)]
        print(f"bar: ddim@100 (defaults) {bar[0]};  ~ddim η=1 @100 {bar[1]};  ddim@10 {cell(problem, 'ddim', steps, False)}\n")
        print("| solver | " + " | ".join(GRIDS) + " |")
        print("|---|" + "---|" * len(GRIDS))
        for solver, variants in SOLVERS.items():
            if solver not in difftk.available("sampler"):
                continue
            stochastic = solver in STOCHASTIC
            for label, options in variants:
                cells = [cell(problem, solver, steps, stochastic, spacing=grid, **options) for grid in GRIDS]
                shown = f"{'~' if stochastic else ''}{solver}{' ' + label if label else ''}"
                print(f"| {shown} | " + " | ".join(cells) + " |", flush=True)
        print(f"\n({time.perf_counter() - start:.0f} s on shared cores)")


def why_part(steps: int) -> None:
    """Where 2M's and 3M's error on linspace comes from: each solver run exactly up to grid time k, then
    by itself; the error left when only the last steps are the solver's."""
    problem = Problem("linear")
    s = problem.schedule  # linear's ᾱ(1) > 0: for_sampling leaves it as it is
    grid = time_grid(s, steps, "linspace")
    print(f"\n## linear, linspace, {steps} steps: grid t = {np.array2string(grid, precision=3)}")
    lam = 0.5 * np.log(alpha_bar_table(s, grid) / (1 - alpha_bar_table(s, grid)))
    print(f"λ-steps h_k: {np.array2string(np.diff(lam), precision=2)}")
    for name in ("dpm-solver-2m", "dpm-solver-3m"):
        for lof in (True, False):
            sampler = difftk.create("sampler", name, spacing="linspace", lower_order_final=lof)
            err = float((sampler.sample(problem.gauss, s, problem.gauss_x.clone(), steps=steps)
                         - problem.gauss_exact).abs().mean())
            orders = sampler.orders(steps)
            # the same run started from the exact state at t_{K−1}: only the step into t_1 and the x̂₀ at t_1 remain
            ab = float(alpha_bar_table(s, grid[-2:-1])[0])
            v1 = float(alpha_bar_table(s, np.array([1.0]))[0])
            z = (problem.gauss_x - v1**0.5 * MU) / (v1 * STD**2 + 1 - v1) ** 0.5
            x_exact = ab**0.5 * MU + (ab * STD**2 + 1 - ab) ** 0.5 * z
            tail = difftk.create("sampler", "ddim", times=tuple(grid[-2:]))
            tail_err = float((tail.sample(problem.gauss, s, x_exact, steps=None) - problem.gauss_exact).abs().mean())
            print(f"{name} lower_order_final={lof}: orders {orders}, error {err:.3e}; "
                  f"exact to t_(K−1), then one DDIM step and x̂₀: {tail_err:.3e}")


def shipped_part(models, n: int, steps: int, reference_steps: int = 200) -> None:
    """On each shipped model, from the same n starts (labels 0..9 in turn, unguided: cfg at w = 0, clipping
    off): the mean |x − x_ref| to DDIM at ``reference_steps`` (the model-level analogue of the oracles'
    endpoint error) and the share of pixels beyond ±1.05, for DDIM and every solver's former and new defaults."""
    cells = [("ddim", {}, 100), ("ddim", {}, steps)]
    for solver, variants in SHIPPED_CELLS.items():
        cells += [(solver, options, steps) for options in variants]
    for model_name in models:
        model = difftk.load(model_name)
        labels = torch.arange(n) % max(model.num_classes, 1) if model.num_classes else None

        def draw(name, options, k):
            return model.sample(n, sampler=name, steps=k, guidance="cfg", scale=0.0, labels=labels, seed=0,
                                batch_size=n, **options)

        start = time.perf_counter()
        reference = draw("ddim", {}, reference_steps)
        print(f"\n## {model_name}: n = {n}, seed 0, unguided (cfg w = 0), clipping off; reference DDIM at "
              f"{reference_steps} steps ({time.perf_counter() - start:.0f} s)\n")
        print("| sampler | options | steps | mean abs to the reference | pixels beyond ±1.05 | seconds (shared cores) |")
        print("|---|---|---:|---:|---:|---:|")
        for name, options, k in cells:
            start = time.perf_counter()
            x = draw(name, options, k)
            shown = ", ".join(f"{key}={value}" for key, value in options.items()) or "defaults"
            print(f"| {name} | {shown} | {k} | {float((x - reference).abs().mean()):.4f} | "
                  f"{100 * float((x.abs() > 1.05).float().mean()):.2f} % | {time.perf_counter() - start:.0f} |", flush=True)


#: σ where DPM-Solver's code ends the cosine schedule (T = 0.9946, λ = −4.78), and the caps measured beside it
DPM_SOLVER_COSINE_SIGMA, CAPS = 119.0, (80.0, 119.0, 157.0)


def truncated_logsnr_times(schedule, steps: int, sigma_max: float) -> tuple[float, ...]:
    """A discrete schedule's grid points nearest to λ even from −log σ_max down to λ(1/T), distinct, the first
    moved to t = 1 (a sampler starts from pure noise there)."""
    T = grid_size_of(schedule)
    ab = alpha_bar_table(schedule, np.arange(1, T + 1) / T)
    lam = 0.5 * np.log(ab / (1 - ab))
    target = np.linspace(max(lam[-1], -np.log(sigma_max)), lam[0], steps)
    idx = sorted({int(np.argmin(np.abs(lam - x))) + 1 for x in target}, reverse=True)
    if len(idx) != steps:
        raise SystemExit(f"{steps} steps even in λ below σ = {sigma_max:g} repeat grid points: use fewer steps")
    times = np.array(idx, dtype=np.float64) / T
    times[0] = 1.0
    return tuple(float(t) for t in times)


def truncated_part(steps: int, n: int = 200, reference_steps: int = 500) -> None:
    """Cosine's log-SNR grid cut at σ_max (DPM-Solver's own cosine end, and caps beside it): the Gaussian oracle,
    then on mnist-cfg the mean |x − x_ref| to DDIM at ``reference_steps`` from the same noise, for each solver's
    default and the grid cut at DPM-Solver's σ = 119."""
    problem = Problem("cosine")
    bar = problem.errors(difftk.create("sampler", "ddim"), 100, False)[0]
    law_bar = problem.errors(difftk.create("sampler", "ddim", eta=1.0), 100, True)[0]
    print(f"\n## cosine, {steps} steps, log-SNR grid from σ_max: Gaussian error (bar {bar:.2e}; ~ {law_bar:.2e})\n")
    solvers = ("dpm-solver-2m", "dpm-solver-3m", "unipc", "dpm-solver-2m-sde")
    print("| σ_max | grid | " + " | ".join(("~" if s in STOCHASTIC else "") + s for s in solvers) + " |")
    print("|---:|---|" + "---:|" * len(solvers))
    for cap in CAPS:
        times = truncated_logsnr_times(problem.schedule, steps, cap)
        cells = []
        for name in solvers:
            stochastic = name in STOCHASTIC
            error = problem.errors(difftk.create("sampler", name, times=times), None, stochastic)[0]
            cells.append(f"{error:.1e}{' ✓' if error <= (law_bar if stochastic else bar) else ''}")
        print(f"| {cap:g} | {', '.join(f'{t:.3g}' for t in times)} | " + " | ".join(cells) + " |", flush=True)

    model = difftk.load("mnist-cfg")
    times = truncated_logsnr_times(for_sampling(model.schedule), steps, DPM_SOLVER_COSINE_SIGMA)
    labels = torch.arange(n) % 10

    def draw(name, k, **options):
        return model.sample(n, sampler=name, steps=k, guidance="cfg", scale=0.0, labels=labels, seed=0,
                            batch_size=250, **options)

    start = time.perf_counter()
    reference = draw("ddim", reference_steps)
    half = float((draw("ddim", reference_steps // 2) - reference).abs().mean())
    print(f"\n## mnist-cfg: n = {n}, seed 0, cfg w = 0, clipping off; mean |x − DDIM@{reference_steps}| (DDIM@"
          f"{reference_steps // 2}: {half:.4f}; {time.perf_counter() - start:.0f} s)\n")
    print("| solver | default grid | σ ≤ 119, even in λ |\n|---|---:|---:|")
    for name in solvers[:3]:
        errors = [float((draw(name, k, **options) - reference).abs().mean())
                  for k, options in ((steps, {}), (None, {"times": times}))]
        print(f"| {name} | {errors[0]:.4f} | {errors[1]:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("oracles", "why", "shipped", "truncated"), default="oracles")
    parser.add_argument("--schedules", default=",".join(SCHEDULES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--models", default="mnist-cfg,mnist-flow")
    parser.add_argument("--n", type=int, default=40)
    args = parser.parse_args()
    if args.part == "oracles":
        oracle_part(args.schedules.split(","), args.steps)
    elif args.part == "why":
        why_part(args.steps)
    elif args.part == "truncated":
        truncated_part(args.steps)
    else:
        shipped_part(args.models.split(","), args.n, args.steps)


if __name__ == "__main__":
    main()
