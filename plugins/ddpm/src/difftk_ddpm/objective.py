"""L_simple (Ho et al. 2020, eq. 14 and Algorithm 1)."""

from __future__ import annotations

import attrs
import torch
from difftk.diffusion import q_sample
from difftk.objectives import mean_flat, sample_times
from difftk.sampling import predict


@attrs.frozen
class SimpleLoss:
    """L_simple: E‖ε − ε̂(√ᾱ x₀ + √(1−ᾱ) ε, t)‖², t uniform (Ho et al. 2020, eq. 14).

    Denoisers that predict x₀ or v are converted to ε̂ first, so the weighting is always the
    paper's. A learned-variance output channel is ignored (it gets no gradient from L_simple).
    """

    def loss(self, denoiser, schedule, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        t = sample_times(schedule, x0.shape[0], generator, x0.device)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        alpha_bar = schedule.alpha_bar(t.to(torch.float64)).to(x0.dtype)
        x_t = q_sample(x0, alpha_bar, eps)
        eps_hat = predict(denoiser, x_t, t.to(x0.dtype), alpha_bar, cond).eps
        return mean_flat((eps - eps_hat) ** 2)
