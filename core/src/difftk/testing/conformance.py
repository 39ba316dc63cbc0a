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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from difftk.components.protocols import grid_size_of, learned_variance_of, num_classes_of
from difftk.maths.diffusion import PREDICTIONS
from difftk.maths.schedules import Discretization
from difftk.testing.failures import ConformanceError, check_protocol, fail_as  # noqa: F401 (ConformanceError: re-exported)
from difftk.testing.oracles import GaussianOracle
from difftk.testing.reference import ReferenceLinearSchedule, TinyDenoiser
from difftk.testing.sampler_contract import check_sampler

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
    check_protocol(schedule, "schedule")
    def fail(msg: str) -> None:
        fail_as(schedule, "schedule", msg)

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
    check_protocol(denoiser, "denoiser")
    def fail(msg: str) -> None:
        fail_as(denoiser, "denoiser", msg)

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
    check_protocol(objective, "objective")
    def fail(msg: str) -> None:
        fail_as(objective, "objective", msg)

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


# --- guidance -----------------------------------------------------------------------------------

def check_guidance(guidance: Any, schedule: Any | None = None, *, denoiser: Any | None = None,
                   shape: tuple[int, ...] = (4, 2)) -> None:
    """``wrap(denoiser, schedule)`` returns a denoiser with a valid ``prediction`` whose output
    has the wrapped denoiser's shape."""
    check_protocol(guidance, "guidance")
    schedule = schedule or ReferenceLinearSchedule()
    if denoiser is None:
        denoiser = GaussianOracle(schedule, mean=0.0, std=1.0, shape=shape[1:])
    wrapped = guidance.wrap(denoiser, schedule)
    if not callable(wrapped) or getattr(wrapped, "prediction", None) not in PREDICTIONS:
        fail_as(guidance, "guidance", "wrap(denoiser, schedule) must return a denoiser (callable with a prediction attribute)")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((shape[0],), 0.5)
    cond = torch.zeros(shape[0], dtype=torch.long)
    out = wrapped(x, t, cond=cond)
    if out.shape != denoiser(x, t, cond=cond).shape:
        fail_as(guidance, "guidance", f"the wrapped denoiser must keep the output shape {tuple(shape)}, got {tuple(out.shape)}")


# --- autoencoders -------------------------------------------------------------------------------

def check_autoencoder(autoencoder: Any, data_shape: tuple[int, ...], *, seed: int = 0, rtol: float = 1e-4) -> None:
    """On a seeded batch of data in [−1, 1]: ``encode`` gives a posterior whose mean and log σ² have
    the shape ``latent_shape(data_shape)`` promises (per example, so one example encodes as it does in a
    batch); its draws repeat under the same seed; ``decode`` of the mean has the data's shape and is
    finite; ``scale`` is finite and > 0, ``shift`` finite; and the core's scaling is what the protocol
    says, z_scaled = (z − shift)·scale, undone exactly before ``decode``."""
    from difftk.components.autoencoding import from_latent, posterior, scale_of, shift_of, to_latent

    check_protocol(autoencoder, "autoencoder")

    def fail(msg: str) -> None:
        fail_as(autoencoder, "autoencoder", msg)

    g = torch.Generator().manual_seed(seed)
    x = torch.rand((3, *data_shape), generator=g) * 2 - 1
    latent = tuple(autoencoder.latent_shape(tuple(data_shape)))
    with torch.no_grad():
        q = posterior(autoencoder.encode(x))
        if tuple(q.mean.shape) != (3, *latent) or tuple(q.logvar.shape) != (3, *latent):
            fail(f"encode of {tuple(x.shape)} gave mean {tuple(q.mean.shape)}, log σ² {tuple(q.logvar.shape)}; "
                 f"latent_shape({tuple(data_shape)}) = {latent} promises {(3, *latent)}")
        one = posterior(autoencoder.encode(x[1:2])).mean
        if not torch.allclose(one, q.mean[1:2], rtol=rtol, atol=rtol * float(q.mean.abs().max())):
            fail("example 1 encodes differently alone than in a batch of 3")
        a, b = (q.sample(torch.Generator().manual_seed(seed + 1)) for _ in range(2))
        if not torch.equal(a, b):
            fail("sample(generator) differs for two generators with the same seed")
        y = autoencoder.decode(q.mean)
        if tuple(y.shape) != tuple(x.shape):
            fail(f"decode of latents {tuple(q.mean.shape)} gave {tuple(y.shape)}, not the data's {tuple(x.shape)}")
        if not torch.isfinite(y).all():
            fail("decode(encode(x)) is not finite")
        scale, shift = scale_of(autoencoder), shift_of(autoencoder)
        if not (np.isfinite(scale) and scale > 0 and np.isfinite(shift)):
            fail(f"scale = {scale} must be finite and > 0, shift = {shift} finite")
        z = to_latent(autoencoder, x)
        if not torch.allclose(z, (q.mean - shift) * scale, rtol=rtol, atol=rtol * scale * float(q.mean.abs().max())):
            fail("the scaled latent is not (mean − shift)·scale")
        back = from_latent(autoencoder, z)
        if not torch.allclose(back, y, rtol=rtol, atol=rtol * float(y.abs().max())):
            fail("decoding the scaled latent does not give decode(mean): the scale and shift are not undone")


# --- loggers ------------------------------------------------------------------------------------

def check_logger(logger: Any, directory: str | Path) -> None:
    """A run's whole conversation is accepted — ``start`` with the run, ``log`` with a loss record
    and a measurement, ``image`` with a PNG grid, ``finish`` — and the logger writes what it keeps
    under the run directory it was given (``directory``, created here), not somewhere else."""
    from PIL import Image

    from difftk.training.tracking import TrackedRun

    check_protocol(logger, "logger")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    grid = root / "samples" / "step_000002.png"
    grid.parent.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(grid)
    before = {p for p in root.rglob("*")}
    config = {"pipeline": {"schedule": {"name": "cosine"}}, "training": {"steps": 2, "lr": 1e-3}, "data": {"name": "toy"}}
    try:
        logger.start(TrackedRun(directory=root, step=0, steps=2, config=config))
        logger.log({"step": 1, "loss": 0.5, "lr": 1e-3, "grad_norm": 1.0, "time": 0.0})
        logger.log({"step": 2, "metric": "sliced-wasserstein", "value": 0.25, "spread": 0.01})
        logger.image(grid, 2)
    finally:
        logger.finish()
    if not {p for p in root.rglob("*") if p.is_file()} - before:
        fail_as(logger, "logger", f"wrote nothing under the run directory {root} it was given")


CHECKS: dict[str, Callable[..., None]] = {
    "schedule": check_schedule,
    "denoiser": check_denoiser,
    "objective": check_objective,
    "sampler": check_sampler,
    "guidance": check_guidance,
    "autoencoder": check_autoencoder,
    "logger": check_logger,
}
