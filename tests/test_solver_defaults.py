"""The high-order solvers' default grids and final-step policies, held to issue 37's bar: on the exact
Gaussian oracle N(0.5, 0.1²), 10 steps with the defaults err no more than DDIM at 100 steps, on the
linear and the cosine schedule (benchmarks/solver_defaults.py measures every grid; docs/fast_sampling.md).
On cosine the defaults are set by the shipped model instead, and every solver misses: MISSES says by how much.

Deterministic solvers are held to the closed-form endpoint of the probability-flow ODE from the same
x_T (mean absolute error over 2,048 starts); the stochastic one to the data's law (W₂ between the
samples' Gaussian and N(μ, s²) over 16,384 draws), against DDIM at 100 measured the same way.
"""

import difftk
import numpy as np
import pytest
import torch
from difftk.maths.schedules import alpha_bar_table
from difftk.maths.terminal import for_sampling
from difftk.testing import GaussianOracle

MU, STD = 0.5, 0.1
F64 = torch.float64
#: (solver, schedule) pairs that miss the bar at 10 steps, measured (docs/fast_sampling.md). Strict: a default
#: that starts to meet it fails here until it leaves this set.
COSINE = ("cosine's default is the grid the shipped cosine model needs: logsnr, which meets this bar, drew 0.5–5 % of "
          "mnist-cfg's pixels beyond ±1.05 at 10 steps and 2–3× the distance to its fine solution; 2M second order "
          "into t_1 and UniPC on linspace, which also meet it, cost mnist-cfg 15 and 14 FID points at n = 1,000 "
          "over 3 seeds (p ≤ 0.001); logsnr cut at DPM-Solver's own σ = 119 meets it for 2M, 3M and UniPC and costs "
          "mnist-cfg 3.5–5 FID and 60–70 KID (paired p ≤ 0.03)")
MISSES = {
    ("dpm-solver-2m", "cosine"): "3.8e-2 against 5.0e-3: " + COSINE,
    ("dpm-solver-3m", "cosine"): "3.8e-2 against 5.0e-3: " + COSINE,
    ("unipc", "cosine"): "3.9e-2 against 5.0e-3: " + COSINE,
    ("dpm-solver-2m-sde", "cosine"): "5.5e-2 against 1.3e-2: " + COSINE,
    ("heun", "linear"): "2.4e-2 against 9.2e-3 (19 NFE): Heun's trapezoid in σ; 20 steps meet it (4.4e-3)",
    ("heun", "cosine"): "2.5e-2 against 5.0e-3 (19 NFE): Heun's trapezoid in σ; 20 steps meet it (4.9e-3)",
    ("edm", "linear"): "5.2e-2 against 2.1e-2: S_churn = 40 at its cap every step of 10",
    ("edm", "cosine"): "6.0e-2 against 1.3e-2: S_churn = 40 at its cap every step of 10",
}
DETERMINISTIC = ("dpm-solver-2m", "dpm-solver-3m", "unipc", "heun")
STOCHASTIC = ("dpm-solver-2m-sde", "edm")


def endpoint(schedule, x_T):
    """The ODE keeps z = (x − √ᾱ·μ)/√(ᾱs² + 1 − ᾱ): from x_T at t = 1 it ends at μ + s·z."""
    ab = float(alpha_bar_table(schedule, np.array([1.0]))[0])
    return MU + STD * (x_T - ab**0.5 * MU) / (ab * STD**2 + 1 - ab) ** 0.5


def law_error(x):
    return float(((x.mean() - MU) ** 2 + (x.std() - STD) ** 2).sqrt())


@pytest.fixture(scope="module", params=["linear", "cosine"])
def problem(request):
    s = for_sampling(difftk.create("schedule", request.param))  # as Model.sample hands it to a sampler
    oracle = GaussianOracle(s, mean=MU, std=STD)
    x_T = torch.randn(2048, 1, generator=torch.Generator().manual_seed(0), dtype=F64)
    many = torch.randn(16384, 1, generator=torch.Generator().manual_seed(0), dtype=F64)
    ddim = difftk.create("sampler", "ddim")
    bar = float((ddim.sample(oracle, s, x_T, steps=100) - endpoint(s, x_T)).abs().mean())
    law_bar = law_error(difftk.create("sampler", "ddim", eta=1.0).sample(oracle, s, many, steps=100,
                                                                         generator=torch.Generator().manual_seed(2)))
    return request.param, s, oracle, x_T, many, bar, law_bar


def _check(name, problem):
    schedule_name, s, oracle, x_T, many, bar, law_bar = problem
    sampler = difftk.create("sampler", name)
    if name in STOCHASTIC:
        error = law_error(sampler.sample(oracle, s, many, steps=10, generator=torch.Generator().manual_seed(2)))
        assert error <= law_bar, (schedule_name, name, error, law_bar)
    else:
        error = float((sampler.sample(oracle, s, x_T, steps=10) - endpoint(s, x_T)).abs().mean())
        assert error <= bar, (schedule_name, name, error, bar)


@pytest.mark.parametrize("name", DETERMINISTIC + STOCHASTIC)
def test_ten_steps_with_the_defaults_reach_ddim_at_100(request, name, problem):
    miss = MISSES.get((name, problem[0]))
    if miss is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=miss))
    _check(name, problem)
