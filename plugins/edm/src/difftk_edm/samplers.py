"""EDM's samplers (Karras et al. 2022): Heun's 2nd-order method (Algorithm 1) and the stochastic
sampler (Algorithm 2).

Both integrate the probability-flow ODE dx/dσ = (x − D(x; σ))/σ (eq. 1 with σ(t) = t and the
score (D − x)/σ² of eq. 3) in the EDM frame x = x_t·√(1+σ²) (:mod:`difftk_edm.frame`), on the
σ_i of the core's time grid (karras spacing by default: eq. 5, ρ = 7), so they work with every
schedule, every parameterisation (through ``predict``), guidance wrappers and learned variance.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.maths.grids import SPACINGS, explicit_times, karras_sigmas
from difftk.maths.schedules import alpha_bar_table, time_of
from difftk.options import option, option_error
from difftk.sampling.steps import GridSampler, StepInfo, noise_like, predict

from difftk_edm.frame import Level, SigmaGrid, alpha_bar_of, denoise, off_grid_level, sigma_of


def _report(callback: Any, i: int, grid: SigmaGrid, x_next: torch.Tensor, denoised: torch.Tensor) -> None:
    """StepInfo for step i, its state x_{i+1} back in the VP frame the caller works in."""
    if callback is not None:
        callback(StepInfo(index=i, total=grid.N, t=float(grid.times[i]), t_next=float(grid.times[i + 1]),
                          x=x_next * math.sqrt(grid.alpha_bars[i + 1]), x0=denoised))


@attrs.frozen
class _EDMSampler(GridSampler):
    """What both samplers share: the grid in σ, Heun's step, the start from x_T, and the NFE."""

    spacing: str = option("karras", help=f"which times the steps visit: {', '.join(SPACINGS)}; karras (the default) "
                          "spaces σ with ρ = 7 (Karras et al. 2022, eq. 5)", choices=SPACINGS)
    sigma_max: float | None = option(80.0, help="karras spacing: the highest σ, below the schedule's σ(1) "
                                     "(EDM's 80, their Table 1); none = σ(1)", gt=0.0, le=1e12, optional=True)
    clip_x0: float | None = option(None, help="clamp D = x̂₀ to ±clip_x0 (1.0 for data in [−1, 1]); none = off", gt=0.0,
                                   optional=True)

    #: steps when the caller gives none: EDM's deterministic CIFAR-10 setting (18 steps, NFE = 35, the
    #: README of NVlabs/edm), for images of MNIST's and CIFAR's size
    default_steps: ClassVar[int] = 18

    def time_grid(self, schedule: NoiseSchedule, steps: int | None) -> np.ndarray:
        """The core's grid (:meth:`GridSampler.time_grid`: every spacing, or ``times``); with karras
        spacing, eq. 5 (the core's ``karras_sigmas``) runs from min(σ(1), ``sigma_max``) down to the
        core's σ_min instead of from σ(1).

        EDM samples from σ_max = 80 (Table 1; generate.py): x_T, N(0, I), is then taken as the state at
        t(σ_max) < 1, where the VP marginal's mean is E[x₀]/√(1+σ_max²) ≈ E[x₀]/80, and its variance
        1 − (1 − Var x₀)/(1+σ_max²). Above σ_max nothing happens worth a step (D(x; σ) → E[x₀]), yet
        from cosine's σ(1) = 2·10⁴ the karras grid would put 6 of 10 steps there: on the shipped model
        heun with 10 steps drew 70 % of pixels beyond ±1.05 from σ(1), 0.4 % from σ_max = 80."""
        grid = super().time_grid(schedule, steps)
        if self.times is not None or self.spacing != "karras" or self.sigma_max is None:
            return grid
        sigma_top, sigma_min = (float(s) for s in sigma_of(alpha_bar_table(schedule, grid[[0, -1]])))
        if sigma_top <= self.sigma_max:
            return grid
        if self.sigma_max <= sigma_min and len(grid) > 1:
            raise option_error(self, f"sigma_max={self.sigma_max:g} must be above this schedule's σ_min = {sigma_min:.4g}")
        sigmas = karras_sigmas(sigma_min, self.sigma_max, len(grid))
        return explicit_times(time_of(schedule, torch.from_numpy(alpha_bar_of(sigmas))).numpy())

    def sigma_grid(self, schedule: NoiseSchedule, steps: int | None) -> SigmaGrid:
        """t_i of the core's grid (:meth:`time_grid`) with t_N = 0, and ᾱ and σ there."""
        return SigmaGrid.of(schedule, self.time_grid(schedule, steps))

    def nfe(self, steps: int | None, schedule: NoiseSchedule) -> int:
        """Denoiser evaluations of one ``sample``: one per step and one per 2nd-order correction,
        which every step has but the last (to σ = 0): 2·steps − 1. (A step from σ = ∞, where ᾱ(t_0) = 0,
        is an Euler step too.)"""
        grid = self.sigma_grid(schedule, steps)
        s = grid.sigmas
        return grid.N + sum(1 for i in range(grid.N) if s[i + 1] > 0 and np.isfinite(s[i]))

    def _start(self, denoiser: Denoiser, grid: SigmaGrid, levels: list[Level], x_T: torch.Tensor, cond: Any,
               callback: Any) -> tuple[torch.Tensor, int]:
        """x_0 = x_T·√(1+σ_0²), the VP noise in the EDM frame, and the first step to take (0).

        Where ᾱ(t_0) = 0 (σ_0 = ∞) the first step is instead the limit of its Euler step, x_1 = D + σ_1·ε̂
        with D and ε̂ at x_T (as x_0 = D + σ_0·ε̂); its trapezoid has no limit, so there is no correction."""
        if np.isfinite(grid.sigmas[0]):
            return x_T * math.sqrt(1.0 + grid.sigmas[0] ** 2), 0
        pred = predict(denoiser, x_T, levels[0].t, 0.0, cond, self.clip_x0)  # at ᾱ = 0, x_T is the VP state itself
        x_next = pred.x0 + levels[1].sigma * pred.eps
        _report(callback, 0, grid, x_next, pred.x0)
        return x_next, 1

    def _heun_step(self, denoiser: Denoiser, x_hat: torch.Tensor, hat: Level, nxt: Level,
                   cond: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """x_{i+1} from x̂_i at σ̂_i (Algorithm 2, lines 7–10; Algorithm 1 is σ̂_i = σ_i), and D(x̂_i; σ̂_i)."""
        denoised = denoise(denoiser, x_hat, hat, cond, self.clip_x0).x0
        d_cur = (x_hat - denoised) / hat.sigma  # Evaluate dx/dσ at σ̂_i.
        x_next = x_hat + (nxt.sigma - hat.sigma) * d_cur  # Euler step from σ̂_i to σ_{i+1}.
        if nxt.sigma > 0:  # Apply 2nd order correction (none on the last step, to σ_N = 0).
            d_prime = (x_next - denoise(denoiser, x_next, nxt, cond, self.clip_x0).x0) / nxt.sigma
            x_next = x_hat + (nxt.sigma - hat.sigma) * (0.5 * d_cur + 0.5 * d_prime)
        return x_next, denoised


@attrs.frozen
class EDMHeun(_EDMSampler):
    """Deterministic sampling with Heun's 2nd-order method (Karras et al. 2022, Algorithm 1).

    x_{i+1} = x_i + (σ_{i+1} − σ_i)·(½d_i + ½d'_i), d_i = (x_i − D(x_i; σ_i))/σ_i and d'_i the same slope
    at the Euler step's end; the last step, to σ_N = 0, is the Euler step alone. NFE = 2·steps − 1.
    The ratios σ_i/σ_{i+1} should stay moderate, as on the karras grid: the trapezoid over a step
    from σ = 2·10⁴ (cosine's t = 1) straight down to σ ≈ 6 (linspace, 10 steps) is far off.
    Default grid karras: at 10 steps a third of logsnr's distance to mnist-cfg's fine solution (docs/fast_sampling.md).
    """

    #: Heun's method: the trapezoidal rule, second order
    convergence_order: ClassVar[int] = 2

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None,
               cond: Any = None, generator: torch.Generator | None = None, callback: Any = None) -> torch.Tensor:
        grid = self.sigma_grid(schedule, steps)
        levels = grid.levels(x_T)
        x_next, start = self._start(denoiser, grid, levels, x_T, cond, callback)
        for i in range(start, grid.N):  # 0, ..., N−1
            x_next, denoised = self._heun_step(denoiser, x_next, levels[i], levels[i + 1], cond)
            _report(callback, i, grid, x_next, denoised)
        return x_next  # σ_N = 0: the EDM and VP frames agree


@attrs.frozen
class EDMStochastic(_EDMSampler):
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): Heun steps with churn.

    Before step i, if S_tmin ≤ σ_i ≤ S_tmax, the noise is raised to σ̂_i = (1 + γ_i)·σ_i with
    γ_i = min(S_churn/N, √2 − 1), x̂_i = x_i + √(σ̂_i² − σ_i²)·ε_i, ε_i ~ N(0, S_noise²·I) (through
    ``noise_like``, one stream per example); then Heun's step from σ̂_i to σ_{i+1}. σ̂_i is off the
    grid: the denoiser is asked at t̂_i = time_of(ᾱ = 1/(1+σ̂_i²)), and σ̂_i stops at σ(1), the most
    noise the schedule has. S_churn = 0 is :class:`EDMHeun`. The defaults are EDM's stochastic
    ImageNet-64 setting (the NVlabs/edm README: S_churn 40, S_min 0.05, S_max 50, S_noise 1.003,
    used there with 256 steps; at N < 40·(√2+1) ≈ 97 steps γ_i is at its cap √2 − 1).
    Default grid karras, as :class:`EDMHeun`'s; no grid meets DDIM's bar at 10 steps (docs/fast_sampling.md).
    """

    S_churn: float = option(40.0, help="overall stochasticity: γ_i = min(S_churn/N, √2 − 1); 0 = heun", ge=0.0, le=1e6)
    S_tmin: float = option(0.05, help="add noise only at steps from σ_i ≥ S_tmin", ge=0.0, le=1e12)
    S_tmax: float = option(50.0, help="add noise only at steps from σ_i ≤ S_tmax", ge=0.0, le=1e12)
    S_noise: float = option(1.003, help="std of the added noise ε_i (a little above 1 offsets a network's loss of "
                            "detail, §4)", gt=0.0, le=2.0)

    def __attrs_post_init__(self) -> None:
        if self.S_tmin > self.S_tmax:
            raise option_error(self, f"S_tmin={self.S_tmin:g} must not exceed S_tmax={self.S_tmax:g} (noise is added "
                               "at σ in [S_tmin, S_tmax])")

    def _churned(self, schedule: NoiseSchedule, level: Level, N: int, x: torch.Tensor) -> Level:
        """σ̂_i = σ_i + γ_i·σ_i at its own time t̂_i; ``level`` itself where γ_i = 0 or σ_i is σ(1)."""
        gamma = min(self.S_churn / N, math.sqrt(2) - 1) if self.S_tmin <= level.sigma <= self.S_tmax else 0.0
        if gamma == 0.0:
            return level
        hat = off_grid_level(schedule, level.sigma * (1 + gamma), x)
        return hat if hat.sigma > level.sigma else level

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None,
               cond: Any = None, generator: torch.Generator | None = None, callback: Any = None) -> torch.Tensor:
        grid = self.sigma_grid(schedule, steps)
        levels = grid.levels(x_T)
        x_next, start = self._start(denoiser, grid, levels, x_T, cond, callback)
        for i in range(start, grid.N):  # 0, ..., N−1
            x_cur, hat = x_next, self._churned(schedule, levels[i], grid.N, x_next)
            x_hat = x_cur  # Increase noise temporarily.
            if hat is not levels[i]:
                eps = noise_like(x_cur, generator) * self.S_noise  # ε_i ~ N(0, S_noise² I)
                x_hat = x_cur + math.sqrt(hat.sigma**2 - levels[i].sigma ** 2) * eps
            x_next, denoised = self._heun_step(denoiser, x_hat, hat, levels[i + 1], cond)
            _report(callback, i, grid, x_next, denoised)
        return x_next
