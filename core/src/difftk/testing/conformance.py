"""Contract checks, one per protocol of :mod:`difftk.components.protocols`, for plugin authors and
for our own components.

Each check first holds the class to its protocol's methods and parameters (what registration
checks, :func:`difftk.components.protocols.protocol_problem`), then tests the behaviour the
protocol's docstring promises on real inputs. Each ``check_*`` raises :class:`ConformanceError` naming the property that failed and the input
it failed for, e.g. ``schedule 'bad': ᾱ must be non-increasing, but ᾱ(0.5) = 0.3 < ᾱ(0.501) = 0.31``.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import Any

import numpy as np
import torch

from difftk.components.protocols import grid_size_of, learned_variance_of, num_classes_of, protocol_problem
from difftk.components.wrapping import DenoiserWrapper
from difftk.maths.diffusion import PREDICTIONS
from difftk.maths.schedules import Discretization
from difftk.testing.oracles import GaussianOracle
from difftk.testing.reference import ReferenceLinearSchedule, TinyDenoiser


class ConformanceError(AssertionError):
    """A component broke its protocol's contract; the message says which property and where."""


def _label(component: Any, default: str) -> str:
    return getattr(type(component), "component_label", None) or getattr(
        getattr(component, "config", None).__class__, "component_label", None) or default


def _fail(component: Any, kind: str, message: str) -> None:
    raise ConformanceError(f"{_label(component, kind + ' ' + type(component).__name__)}: {message}")


def _check_protocol(component: Any, kind: str) -> None:
    """The class has the methods of ``kind``'s protocol, with the parameters its callers pass."""
    problem = protocol_problem(kind, type(component))
    if problem is not None:
        _fail(component, kind, problem)


# --- schedules ----------------------------------------------------------------------------------

#: c in the bound |log ᾱ_i − log ᾱ(i/T)| ≤ c·max(1, L)²/T that a continuous schedule's
#: ``discretize(T)`` must meet. Measured for the VP SDE (β from 0.1 to 20, L = 10.05):
#: T·max|Δ log ᾱ| = 86 at T = 50, 75 at T = 100, 68 at T = 1000 and → ∫β²/2 = 67 = 0.66·L²
#: as T → ∞, so c = 2 leaves a factor 3 and a discretization off by a constant fails.
CONTINUOUS_LOG_TOLERANCE = 2.0


def check_schedule(schedule: Any, *, points: int = 2001, discretize_steps: tuple[int, ...] = (10, 50)) -> None:
    """ᾱ lies in (0, 1], is non-increasing, ᾱ(0) ≈ 1, ᾱ(1) ≈ 0, keeps t's shape and dtype, and
    ``discretize(T)`` is consistent: β ∈ (0, 1) and ᾱ_i = ∏(1−β_j) exactly, for every T tried.

    Agreement with ᾱ on the grid i/T: a *discrete* schedule (``grid_size`` set) must match
    ᾱ(i/T) to 1e-9 (relative) for every T, its native grid included. A *continuous* schedule
    may discretize by its paper's rule, which only approximates ᾱ (the VP SDE's β_i = β(t_i)/T
    of Song et al. 2021, App. B): it must satisfy |log ᾱ_i − log ᾱ(i/T)| ≤ 2·max(1, L)²/T with
    L = −log ᾱ(1), checked at T = 1000 as well. The bound is first order in 1/T, as any
    consistent discretization of the rate is; its constant covers the leading error
    ½Σβ_i² ≈ (1/2T)∫β² ≈ (2/3)L²/T of a linear rate three times (see :data:`CONTINUOUS_LOG_TOLERANCE`)."""
    _check_protocol(schedule, "schedule")
    def fail(msg: str) -> None:
        _fail(schedule, "schedule", msg)

    if not callable(getattr(schedule, "alpha_bar", None)) or not callable(getattr(schedule, "discretize", None)):
        fail("must have alpha_bar(t) and discretize(T)")
    t = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    ab = schedule.alpha_bar(t)
    if not isinstance(ab, torch.Tensor) or ab.shape != t.shape or ab.dtype != t.dtype:
        fail(f"alpha_bar(t) must return a tensor of t's shape and dtype, got {getattr(ab, 'shape', type(ab))}, {getattr(ab, 'dtype', '')}")
    for dtype, shape in ((torch.float32, (3, 4)), (torch.float64, ())):
        probe = torch.full(shape, 0.5, dtype=dtype)
        out = schedule.alpha_bar(probe)
        if out.shape != probe.shape or out.dtype != dtype:
            fail(f"alpha_bar(t) must keep shape and dtype: t {tuple(shape)} {dtype} gave {tuple(out.shape)} {out.dtype}")
    bad = ~torch.isfinite(ab) | (ab < 0) | (ab > 1 + 1e-12)
    bad[:-1] |= ab[:-1] <= 0  # only t = 1 may be pure noise (zero terminal SNR, the flow path)
    if bad.any():
        i = int(bad.nonzero()[0])
        fail(f"ᾱ must lie in (0, 1] (ᾱ(1) = 0 allowed), but ᾱ({t[i]:.6g}) = {ab[i]:.6g}")
    rise = ab[1:] - ab[:-1]
    if (rise > 1e-12).any():
        i = int((rise > 1e-12).nonzero()[0])
        fail(f"ᾱ must be non-increasing, but ᾱ({t[i]:.6g}) = {ab[i]:.6g} < ᾱ({t[i + 1]:.6g}) = {ab[i + 1]:.6g}")
    if ab[0] < 1 - 1e-3:
        fail(f"ᾱ(0) must be ≈ 1 (data at t=0), got {ab[0]:.6g}")
    if ab[-1] > 1e-2:
        fail(f"ᾱ(1) must be ≈ 0 (noise at t=1), got {ab[-1]:.6g}")
    discrete = grid_size_of(schedule) is not None
    steps = tuple(discretize_steps) + ((schedule.grid_size,) if discrete else (1000,))
    L = max(1.0, -float(torch.log(ab[-1] if ab[-1] > 0 else ab[-2])))
    for T in steps:
        d = schedule.discretize(T)
        if not isinstance(d, Discretization) and not hasattr(d, "betas"):
            fail(f"discretize({T}) must return an object with betas and alphas_cumprod")
        betas, abar = np.asarray(d.betas), np.asarray(d.alphas_cumprod)
        if betas.shape != (T,) or abar.shape != (T,) or betas.dtype != np.float64 or abar.dtype != np.float64:
            fail(f"discretize({T}) must give {T} float64 betas and alphas_cumprod, got {betas.shape} {betas.dtype}")
        valid = (betas > 0) & (betas < 1)
        valid[-1] |= betas[-1] == 1.0 and abar[-1] == 0.0  # β_T = 1 exactly when ᾱ_T = 0
        if not np.all(valid):
            i = int(np.nonzero(~valid)[0][0])
            fail(f"discretize({T}).betas must lie in (0, 1) (β_T = 1 when ᾱ_T = 0), but β_{i + 1} = {betas[i]:.6g}")
        cum = np.cumprod(1 - betas)
        if not np.allclose(cum, abar, rtol=1e-10, atol=0):
            i = int(np.argmax(np.abs(cum - abar) / abar))
            fail(f"discretize({T}): ᾱ_i must equal ∏(1−β_j), but at i={i + 1}: {abar[i]:.12g} vs {cum[i]:.12g}")
        grid = schedule.alpha_bar(torch.arange(1, T + 1, dtype=torch.float64) / T).numpy()
        if not discrete:
            with np.errstate(divide="ignore", invalid="ignore"):
                gap = np.nan_to_num(np.abs(np.log(grid) - np.log(abar)), nan=0.0)  # both 0 at pure noise
            tol = CONTINUOUS_LOG_TOLERANCE * L**2 / T
            if not np.all(gap <= tol):
                i = int(np.argmax(gap))
                fail(f"discretize({T}) must approximate ᾱ on its grid to |Δ log ᾱ| ≤ {CONTINUOUS_LOG_TOLERANCE:g}·max(1, L)²/T "
                     f"= {tol:.3g} (L = −log ᾱ(1) = {L:.4g}), but at i={i + 1}: ᾱ({i + 1}/{T}) = {grid[i]:.12g} "
                     f"vs alphas_cumprod {abar[i]:.12g} (Δ log ᾱ = {gap[i]:.3g})")
            continue
        if not np.allclose(grid, abar, rtol=1e-9, atol=1e-300):
            i = int(np.argmax(np.abs(grid - abar) / abar))
            fail(f"discretize({T}) must agree with ᾱ on its grid, but ᾱ({i + 1}/{T}) = {grid[i]:.12g} vs alphas_cumprod {abar[i]:.12g}")


# --- denoisers ---------------------------------------------------------------------------------

def _perturbed(denoiser: Any, generator: torch.Generator) -> Any:
    """A copy of ``denoiser`` with every parameter moved by noise of its own scale (1e-2 for a zero
    tensor): what the network can express once trained, so a zero-initialised output layer (ADM's
    U-Net, DiT) does not hide an input the network never reads."""
    copy = deepcopy(denoiser)
    with torch.no_grad():
        for p in copy.parameters() if isinstance(copy, torch.nn.Module) else ():
            scale = float(p.detach().float().std()) if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator).to(p) * (scale if scale > 0 else 1e-2))
    return copy


def _reads(denoiser: Any, make: Callable[[Any], tuple[torch.Tensor, torch.Tensor]], generator: torch.Generator) -> bool:
    """Whether the two outputs ``make(d)`` gives differ, for the denoiser as it is or after :func:`_perturbed`."""
    for d in (denoiser, _perturbed(denoiser, generator)):
        a, b = make(d)
        if not torch.equal(a, b):
            return True
    return False


def check_denoiser(denoiser: Any, shape: tuple[int, ...], *, num_classes: int | None = None) -> None:
    """``denoiser(x_t, t, cond)`` returns x_t's shape (twice the channels with a learned
    variance), finite values, for float t of shape [B], with and without ``cond``; and it reads
    what it is given: its output changes with x_t, with t, and — when it declares classes
    (``num_classes``, or the argument) — with cond. A freshly initialised network may output
    zeros by design (a zero-initialised last layer), so a constant output is checked again after
    moving every parameter by noise of its own scale."""
    _check_protocol(denoiser, "denoiser")
    def fail(msg: str) -> None:
        _fail(denoiser, "denoiser", msg)

    if getattr(denoiser, "prediction", None) not in PREDICTIONS:
        fail(f"attribute prediction must be one of {', '.join(PREDICTIONS)}, got {getattr(denoiser, 'prediction', None)!r}")
    num_classes = num_classes_of(denoiser) if num_classes is None else num_classes
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    t = torch.rand(shape[0], generator=g).clamp(1e-3, 1.0)
    conds = [None] + ([torch.arange(shape[0]) % num_classes] if num_classes else [])
    expect = list(shape)
    if learned_variance_of(denoiser):
        expect[1] *= 2
    with torch.no_grad():
        for cond in conds:
            before = x.clone()
            out = denoiser(x, t, cond=cond)
            if not torch.equal(x, before):
                fail(f"it must leave x_t untouched, but it changed its input in place (cond={'given' if cond is not None else None})")
            if tuple(out.shape) != tuple(expect):
                fail(f"output for input {tuple(shape)} (cond={'given' if cond is not None else None}) must be {tuple(expect)}, got {tuple(out.shape)}")
            if not torch.isfinite(out).all():
                fail(f"output must be finite for input {tuple(shape)}")
        y = conds[-1]
        x2 = torch.randn(shape, generator=g)
        if not _reads(denoiser, lambda d: (d(x, t, cond=y), d(x2, t, cond=y)), g):
            fail("its output does not depend on x_t, even after its parameters are perturbed")
        t2 = (1.0 - t).clamp(1e-3, 1.0)
        if not _reads(denoiser, lambda d: (d(x, t, cond=y), d(x, t2, cond=y)), g):
            fail("its output does not depend on t, even after its parameters are perturbed")
        if num_classes:
            other = (y + 1) % num_classes
            if not _reads(denoiser, lambda d: (d(x, t, cond=y), d(x, t, cond=other)), g):
                fail(f"it declares num_classes={num_classes}, but its output does not depend on cond, even after its "
                     "parameters are perturbed (declare num_classes=0 for an unconditional network)")


# --- objectives ---------------------------------------------------------------------------------

def check_objective(objective: Any, schedule: Any | None = None, *, shape: tuple[int, ...] = (4, 1, 4, 4)) -> None:
    """``loss`` returns a finite [B] tensor, gives gradients to the denoiser's parameters and
    is reproducible under a seeded generator."""
    _check_protocol(objective, "objective")
    def fail(msg: str) -> None:
        _fail(objective, "objective", msg)

    schedule = schedule or ReferenceLinearSchedule()
    torch.manual_seed(0)
    denoiser = TinyDenoiser(in_channels=shape[1])
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(2):
        loss = objective.loss(denoiser, schedule, x0, generator=torch.Generator().manual_seed(2))
        if not isinstance(loss, torch.Tensor) or loss.shape != (shape[0],):
            fail(f"loss must be a per-example tensor of shape ({shape[0]},), got {getattr(loss, 'shape', type(loss))}")
        if not torch.isfinite(loss).all():
            fail(f"loss must be finite, got {loss.tolist()}")
        losses.append(loss)
    if not torch.equal(losses[0], losses[1]):
        fail("loss must be reproducible with the same seeded generator")
    if not losses[0].requires_grad:
        fail("loss must be differentiable with respect to the denoiser's parameters (no gradient reached them: "
             "the loss does not require grad)")
    losses[0].mean().backward()
    if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in denoiser.parameters()):
        fail("loss must be differentiable with respect to the denoiser's parameters (no gradient reached them)")


# --- samplers -----------------------------------------------------------------------------------

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
    _check_protocol(sampler, "sampler")
    def fail(msg: str) -> None:
        _fail(sampler, "sampler", msg)

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


# --- guidance -----------------------------------------------------------------------------------

def check_guidance(guidance: Any, schedule: Any | None = None, *, denoiser: Any | None = None,
                   shape: tuple[int, ...] = (4, 2)) -> None:
    """``wrap(denoiser, schedule)`` returns a denoiser with a valid ``prediction`` whose output
    has the wrapped denoiser's shape."""
    _check_protocol(guidance, "guidance")
    schedule = schedule or ReferenceLinearSchedule()
    if denoiser is None:
        denoiser = GaussianOracle(schedule, mean=0.0, std=1.0, shape=shape[1:])
    wrapped = guidance.wrap(denoiser, schedule)
    if not callable(wrapped) or getattr(wrapped, "prediction", None) not in PREDICTIONS:
        _fail(guidance, "guidance", "wrap(denoiser, schedule) must return a denoiser (callable with a prediction attribute)")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((shape[0],), 0.5)
    cond = torch.zeros(shape[0], dtype=torch.long)
    out = wrapped(x, t, cond=cond)
    if out.shape != denoiser(x, t, cond=cond).shape:
        _fail(guidance, "guidance", f"the wrapped denoiser must keep the output shape {tuple(shape)}, got {tuple(out.shape)}")


CHECKS: dict[str, Callable[..., None]] = {
    "schedule": check_schedule,
    "denoiser": check_denoiser,
    "objective": check_objective,
    "sampler": check_sampler,
    "guidance": check_guidance,
}
