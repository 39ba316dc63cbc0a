"""The sampler's contract, checked on an exact oracle: what :func:`check_sampler` holds a sampler to.

The calls it makes against its stated ``nfe``, x_T left untouched, ``steps`` respected, its step
reports, determinism under a seeded generator, and convergence to the exact answer on Gaussian
data as the steps grow (at the rate of a stated ``convergence_order``). Each property is tested
against a sampler broken in that one way (core/tests/test_conformance_kit.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from difftk.components.protocols import grid_size_of
from difftk.components.wrapping import DenoiserWrapper
from difftk.testing.failures import check_protocol, fail_as
from difftk.testing.oracles import GaussianOracle
from difftk.testing.reference import ReferenceLinearSchedule


class _Counting(DenoiserWrapper):
    """``inner`` with its calls counted (what ``nfe`` is held to)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        return super().forward(x, t, cond)


#: the data of the exact oracle the kit samples: N(MEAN, STD²) per coordinate
ORACLE_MEAN, ORACLE_STD = 0.5, 0.5
#: starts (rows) of the convergence check: the moments' standard errors are ≈ 0.5/√N ≈ 0.006
CONVERGENCE_STARTS = 4096
#: the step counts of the convergence check, coarse then fine (fewer on a schedule of fewer than 80 steps)
CONVERGENCE_STEPS = (20, 80)
#: the largest error allowed at the fine step count: the mean absolute distance to the exact answer
#: for a deterministic sampler, |mean − μ| + |std − s| for a stochastic one. Every shipped sampler
#: is below 0.04 on both reference schedules; x_T returned as it came scores about 1
CONVERGED = 0.1


def _check_reports(fail: Callable[[str], None], seen: list[Any], fixed: bool) -> None:
    """Callback reports: at least one; index 0, 1, 2, … in order; times decreasing; index < total,
    the last report's total is the number of reports, and on a fixed grid every report says it."""
    if not seen:
        fail("callback was never called")
    indices = [getattr(s, "index", None) for s in seen]
    if indices != list(range(len(seen))):
        fail(f"callback index must count the steps 0, 1, 2, …, got {indices[:8]}{' …' if len(indices) > 8 else ''}")
    totals = [getattr(s, "total", None) for s in seen]
    if totals[-1] != len(seen) or any(not isinstance(n, int) or i >= n for i, n in zip(indices, totals, strict=True)):
        fail(f"callback total must be the number of steps ({len(seen)} reported), got totals {sorted(set(map(str, totals)))}")
    if fixed and len(set(totals)) != 1:
        fail(f"callback total must be the same at every step of a fixed grid, got {sorted(set(totals))}")
    times = [s.t for s in seen]
    if any(b >= a for a, b in zip(times, times[1:], strict=False)):
        fail(f"callback times must decrease, got {times}")


def exact_ode_answer(x_T: torch.Tensor, alpha_bar_T: float, alpha_bar_last: float) -> torch.Tensor:
    """What an exact probability-flow ODE sampler returns for N(μ, s²) data (:data:`ORACLE_MEAN`,
    :data:`ORACLE_STD`) by the one end rule: the ODE keeps each coordinate's standard score
    z = (x_T − √ᾱ_T·μ)/√(ᾱ_T·s² + 1 − ᾱ_T), so at the last grid time x = √ᾱ·μ + √(ᾱs² + 1 − ᾱ)·z,
    and the sampler returns x̂₀ there, E[x₀ | x] = μ + √ᾱ·s²·(x − √ᾱ·μ)/(ᾱs² + 1 − ᾱ)."""
    mu, s = ORACLE_MEAN, ORACLE_STD
    z = (x_T - alpha_bar_T**0.5 * mu) / (alpha_bar_T * s**2 + 1 - alpha_bar_T) ** 0.5
    var = alpha_bar_last * s**2 + 1 - alpha_bar_last
    return mu + alpha_bar_last**0.5 * s**2 * z / var**0.5


def _convergence(fail: Callable[[str], None], sampler: Any, schedule: Any, oracle: Any) -> None:
    """The error to the exact answer falls as the steps grow and is below :data:`CONVERGED` at the fine
    count. A deterministic sampler is held to :func:`exact_ode_answer` start by start; a stochastic
    one, to the data's mean and standard deviation. With a stated ``convergence_order`` p, four times
    the steps must divide a deterministic sampler's error by at least 4^(p − ½)."""
    x_T = torch.randn(CONVERGENCE_STARTS, *oracle.event_shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grid_size = grid_size_of(schedule)
    k2 = min(CONVERGENCE_STEPS[1], grid_size or CONVERGENCE_STEPS[1])
    k1 = max(1, k2 * CONVERGENCE_STEPS[0] // CONVERGENCE_STEPS[1])
    runs = []
    for steps in (k1, k2):
        seen: list[Any] = []
        a = sampler.sample(oracle, schedule, x_T.clone(), steps=steps, generator=torch.Generator().manual_seed(8),
                           callback=seen.append)
        b = sampler.sample(oracle, schedule, x_T.clone(), steps=steps, generator=torch.Generator().manual_seed(9))
        runs.append((a, not torch.equal(a, b), seen[0].t, seen[-1].t))
    stochastic = any(r[1] for r in runs)
    errors = []
    for x, _, t_first, t_last in runs:
        if stochastic:
            errors.append(abs(float(x.mean()) - ORACLE_MEAN) + abs(float(x.std()) - ORACLE_STD))
        else:
            ab = [float(schedule.alpha_bar(torch.tensor(float(t), dtype=torch.float64))) for t in (t_first, t_last)]
            errors.append(float((x - exact_ode_answer(x_T, *ab)).abs().mean()))
    e1, e2 = errors
    what = ("|mean − μ| + |std − s| of its samples" if stochastic else "its mean distance to the exact ODE answer") + \
        f" on N({ORACLE_MEAN:g}, {ORACLE_STD:g}²) data"
    if not e2 <= CONVERGED:
        fail(f"it does not converge to the exact answer: {what} is {e2:.3g} at {k2} steps ({e1:.3g} at {k1}), "
             f"above {CONVERGED:g} (an update with a wrong sign or coefficient, or x_T returned as it came?)")
    floor = 0.02 if stochastic else 1e-3  # below it, Monte Carlo noise (or round-off) decides
    if e1 > floor and not e2 < e1:
        fail(f"its error does not fall as the steps grow: {what} is {e1:.3g} at {k1} steps and {e2:.3g} at {k2}")
    order = getattr(sampler, "convergence_order", None)
    if order is not None and not stochastic and e2 > 1e-10:
        observed = float(np.log(e1 / e2) / np.log(k2 / k1))
        if observed < order - 0.5:
            fail(f"it states convergence_order {order}, but its error falls as steps^−{observed:.2f} ({what}: "
                 f"{e1:.3g} at {k1} steps, {e2:.3g} at {k2})")


def check_sampler(sampler: Any, schedule: Any | None = None, *, shape: tuple[int, ...] = (8, 2), steps: int = 10) -> None:
    """``sample`` returns x_T's shape and dtype, finite values, the same result for the same
    seeded generator; leaves x_T untouched; calls the denoiser ``nfe(steps, schedule)`` times
    (``None``: an adaptive sampler that chooses its own steps); respects ``steps``; reports every
    step to ``callback`` (index 0, 1, …, its total, decreasing times); and converges to the
    exact answer on a Gaussian oracle as the steps grow (:func:`_convergence`)."""
    check_protocol(sampler, "sampler")
    def fail(msg: str) -> None:
        fail_as(sampler, "sampler", msg)

    schedule = schedule or ReferenceLinearSchedule()
    oracle = GaussianOracle(schedule, mean=ORACLE_MEAN, std=ORACLE_STD, shape=shape[1:])
    if not callable(getattr(sampler, "nfe", None)):
        fail("it must state its denoiser evaluations: nfe(steps, schedule) -> int, or None when it chooses its own "
             "steps (GridSampler gives one per grid time)")
    stated = sampler.nfe(steps, schedule)
    calls: dict[int, int] = {}
    outputs: dict[int, torch.Tensor] = {}
    for dtype in (torch.float32, torch.float64):
        x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
        original = x_T.clone()
        counted = _Counting(oracle)
        seen: list[Any] = []
        out = sampler.sample(counted, schedule, x_T, steps=steps, generator=torch.Generator().manual_seed(1),
                             callback=seen.append)
        if not torch.equal(x_T, original):
            fail("it must leave x_T untouched, but overwrote it in place (step from a copy: x = x_T.clone())")
        if not isinstance(out, torch.Tensor) or out.shape != x_T.shape or out.dtype != dtype:
            fail(f"sample must return x_T's shape and dtype {tuple(shape)} {dtype}, got {getattr(out, 'shape', type(out))} {getattr(out, 'dtype', '')}")
        if not torch.isfinite(out).all():
            fail(f"sample must be finite (steps={steps}, shape={tuple(shape)})")
        if stated is not None and counted.calls != stated:
            fail(f"nfe({steps}, schedule) says {stated} denoiser evaluations, but sample called the denoiser {counted.calls} times")
        _check_reports(fail, seen, fixed=stated is not None)
        again = sampler.sample(oracle, schedule, x_T.clone(), steps=steps, generator=torch.Generator().manual_seed(1))
        if not torch.equal(out, again):
            fail(f"sample must be deterministic under a seeded generator ({dtype})")
        calls[steps], outputs[steps] = counted.calls, out
    if stated is not None:  # a fixed grid: fewer steps, fewer evaluations, another result
        fewer = max(1, steps // 2)
        counted = _Counting(oracle)
        x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        out = sampler.sample(counted, schedule, x_T, steps=fewer, generator=torch.Generator().manual_seed(1))
        if counted.calls == calls[steps] and torch.equal(out, outputs[steps]):
            fail(f"it ignores steps: steps={fewer} and steps={steps} gave the same {counted.calls} evaluations and the same samples")
        if counted.calls != sampler.nfe(fewer, schedule):
            fail(f"nfe({fewer}, schedule) says {sampler.nfe(fewer, schedule)} denoiser evaluations, but sample called the "
                 f"denoiser {counted.calls} times")
    _convergence(fail, sampler, schedule, GaussianOracle(schedule, mean=ORACLE_MEAN, std=ORACLE_STD, shape=(2,)))
