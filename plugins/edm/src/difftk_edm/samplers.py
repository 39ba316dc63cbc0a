"""EDM's samplers (Karras et al. 2022): Heun's 2nd-order method (Algorithm 1) and the stochastic
sampler (Algorithm 2).

Both integrate the probability-flow ODE dx/dσ = (x − D(x; σ))/σ (eq. 1 with σ(t) = t and the
score (D − x)/σ² of eq. 3) in the EDM frame x = x_t·√(1+σ²) (:mod:`difftk_edm.frame`), on the
σ_i of the core's time grid (karras spacing by default: eq. 5, ρ = 7), so they work with every
schedule, every parameterisation (through ``predict``), guidance wrappers and learned variance.
Each ends at σ_N = 0, where the EDM and VP frames agree (the core's end rule,
:func:`difftk.maths.grids.with_end`): on the ``edm`` schedule too, whose t = 0 is σ_min.
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
from difftk.sampling.steps import GridSampler, StepInfo, batch_time, batch_times, noise_like, predict

from difftk_edm.frame import SigmaGrid, alpha_bar_of, denoise, off_grid_level, sigma_of


@attrs.frozen
class _EDMSampler(GridSampler):
    """What both samplers share: the options, the grid in σ, the NFE, and the start from pure noise."""

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
        1 − (1 − Var x₀)/(1+σ_max²). Above σ_max D(x; σ) → E[x₀] and nothing happens worth a step, yet
        from a σ(1) far above it (cosine's 2·10⁴) the karras grid would spend most of its steps there
        (docs/edm.md measures what that costs)."""
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
        """t_i of the core's grid (:meth:`time_grid`), then the end, σ_N = 0; ᾱ and σ there."""
        return SigmaGrid.of(schedule, self.time_grid(schedule, steps))

    def nfe(self, steps: int | None, schedule: NoiseSchedule) -> int:
        """Denoiser evaluations of one ``sample``: one per step and one per 2nd-order correction,
        which every step has but the last (to σ = 0): 2·steps − 1. (A step from σ = ∞, where ᾱ(t_0) = 0,
        is an Euler step too.)"""
        s = self.sigma_grid(schedule, steps).sigmas
        return len(s) - 1 + sum(1 for i in range(len(s) - 1) if s[i + 1] > 0 and np.isfinite(s[i]))

    def _from_pure_noise(self, denoiser: Denoiser, x_T: torch.Tensor, t_0: torch.Tensor, sigma_1: float,
                         cond: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """x_1 and D where ᾱ(t_0) = 0 (σ_0 = ∞, where Algorithm 1's x_0 = x_T·σ_0 has no limit): the limit of
        the first Euler step, x_1 = D + σ_1·ε̂ with D and ε̂ at x_T (as x_0 = D + σ_0·ε̂). Its trapezoid has no
        limit, so there is no correction."""
        pred = predict(denoiser, x_T, t_0, 0.0, cond, self.clip_x0)  # at ᾱ = 0, x_T is the VP state itself
        return pred.x0 + sigma_1 * pred.eps, pred.x0


@attrs.frozen
class EDMHeun(_EDMSampler):
    """Deterministic sampling with Heun's 2nd-order method (Karras et al. 2022, Algorithm 1).

    x_{i+1} = x_i + (σ_{i+1} − σ_i)·(½d_i + ½d'_i), d_i = (x_i − D(x_i; σ_i))/σ_i and d'_i the same slope
    at the Euler step's end; the last step, to σ_N = 0, is the Euler step alone. NFE = 2·steps − 1.
    The ratios σ_i/σ_{i+1} should stay moderate, as on the karras grid: the trapezoid over one step
    from σ = 2·10⁴ (cosine's t = 1) straight down to σ ≈ 6 (linspace, 10 steps) is far off.
    Default grid karras (eq. 5), whose σ_i/σ_{i+1} stay moderate; the grids compared: docs/fast_sampling.md.
    """

    #: Heun's method: the trapezoidal rule, second order
    convergence_order: ClassVar[int] = 2

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None,
               cond: Any = None, generator: torch.Generator | None = None, callback: Any = None) -> torch.Tensor:
        grid = self.sigma_grid(schedule, steps)  # t_i, ᾱ_i and σ_i, i = 0..N, σ_N = 0
        t_steps, N = batch_times(grid.times, x_T), grid.N
        alpha_bars, sigmas = [float(a) for a in grid.alpha_bars], [float(s) for s in grid.sigmas]

        def D(x: torch.Tensor, i: int) -> torch.Tensor:  # D(x; σ_i)
            return denoise(denoiser, x, t_steps[i], alpha_bars[i], cond, self.clip_x0).x0

        # Main sampling loop.
        if np.isfinite(sigmas[0]):
            x_next, start = x_T * math.sqrt(1.0 + sigmas[0] ** 2), 0  # x_0 ~ N(0, σ_0² I) (line 2), in the EDM frame
        else:
            x_next, denoised = self._from_pure_noise(denoiser, x_T, t_steps[0], sigmas[1], cond)
            start = 1
            if callback is not None:
                callback(StepInfo(index=0, total=N, t=float(grid.times[0]), t_next=float(grid.times[1]),
                                  x=x_next * math.sqrt(alpha_bars[1]), x0=denoised))
        for i in range(start, N):  # 0, ..., N−1 (line 3)
            x_cur = x_next
            denoised = D(x_cur, i)
            d_cur = (x_cur - denoised) / sigmas[i]  # Evaluate dx/dσ at σ_i (line 4).
            x_next = x_cur + (sigmas[i + 1] - sigmas[i]) * d_cur  # Take Euler step from σ_i to σ_{i+1} (line 5).
            if sigmas[i + 1] > 0:  # Apply 2nd order correction (lines 6–8).
                d_prime = (x_next - D(x_next, i + 1)) / sigmas[i + 1]
                x_next = x_cur + (sigmas[i + 1] - sigmas[i]) * (0.5 * d_cur + 0.5 * d_prime)
            if callback is not None:  # the state x_{i+1} back in the VP frame the caller works in
                callback(StepInfo(index=i, total=N, t=float(grid.times[i]), t_next=float(grid.times[i + 1]),
                                  x=x_next * math.sqrt(alpha_bars[i + 1]), x0=denoised))
        return x_next  # σ_N = 0: the data, where the EDM and VP frames agree (line 9)


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
    Default grid karras, as :class:`EDMHeun`'s (the grids compared: docs/fast_sampling.md).
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

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None,
               cond: Any = None, generator: torch.Generator | None = None, callback: Any = None) -> torch.Tensor:
        grid = self.sigma_grid(schedule, steps)  # t_i, ᾱ_i and σ_i, i = 0..N, σ_N = 0
        t_steps, N = batch_times(grid.times, x_T), grid.N
        alpha_bars, sigmas = [float(a) for a in grid.alpha_bars], [float(s) for s in grid.sigmas]

        def D(x: torch.Tensor, t: torch.Tensor, alpha_bar: float) -> torch.Tensor:  # D(x; σ) at σ's own time t
            return denoise(denoiser, x, t, alpha_bar, cond, self.clip_x0).x0

        # Main sampling loop.
        if np.isfinite(sigmas[0]):
            x_next, start = x_T * math.sqrt(1.0 + sigmas[0] ** 2), 0  # x_0 ~ N(0, σ_0² I) (line 2), in the EDM frame
        else:
            x_next, denoised = self._from_pure_noise(denoiser, x_T, t_steps[0], sigmas[1], cond)
            start = 1
            if callback is not None:
                callback(StepInfo(index=0, total=N, t=float(grid.times[0]), t_next=float(grid.times[1]),
                                  x=x_next * math.sqrt(alpha_bars[1]), x0=denoised))
        for i in range(start, N):  # 0, ..., N−1 (line 3)
            x_cur = x_next

            # Increase noise temporarily (lines 4–6): σ̂_i at its own time t̂_i, at most σ(1).
            gamma = min(self.S_churn / N, math.sqrt(2) - 1) if self.S_tmin <= sigmas[i] <= self.S_tmax else 0.0
            sigma_hat, t_hat, alpha_bar_hat = sigmas[i], t_steps[i], alpha_bars[i]
            x_hat = x_cur
            if gamma > 0:
                churned, t, alpha_bar = off_grid_level(schedule, sigma_hat * (1 + gamma))
                if churned > sigma_hat:
                    eps = noise_like(x_cur, generator) * self.S_noise  # ε_i ~ N(0, S_noise² I)
                    x_hat = x_cur + math.sqrt(churned**2 - sigma_hat**2) * eps
                    sigma_hat, t_hat, alpha_bar_hat = churned, batch_time(t, x_cur), alpha_bar

            # Euler step (lines 7–8).
            denoised = D(x_hat, t_hat, alpha_bar_hat)
            d_cur = (x_hat - denoised) / sigma_hat
            x_next = x_hat + (sigmas[i + 1] - sigma_hat) * d_cur

            # Apply 2nd order correction (lines 9–11).
            if sigmas[i + 1] > 0:
                d_prime = (x_next - D(x_next, t_steps[i + 1], alpha_bars[i + 1])) / sigmas[i + 1]
                x_next = x_hat + (sigmas[i + 1] - sigma_hat) * (0.5 * d_cur + 0.5 * d_prime)
            if callback is not None:  # the state x_{i+1} back in the VP frame the caller works in
                callback(StepInfo(index=i, total=N, t=float(grid.times[i]), t_next=float(grid.times[i + 1]),
                                  x=x_next * math.sqrt(alpha_bars[i + 1]), x0=denoised))
        return x_next  # σ_N = 0: the data, where the EDM and VP frames agree (line 12)
