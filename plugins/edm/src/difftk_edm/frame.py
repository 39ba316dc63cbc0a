"""The EDM frame of a difftk model: noise levels σ, and the denoiser D(x; σ) (Karras et al. 2022, §2).

EDM writes a noisy sample as x = x₀ + σ·n. difftk's x_t = √ᾱ·x₀ + √(1−ᾱ)·ε is the same point
scaled by √ᾱ (docs/architecture.md: any Gaussian path is VP up to a scale): x = x_t/√ᾱ =
x_t·√(1+σ²) with σ = √((1−ᾱ)/ᾱ), i.e. ᾱ = 1/(1+σ²), the relation the core's karras spacing uses.
In this frame D(x; σ) is the denoiser's x̂₀ at x_t = x/√(1+σ²), asked at the time t with
ᾱ(t) = 1/(1+σ²), and (x − D)/σ is its ε̂.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.maths.grids import with_end
from difftk.maths.schedules import alpha_bar_table, time_of
from difftk.sampling.steps import Prediction, predict


def sigma_of(alpha_bar):
    """σ = √((1−ᾱ)/ᾱ), float64; ∞ where ᾱ = 0 (a zero terminal SNR)."""
    ab = np.asarray(alpha_bar, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.sqrt((1.0 - ab) / ab)


def alpha_bar_of(sigma):
    """ᾱ = 1/(1+σ²), float64."""
    return 1.0 / (1.0 + np.asarray(sigma, dtype=np.float64) ** 2)


def off_grid_level(schedule: NoiseSchedule, sigma: float) -> tuple[float, float, float]:
    """(σ, t, ᾱ) of a level off the sampler's grid: t = time_of(ᾱ = 1/(1+σ²)) by the schedule's inverse,
    and σ read back from ᾱ(t), so the denoiser's time and σ agree exactly (above σ(1) both stop at t = 1)."""
    t = float(time_of(schedule, torch.tensor([float(alpha_bar_of(sigma))], dtype=torch.float64))[0])
    alpha_bar = float(alpha_bar_table(schedule, np.array([t]))[0])
    return float(sigma_of(alpha_bar)), t, alpha_bar


@attrs.frozen
class SigmaGrid:
    """σ_0 > … > σ_{N−1} > σ_N = 0 of the core's time grid and the end (:func:`difftk.maths.grids.with_end`),
    with their times t_i and ᾱ_i = 1/(1+σ_i²) (float64)."""

    times: np.ndarray
    alpha_bars: np.ndarray
    sigmas: np.ndarray

    @classmethod
    def of(cls, schedule: NoiseSchedule, grid: np.ndarray) -> SigmaGrid:
        times, alpha_bars = with_end(schedule, grid)
        return cls(times=times, alpha_bars=alpha_bars, sigmas=sigma_of(alpha_bars))

    @property
    def N(self) -> int:
        return len(self.times) - 1


def denoise(denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor, alpha_bar: float, cond: torch.Tensor | None = None,
            clip_x0: float | None = None) -> Prediction:
    """D(x; σ) for x in the EDM frame, σ = √((1−ᾱ)/ᾱ): the denoiser sees x_t = x·√ᾱ at ``t``, in its own
    parameterisation (:func:`difftk.sampling.steps.predict`); ``.x0`` is D, ``.eps`` is (x − D)/σ."""
    return predict(denoiser, x * math.sqrt(alpha_bar), t, alpha_bar, cond, clip_x0)
