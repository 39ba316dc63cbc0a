"""EDM's training objective (Karras et al. 2022, eq. 2 and 8, Table 1: log-normal σ, λ(σ))."""

from __future__ import annotations

import attrs
import torch
from difftk.maths.diffusion import EDM_SIGMA_DATA, eps_and_x0, q_sample
from difftk.maths.objectives import mean_flat
from difftk.maths.schedules import time_of
from difftk.options import option
from difftk.sampling.steps import denoiser_output


@attrs.frozen
class EDMLoss:
    """λ(σ)·‖D(x; σ) − x₀‖², ln σ ~ N(P_mean, P_std²), λ(σ) = (σ² + σ_d²)/(σ·σ_d)² (Table 1).

    D is the denoiser's x̂₀ in whatever parameterisation it has (converted by the core). With the
    ``edm`` parameterisation, x̂₀ = c_skip·x + c_out·F and λ·c_out² = 1, so the loss is EDM's
    unit-weight ‖F − F*‖² (eq. 8). On any schedule σ is drawn log-normal and the model is asked
    at the schedule's time of ᾱ = 1/(1+σ²); σ outside the schedule's range is moved to its end,
    and λ is taken at the σ actually used.
    """

    p_mean: float = option(-1.2, help="P_mean, the mean of ln σ (Table 1)", ge=-10.0, le=10.0)
    p_std: float = option(1.2, help="P_std, the spread of ln σ (Table 1)", gt=0.0, le=10.0)
    sigma_data: float = option(EDM_SIGMA_DATA, help="σ_data of λ(σ): the data's standard deviation (0.5 for [−1, 1])",
                               gt=0.0)

    def loss(self, denoiser, schedule, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        n = torch.randn((x0.shape[0],), generator=generator, device=x0.device, dtype=torch.float64)
        sigma = torch.exp(self.p_mean + self.p_std * n)
        t = time_of(schedule, 1.0 / (1.0 + sigma**2)).clamp(0.0, 1.0)
        alpha_bar = schedule.alpha_bar(t)
        sigma = torch.sqrt((1 - alpha_bar) / alpha_bar)  # the level the schedule gives at t
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        ab = alpha_bar.to(x0.dtype)
        x_t = q_sample(x0, ab, eps)
        out, _ = denoiser_output(denoiser, x_t, t.to(x0.dtype), cond)
        _, x0_hat = eps_and_x0(denoiser.prediction, out, x_t, ab)
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        return mean_flat((x0_hat - x0) ** 2) * weight.to(x0.dtype)
