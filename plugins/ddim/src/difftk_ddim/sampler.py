"""DDIM sampling (Song et al. 2020, eq. 12 and 16)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from difftk.maths.diffusion import q_sample, x0_from_eps
from difftk.options import option
from difftk.sampling.steps import AffineSampler, AffinePlan, StepInfo, batch_time, batch_times, noise_like, predict


def ddim_sigma(eta, alpha_bar_s, alpha_bar_t):
    """σ_t(η) = η·√((1−ᾱ_s)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_s) (Song et al. 2020, eq. 16)."""
    return eta * np.sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s))


@attrs.frozen
class DDIMSampler(AffineSampler):
    """DDIM: x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s−σ²)·ε̂ + σ·z, σ = η·σ_DDPM (Song et al. 2020, eq. 12).

    Runs on any K ≤ T steps chosen by ``spacing``; each step goes to the previous time of
    that same grid. η = 0 gives the deterministic DDIM (an ODE discretisation, §4.3), η = 1
    on the full grid the DDPM posterior variance β̃.
    """

    eta: float = option(0.0, help="stochasticity: 0 deterministic DDIM, 1 DDPM-like", ge=0.0, le=1.0)

    #: steps when the caller gives none: the 50 of Song et al. 2020 (Table 1) and of diffusers' DDIMPipeline
    default_steps: ClassVar[int] = 50
    #: the global error of η = 0 falls as 1/K: an Euler step of the ODE in σ/α (Song et al. 2020, eq. 14)
    convergence_order: ClassVar[int] = 1
    #: every step is √ᾱ_s·x̂₀ + c·ε̂ + σ·z with x̂₀ and ε̂ read apart (guidance that re-noises, CFG++, needs it)
    renoise: ClassVar[bool] = True

    def sample(self, denoiser, schedule, x_T: torch.Tensor, steps: int | None = None, cond: Any = None,
               generator: torch.Generator | None = None, callback: Any = None) -> torch.Tensor:
        """Eq. 12 from x_T at t_K, each step from t to the next time s of the grid, the last to the end (ᾱ = 1)."""
        times, alpha_bars = self.grid(schedule, steps)
        t_batch = batch_times(times[:-1], x_T)
        x = x_T
        for k in range(len(times) - 1):
            ab_t, ab_s = float(alpha_bars[k]), float(alpha_bars[k + 1])
            pred = predict(denoiser, x, t_batch[k], ab_t, cond, self.clip_x0)  # x̂₀ = f_θ(x_t) (eq. 9) and ε̂ = ε_θ(x_t)
            sigma = float(ddim_sigma(self.eta, ab_s, ab_t))  # σ_t(η) (eq. 16)
            # x_s = √ᾱ_s·x̂₀ + √(1 − ᾱ_s − σ_t²)·ε̂ + σ_t·z: the predicted x₀, the direction pointing to x_t, noise (eq. 12)
            x_next = torch.add(math.sqrt(ab_s) * pred.x0, pred.eps, alpha=math.sqrt(max(1.0 - ab_s - sigma**2, 0.0)))
            if sigma > 0.0:
                x_next.add_(noise_like(x, generator), alpha=sigma)
            x = x_next
            if callback is not None:
                callback(StepInfo(index=k, total=len(times) - 1, t=float(times[k]), t_next=float(times[k + 1]), x=x,
                                  x0=pred.x0))
        return x

    def plan(self, schedule, steps: int | None) -> AffinePlan:
        """The coefficients of every step of :meth:`sample` as one float64 table (its affine form)."""
        times, ab = self.grid(schedule, steps)
        ab_t, ab_s = ab[:-1], ab[1:]
        sigma = ddim_sigma(self.eta, ab_s, ab_t)
        c_eps = np.sqrt(np.clip(1 - ab_s - sigma**2, 0.0, None))
        return AffinePlan(times=times, alpha_bars=ab, c_x0=np.sqrt(ab_s), c_xt=0.0, c_eps=c_eps, sigma=sigma)

    def invert(self, denoiser, schedule, x0: torch.Tensor, steps: int | None = None, cond=None) -> torch.Tensor:
        """DDIM inversion: the η=0 update run from data to noise on the same grid (§4.3, eq. 14).

        ε̂ is evaluated at the current (less noisy) point, so sampling the result with
        ``eta=0`` and the same ``steps`` returns ≈ x0; the error vanishes as steps grow.
        """
        times, ab = (a[::-1].copy() for a in self.grid(schedule, steps))  # 0 = t_0 < … < t_K
        x = x0
        for k in range(len(times) - 1):
            s, t = times[k], times[k + 1]
            # ε̂ at the start of the step (at s=0 the model is queried at its first grid time)
            t_eval = s if s > 0 else t
            ab_eval = float(ab[k] if s > 0 else ab[k + 1])
            eps = predict(denoiser, x, batch_time(t_eval, x), ab_eval, cond).eps
            # x̂₀ read at the current point's ᾱ (x itself at s = 0), then x_t = √ᾱ_t·x̂₀ + √(1−ᾱ_t)·ε̂
            x = q_sample(x0_from_eps(x, eps, ab[k]), ab[k + 1], eps)
        return x
