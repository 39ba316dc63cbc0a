"""Helpers samplers share: calling the denoiser, reporting steps, drawing noise."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from difftk.components.protocols import Denoiser, NoiseSchedule, learned_variance_of
from difftk.maths.diffusion import eps_and_x0, eps_from_x0, x0_from_eps
from difftk.maths.grids import SPACINGS, time_grid, with_end
from difftk.options import option
from difftk.sampling.noise import ExampleNoise


class Prediction:
    """What a denoiser says at (x_t, t): ε̂ and x̂₀ (each computed on first use), and for
    learned-variance models the interpolation output v (Nichol & Dhariwal 2021, eq. 15)."""

    __slots__ = ("_eps", "_x0", "x_t", "alpha_bar", "var_interp")

    def __init__(self, x_t: torch.Tensor, alpha_bar: Any, *, eps: torch.Tensor | None = None,
                 x0: torch.Tensor | None = None, var_interp: torch.Tensor | None = None) -> None:
        self.x_t, self.alpha_bar, self._eps, self._x0, self.var_interp = x_t, alpha_bar, eps, x0, var_interp

    @property
    def eps(self) -> torch.Tensor:
        if self._eps is None:
            self._eps = eps_from_x0(self.x_t, self._x0, self.alpha_bar)
        return self._eps

    @property
    def x0(self) -> torch.Tensor:
        if self._x0 is None:
            self._x0 = x0_from_eps(self.x_t, self._eps, self.alpha_bar)
        return self._x0


@attrs.frozen
class StepInfo:
    """Passed to a sampler's ``callback`` after each step."""

    index: int  # 0-based step number
    total: int  # number of steps
    t: float  # the time the step started from
    t_next: float  # the time it arrived at (0.0 after the last step)
    x: torch.Tensor  # the state at t_next
    x0: torch.Tensor  # the denoiser's estimate of x₀ at t
    nfe: int | None = None  # denoiser evaluations so far in this call, from samplers that count them as they go


def denoiser_output(denoiser: Denoiser, x_t: torch.Tensor, t: torch.Tensor,
                    cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The denoiser's prediction in its own parameterisation, and the variance interpolation
    output of a learned-variance model (``None`` otherwise)."""
    out = denoiser(x_t, t, cond=cond)
    if learned_variance_of(denoiser):
        out, var_interp = out.chunk(2, dim=1)
        return out, var_interp
    return out, None


def predict(denoiser: Denoiser, x_t: torch.Tensor, t: torch.Tensor, alpha_bar: Any,
            cond: torch.Tensor | None = None, clip_x0: float | None = None) -> Prediction:
    """Call ``denoiser`` and express its output as ε̂ and x̂₀.

    ``alpha_bar`` is ᾱ(t) as a float (one time for the batch) or a [B] tensor. With
    ``clip_x0`` the estimate x̂₀ is clamped to [−clip_x0, clip_x0] and ε̂ made consistent with
    it, as the reference DDPM/DDIM code does for data in [−1, 1]. A denoiser with ``split_output``
    (CFG++) gives x̂₀ and ε̂ from two outputs; clipping then clamps x̂₀ and keeps that ε̂.
    """
    split = getattr(denoiser, "split_output", None)
    if split is not None:
        out_x0, out_eps, var_interp = split(x_t, t, cond)
        _, x0 = eps_and_x0(denoiser.prediction, out_x0, x_t, alpha_bar)
        eps, _ = eps_and_x0(denoiser.prediction, out_eps, x_t, alpha_bar)
        x0 = x0.clamp(-clip_x0, clip_x0) if clip_x0 is not None else x0
        return Prediction(x_t, alpha_bar, eps=eps, x0=x0, var_interp=var_interp)
    out, var_interp = denoiser_output(denoiser, x_t, t, cond)
    if clip_x0 is not None:
        _, x0 = eps_and_x0(denoiser.prediction, out, x_t, alpha_bar)
        return Prediction(x_t, alpha_bar, x0=x0.clamp(-clip_x0, clip_x0), var_interp=var_interp)
    if denoiser.prediction == "eps":
        return Prediction(x_t, alpha_bar, eps=out, var_interp=var_interp)
    if denoiser.prediction == "x0":
        return Prediction(x_t, alpha_bar, x0=out, var_interp=var_interp)
    eps, x0 = eps_and_x0(denoiser.prediction, out, x_t, alpha_bar)
    return Prediction(x_t, alpha_bar, eps=eps, x0=x0, var_interp=var_interp)


def batch_time(t: float, x: torch.Tensor) -> torch.Tensor:
    """The time ``t`` for every example of the batch ``x``: a [B] tensor of x's dtype and device."""
    return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)


def batch_times(times: Any, x: torch.Tensor) -> list[torch.Tensor]:
    """One [B] time tensor per grid time (:func:`batch_time`), made once before the sampling loop."""
    return [batch_time(t, x) for t in times]


def noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise of x's shape, dtype and device, from ``generator`` if given."""
    if isinstance(generator, ExampleNoise):  # one stream per example: batch-size invariant
        return generator.randn(tuple(x.shape), dtype=x.dtype, device=x.device)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


@attrs.frozen
class AffinePlan:
    """A first-order sampler's whole plan: x_{t_{k+1}} = c_x0_k·x̂₀ + c_xt_k·x_{t_k} + c_eps_k·ε̂ + σ_k·z.

    ``times`` holds t_0 > t_1 > … > t_K = 0 (K+1 float64 values, the visiting order) and
    ``alpha_bars`` ᾱ at those times; ``c_x0``, ``c_xt``, ``c_eps``, ``sigma`` one float64 value
    per step (scalars broadcast). DDPM ancestral sampling (the posterior mean in x̂₀ and x_t)
    and DDIM (x̂₀ and ε̂) are both of this form; the plan is computed once, before the loop.

    x̂₀ and ε̂ both come from the denoiser's own parameterisation, so a v- or x₀-model never
    divides by √ᾱ: where ᾱ → 0 (t → 1) x̂₀ = √ᾱ·x_t − √(1−ᾱ)·v̂ stays bounded, whereas the
    x̂₀ of an ε-model, (x_t − √(1−ᾱ)·ε̂)/√ᾱ, multiplies ε̂'s error by 1/√ᾱ (Salimans & Ho 2022, §4).
    """

    times: Any
    alpha_bars: Any
    c_x0: Any
    c_xt: Any
    c_eps: Any
    sigma: Any

    @property
    def eps_form(self) -> tuple[Any, Any]:
        """(a, b) with x_{t_{k+1}} = a_k·x_{t_k} + b_k·ε̂ + σ_k·z, x̂₀ written through ε̂ (:func:`affine_from_x0_form`)."""
        return affine_from_x0_form(self.c_x0, self.c_xt, self.c_eps, np.asarray(self.alpha_bars)[:-1])


#: the earlier name of :class:`AffinePlan`, kept for plugins written against it
AffineSteps = AffinePlan


def affine_from_x0_form(c_x0: Any, c_xt: Any, c_eps: Any, alpha_bar_t: Any) -> tuple[Any, Any]:
    """Rewrite x_s = c_x0·x̂₀ + c_xt·x_t + c_eps·ε̂ as a·x_t + b·ε̂, using x̂₀ = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t."""
    sqrt_ab = alpha_bar_t**0.5
    return c_xt + c_x0 / sqrt_ab, c_eps - c_x0 * (1 - alpha_bar_t) ** 0.5 / sqrt_ab


def _per_step(value: Any, K: int) -> list[float]:
    return [float(v) for v in np.broadcast_to(np.asarray(value, dtype=np.float64), (K,))]


def run_affine(denoiser: Denoiser, x: torch.Tensor, plan: AffinePlan, *, cond: torch.Tensor | None = None,
               generator: torch.Generator | None = None, callback: Any = None,
               clip_x0: float | None = None) -> torch.Tensor:
    """Run an :class:`AffinePlan` from x = x_{t_0}; the loop does only tensor arithmetic."""
    times = [float(t) for t in plan.times]
    alpha_bars = [float(ab) for ab in plan.alpha_bars]
    K = len(times) - 1
    c_x0, c_xt, c_eps, sigma = (_per_step(c, K) for c in (plan.c_x0, plan.c_xt, plan.c_eps, plan.sigma))
    t_batch = batch_times(times[:-1], x)
    for k in range(K):
        pred = predict(denoiser, x, t_batch[k], alpha_bars[k], cond, clip_x0)
        x_next = pred.x0 * c_x0[k] if c_x0[k] != 0.0 else torch.zeros_like(x)
        if c_xt[k] != 0.0:
            x_next.add_(x, alpha=c_xt[k])
        if c_eps[k] != 0.0:
            x_next.add_(pred.eps, alpha=c_eps[k])
        if sigma[k] > 0.0:
            x_next.add_(noise_like(x, generator), alpha=sigma[k])
        x = x_next
        if callback is not None:
            callback(StepInfo(index=k, total=K, t=times[k], t_next=times[k + 1], x=x, x0=pred.x0))
    return x


def times_option() -> Any:
    """The ``times`` option every fixed-grid sampler has: the grid itself, overriding steps and spacing."""
    return option(None, help="the grid itself, t_K > … > t_1 in (0, 1], e.g. 1,0.5,0.2 (steps and spacing are then "
                  "unused); none = by spacing", gt=0.0, le=1.0, optional=True)


@attrs.frozen
class GridSampler(abc.ABC):
    """Base of samplers that step on the core's time grid (:func:`difftk.maths.grids.time_grid`):
    the options ``spacing`` (linspace, leading, trailing or karras) and ``times`` (an explicit
    grid), and :meth:`time_grid`, so every such sampler takes every grid the same way."""

    spacing: str = option("linspace", help="which times the steps visit: linspace, leading, trailing, karras (σ "
                          "spaced with ρ = 7) or logsnr (evenly in log-SNR)", choices=SPACINGS)
    times: tuple[float, ...] | None = times_option()

    #: steps when the caller gives none (at most the schedule's T); each sampler states its own
    default_steps: ClassVar[int] = 50

    def time_grid(self, schedule: NoiseSchedule, steps: int | None) -> np.ndarray:
        """t_K > … > t_1, float64: ``times`` if given, else ``steps`` (or :attr:`default_steps`) by ``spacing``."""
        return time_grid(schedule, steps, self.spacing, default=self.default_steps, times=self.times)

    def nfe(self, steps: int | None, schedule: NoiseSchedule) -> int | None:
        """Denoiser evaluations of ``sample``: by default one per grid time (a sampler that makes more,
        or chooses its own steps, says so by overriding this)."""
        return len(self.time_grid(schedule, steps))


@attrs.frozen
class AffineSampler(GridSampler):
    """Base of samplers whose steps are affine (:class:`AffinePlan`): subclasses add their
    options and implement ``plan(schedule, steps)``; ``sample`` runs the plan."""

    clip_x0: float | None = option(None, help="clamp x̂₀ to ±clip_x0 (1.0 for data in [−1, 1]); none = off", gt=0.0, optional=True)

    @abc.abstractmethod
    def plan(self, schedule: NoiseSchedule, steps: int | None) -> AffinePlan:
        """The float64 coefficients of every step on the grid ``self.grid(schedule, steps)``."""

    def grid(self, schedule: NoiseSchedule, steps: int | None) -> tuple[Any, Any]:
        """Times t_K > … > t_1 > 0 visited, then the end (t = 0, ᾱ = 1: :func:`~difftk.maths.grids.with_end`),
        and ᾱ at them, float64."""
        return with_end(schedule, self.time_grid(schedule, steps))

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None, cond: Any = None,
               generator: torch.Generator | None = None, callback: Any = None) -> torch.Tensor:
        return run_affine(denoiser, x_T, self.plan(schedule, steps), cond=cond, generator=generator,
                          callback=callback, clip_x0=self.clip_x0)
