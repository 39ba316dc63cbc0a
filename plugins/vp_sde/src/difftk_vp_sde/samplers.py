"""Samplers of the VP SDE (Song et al. 2021): Euler–Maruyama and predictor–corrector on the
reverse SDE (eq. 6), and the probability-flow ODE (eq. 13).

Each works with any schedule through ᾱ(t) and β(t), and reports the number of denoiser
evaluations (NFE): ``sample_with_nfe`` returns (x, nfe) and every step's callback receives an
:class:`~difftk.sampling.steps.StepInfo` with ``nfe``.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.maths.diffusion import eps_and_x0, posterior, v_from_x0_eps
from difftk.maths.grids import SPACINGS, time_grid
from difftk.maths.ode import dopri5, estimated_total, fixed_steps
from difftk.maths.schedules import time_of
from difftk.options import option
from difftk.sampling.steps import GridSampler, StepInfo, batch_time, denoiser_output, noise_like, times_option

from difftk_vp_sde.sde import ScoreFunction, per_example_norm


def _eps_option(default: float) -> Any:
    return option(default, help="the last time ε: integrate from t = 1 down to t = ε", gt=0.0, lt=1.0)


def _denoise(score_fn: ScoreFunction, x: torch.Tensor, eps: float, index: int, total: int,
             callback: Any) -> torch.Tensor:
    """Tweedie's x̂₀ = (x + (1−ᾱ)∇log p)/√ᾱ = E[x₀ | x_ε] at the last time (Efron 2011, eq. 2.8)."""
    _, x0 = score_fn(x, eps)
    if callback is not None:
        callback(StepInfo(index=index, total=total, t=eps, t_next=0.0, x=x0, x0=x0, nfe=score_fn.nfe))
    return x0


class _CountingSampler:
    """Samplers whose ``sample_with_nfe`` also returns the number of denoiser evaluations used."""

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None, cond=None,
               generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
        return self.sample_with_nfe(denoiser, schedule, x_T, steps, cond, generator, callback)[0]


@attrs.frozen
class _ReverseSDESampler(GridSampler, _CountingSampler):
    """The loop the fixed-step samplers of the reverse SDE share; each supplies only its :meth:`_step`.

    The times are the core grid t_K = 1 > … > t_1 (:meth:`GridSampler.time_grid`: any spacing, or
    explicit ``times``) followed by the last time ε: K steps, each to the next time, each reported
    to the callback with the NFE so far; with ``denoise``, Tweedie's x̂₀ at ε (:func:`_denoise`) as
    one more step. Subclasses have the options ``eps`` and ``denoise``.
    """

    default_steps: ClassVar[int]

    #: denoiser evaluations per step
    evaluations_per_step: ClassVar[int] = 1

    def times_to_eps(self, schedule: NoiseSchedule, steps: int | None) -> np.ndarray:
        """The grid's times and then ε (unless the grid already ends at or below it)."""
        grid = self.time_grid(schedule, steps)
        return np.append(grid, self.eps) if grid[-1] > self.eps else grid

    def nfe(self, steps: int | None, schedule: NoiseSchedule) -> int:
        """Denoiser evaluations of :meth:`sample`: per step, and one more with ``denoise``."""
        return (len(self.times_to_eps(schedule, steps)) - 1) * self.evaluations_per_step + int(self.denoise)

    @abc.abstractmethod
    def _step(self, score_fn: ScoreFunction, x: torch.Tensor, t: float, s: float, last: bool,
              generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x_s from x_t (s < t) and x̂₀ at t; ``last`` is the step to ε (it adds no noise)."""

    def sample_with_nfe(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None, cond=None,
                        generator: torch.Generator | None = None, callback=None) -> tuple[torch.Tensor, int]:
        times = self.times_to_eps(schedule, steps)
        K = len(times) - 1
        score_fn = ScoreFunction(denoiser, schedule, cond)
        total = K + int(self.denoise)
        x = x_T
        for k in range(K):
            t, s = float(times[k]), float(times[k + 1])
            x, x0 = self._step(score_fn, x, t, s, k == K - 1, generator)
            if callback is not None:
                callback(StepInfo(index=k, total=total, t=t, t_next=s, x=x, x0=x0, nfe=score_fn.nfe))
        if self.denoise:
            x = _denoise(score_fn, x, float(times[-1]), K, total, callback)
        return x, score_fn.nfe


@attrs.frozen
class EulerMaruyama(_ReverseSDESampler):
    """Euler–Maruyama on the reverse VP SDE dx = [−½β x − β∇log p_t(x)] dt + √β dw̄ (Song et al. 2021, eq. 6 and 11).

    ``steps`` steps on the core grid from t = 1 and then to t = ε, the last without noise (its variance β·dt would
    be far above σ(ε)², which is all the final x̂₀ removes); with ``denoise`` the result is
    Tweedie's x̂₀ at t = ε (one more evaluation). NFE = steps + denoise.
    """

    eps: float = _eps_option(1e-3)
    denoise: bool = option(True, help="return Tweedie's x̂₀ at t = ε (one more evaluation)")

    #: steps when the caller gives none (Song et al. 2021 use 1,000; on the shipped model 100 already sample
    #: in range and the requested digit, docs/pretrained.md)
    default_steps: ClassVar[int] = 100

    def _step(self, score_fn: ScoreFunction, x: torch.Tensor, t: float, s: float, last: bool,
              generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        dt = t - s
        beta = score_fn.beta(t)
        score, x0 = score_fn(x, t)
        # x_s = x_t − [f − g²∇log p]·dt + g·√dt·z, with f = −½βx and g² = β; the last step adds no
        # noise (as DDPM's Algorithm 2 and the mean step of Song et al.'s code): x̂₀ at ε removes only σ(ε)
        x = x + (0.5 * beta * x + beta * score) * dt
        if not last:
            x = x + math.sqrt(beta * dt) * noise_like(x, generator)
        return x, x0


@attrs.frozen
class PredictorCorrector(_ReverseSDESampler):
    """Predictor–corrector sampling of the VP SDE (Song et al. 2021, Alg. 1; the VP versions in App. G, Alg. 3 and 5).

    Predictor: reverse diffusion, x_s = (2 − √(1−β_{t|s}))·x_t + β_{t|s}·∇log p_t(x_t) + √β_{t|s}·z
    (the reverse-diffusion sampler of App. E), with β_{t|s} = 1 − ᾱ_t/ᾱ_s the step's discrete β
    (:func:`difftk.maths.diffusion.posterior`). Corrector:
    ``n_corrector`` Langevin steps at s, x ← x + ϵ·∇log p_s(x) + √(2ϵ)·z with
    ϵ = 2α_s(r‖z‖/‖∇log p_s‖)², α_s = 1 − β_{t|s}, r = ``snr`` (Alg. 5).

    ``step_size`` says how the ratio ‖z‖/‖∇log p_s‖ is taken. ``noise`` (the default) uses its
    value in expectation at the bound ‖∇log p_s‖² ≤ d/(1−ᾱ_s) — the Fisher information of p_s is
    at most that of the Gaussian N(·, (1−ᾱ_s)I) it is smoothed with (Stam 1959) — so
    ϵ = 2α_s·r²·(1−ᾱ_s): never larger than the reference's step in expectation, and the same
    for every example, so a sample does not depend on the others in its batch. ``batch`` is the
    reference code's: per-example norms averaged over the batch (per-example ratios blow up
    where the score nearly vanishes: ~2.5× too wide a spread on a 2-D Gaussian), which ties every
    sample to its batch through that one step size. The last predictor step adds no noise (see
    :class:`EulerMaruyama`). NFE = steps·(1 + n_corrector) + denoise.
    """

    snr: float = option(0.16, help="signal-to-noise ratio r of the Langevin corrector", gt=0.0, le=1.0)
    n_corrector: int = option(1, help="Langevin corrector steps after each predictor step", ge=0, le=100)
    step_size: str = option("noise", help="the corrector's ratio ‖z‖/‖∇log p‖: at its noise-level bound (per "
                            "example) or from the batch's norms (the reference code)", choices=("noise", "batch"))
    eps: float = _eps_option(1e-3)
    denoise: bool = option(True, help="return Tweedie's x̂₀ at t = ε (one more evaluation)")

    #: steps when the caller gives none: 2 evaluations each (Song et al. 2021 use 1,000)
    default_steps: ClassVar[int] = 50

    @property
    def evaluations_per_step(self) -> int:  # type: ignore[override]
        return 1 + self.n_corrector

    def _step(self, score_fn: ScoreFunction, x: torch.Tensor, t: float, s: float, last: bool,
              generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        beta_ts = posterior(score_fn.alpha_bar(s), score_fn.alpha_bar(t)).beta
        score, x0 = score_fn(x, t)
        # predictor: reverse diffusion (App. E); no noise on the last step, as in Euler–Maruyama
        x = (2.0 - math.sqrt(1.0 - beta_ts)) * x + beta_ts * score
        if not last:
            x = x + math.sqrt(beta_ts) * noise_like(x, generator)
        # corrector: Langevin MCMC at s (Alg. 5)
        alpha_s = 1.0 - beta_ts
        for _ in range(self.n_corrector):
            grad, _ = score_fn(x, s)
            z = noise_like(x, generator)
            if self.step_size == "noise":
                ratio_squared = 1.0 - score_fn.alpha_bar(s)
            else:
                ratio_squared = (float(per_example_norm(z).mean()) / max(float(per_example_norm(grad).mean()), 1e-30)) ** 2
            size = 2.0 * alpha_s * self.snr**2 * ratio_squared
            x = x + size * grad + math.sqrt(2.0 * size) * z
        return x, x0


def flow_drift(score_fn: ScoreFunction, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """dx/dt = −½β(t)·(x + ∇log p_t(x)), the probability-flow ODE of the VP SDE (Song et al. 2021, eq. 13),
    and x̂₀ at (x, t)."""
    score, x0 = score_fn(x, t)
    return -0.5 * score_fn.beta(t) * (x + score), x0


class AngleVelocity:
    """The probability-flow ODE in the angle φ = arccos √ᾱ(t): dx/dφ = v̂(x, t(φ)) (Salimans & Ho 2022, §4).

    With α = cos φ and σ = sin φ, x_φ = α·x₀ + σ·ε has dx/dφ = α·ε − σ·x₀ = v, so the flow of eq. 13
    (the same curve, another clock) has the denoiser's v̂ as its velocity. In t the drift
    −½β(t)(x + ∇log p) is stiff wherever β is large (the cosine schedule's last cell has
    β = 6.9e3, and β → ∞ at a zero terminal SNR); in φ ∈ [0, π/2] it is bounded by |v̂|, for
    every schedule. ``__call__(phi, x)`` returns (v̂, x̂₀) and counts evaluations in ``nfe``.
    """

    def __init__(self, denoiser: Denoiser, schedule: NoiseSchedule, cond: torch.Tensor | None = None) -> None:
        self.denoiser, self.schedule, self.cond = denoiser, schedule, cond
        self.nfe = 0

    def phi(self, t: float) -> float:
        """φ(t) = arccos √ᾱ(t)."""
        return math.acos(min(1.0, math.sqrt(float(self.schedule.alpha_bar(torch.tensor([t], dtype=torch.float64))[0]))))

    def time(self, phi: float) -> float:
        """t(φ), through the schedule's inverse of ᾱ."""
        return float(time_of(self.schedule, torch.tensor([math.cos(phi) ** 2], dtype=torch.float64))[0])

    def __call__(self, phi: float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha_bar = math.cos(phi) ** 2
        out, _ = denoiser_output(self.denoiser, x, batch_time(self.time(phi), x), self.cond)
        self.nfe += 1
        prediction = self.denoiser.prediction
        eps, x0 = eps_and_x0(prediction, out, x, alpha_bar)
        return (out if prediction == "v" else v_from_x0_eps(x0, eps, alpha_bar)), x0


@attrs.frozen
class ProbabilityFlowODE(_CountingSampler):
    """The probability-flow ODE (Song et al. 2021, eq. 13), solved in the angle φ = arccos √ᾱ (:class:`AngleVelocity`).

    It runs from t = 1 to a last time t₁ and then, with ``denoise``, takes the final step to
    t = 0 as x̂₀(x_{t₁}, t₁) (Tweedie's formula, the denoising step of Song et al. 2021, App. G;
    DDIM's last step is the same). ``method="rk45"``: adaptive Dormand–Prince 5(4) with
    ``rtol``/``atol`` from t = 1 to t₁ = ``eps`` (``steps`` is ignored; the solver chooses them).
    ``euler``/``heun``: one step between consecutive times of the core grid of ``steps`` times
    (``spacing``; t₁ is the grid's last, 1/T with linspace on a T-step schedule), so ``steps``
    times cost ``steps`` evaluations with Euler and 2·steps − 1 with Heun (with ``denoise``).
    Deterministic: the generator is not used.
    """

    method: str = option("rk45", help="rk45 (adaptive), heun or euler (fixed steps on the grid)", choices=("rk45", "heun", "euler"))
    rtol: float = option(1e-4, help="relative tolerance of rk45", gt=0.0, lt=1.0)
    atol: float = option(1e-4, help="absolute tolerance of rk45", gt=0.0, lt=1.0)
    eps: float = _eps_option(1e-3)
    denoise: bool = option(True, help="end with x̂₀ at the last time (the step to t = 0; one more evaluation)")
    spacing: str = option("linspace", help="which grid times euler/heun visit", choices=SPACINGS)
    times: tuple[float, ...] | None = times_option()
    max_steps: int = option(100_000, help="give up after this many rk45 steps", ge=1)

    #: the step count without --steps, for euler and heun (rk45, the default, chooses its own)
    default_steps: ClassVar[int] = 50
    adaptive: ClassVar[bool] = True

    def nfe(self, steps: int | None, schedule: NoiseSchedule) -> int | None:
        """Denoiser evaluations of :meth:`sample`: ``None`` for rk45 (the solver chooses); Euler one per
        step between grid times, Heun two; one more with ``denoise``."""
        if self.method == "rk45":
            return None
        intervals = len(time_grid(schedule, steps, self.spacing, default=self.default_steps, times=self.times)) - 1
        return intervals * (2 if self.method == "heun" else 1) + int(self.denoise)

    def sample_with_nfe(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None, cond=None,
                        generator: torch.Generator | None = None, callback=None) -> tuple[torch.Tensor, int]:
        flow = AngleVelocity(denoiser, schedule, cond)
        if self.method == "rk45":
            times = np.array([1.0, self.eps])
        else:
            times = time_grid(schedule, steps, self.spacing, default=self.default_steps, times=self.times)
        phis = [flow.phi(float(t)) for t in times]
        extra = int(self.denoise)
        state = {"steps": 0, "total": len(times) - 1 + extra}

        def on_step(index, phi, phi_next, x, x0, nfe):
            t, t_next = flow.time(phi), flow.time(phi_next)
            state["steps"] = index + 1
            if self.method == "rk45":  # the solver's step count is known only at the end: an estimate
                state["total"] = estimated_total(index, phi_next, phis[-1], phi_next - phi) + extra
            if callback is not None:
                callback(StepInfo(index=index, total=state["total"], t=t, t_next=t_next, x=x, x0=x0, nfe=flow.nfe))

        if self.method == "rk45":
            x, _ = dopri5(flow, x_T, phis[0], phis[-1], rtol=self.rtol, atol=self.atol, max_steps=self.max_steps,
                          on_step=on_step, variable="φ")
        else:
            x, _ = fixed_steps(flow, x_T, phis, method=self.method, on_step=on_step)
        if self.denoise:
            _, x0 = flow(phis[-1], x)
            if callback is not None:
                callback(StepInfo(index=state["steps"], total=state["steps"] + 1, t=float(times[-1]), t_next=0.0,
                                     x=x0, x0=x0, nfe=flow.nfe))
            x = x0
        return x, flow.nfe
