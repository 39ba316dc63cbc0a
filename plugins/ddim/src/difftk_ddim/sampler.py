"""DDIM sampling (Song et al. 2020, eq. 12 and 16)."""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
import torch
from difftk.options import option
from difftk.sampling import AffineSampler, AffineSteps, predict


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

    def plan(self, schedule, steps: int | None) -> AffineSteps:
        """The coefficients of every step, in float64."""
        times, ab = self.grid(schedule, steps)
        ab_t, ab_s = ab[:-1], ab[1:]
        sigma = ddim_sigma(self.eta, ab_s, ab_t)
        c_eps = np.sqrt(np.clip(1 - ab_s - sigma**2, 0.0, None))
        return AffineSteps(times=times, alpha_bars=ab, c_x0=np.sqrt(ab_s), c_xt=0.0, c_eps=c_eps, sigma=sigma)

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
            t_vec = torch.full((x.shape[0],), float(t_eval), dtype=x.dtype, device=x.device)
            pred = predict(denoiser, x, t_vec, ab_eval, cond)
            x0_hat = (x - (1 - ab[k]) ** 0.5 * pred.eps) / ab[k] ** 0.5
            x = ab[k + 1] ** 0.5 * x0_hat + (1 - ab[k + 1]) ** 0.5 * pred.eps
        return x
