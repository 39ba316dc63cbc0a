"""Continuous-time denoising score matching (Song et al. 2021, eq. 7)."""

from __future__ import annotations

import attrs
import torch
from difftk.maths.diffusion import q_sample
from difftk.maths.objectives import mean_flat
from difftk.maths.schedules import beta_of
from difftk.options import option
from difftk.sampling.steps import predict


@attrs.frozen
class DenoisingScoreMatching:
    """λ(t)·‖s_θ(x_t, t) − ∇log q(x_t | x₀)‖², t ~ U(ε, 1) (Song et al. 2021, eq. 7).

    With s_θ = −ε̂/σ and ∇log q(x_t | x₀) = −ε/σ, σ² = 1 − ᾱ(t), the loss is
    λ(t)/σ²·‖ε̂ − ε‖² (mean over dimensions). ``weighting="sigma2"``: λ = σ², the ε-MSE of
    DDPM in continuous time. ``weighting="likelihood"``: λ = g(t)² = β(t), which makes the
    loss an upper bound on the negative log-likelihood (Song, Durkan, Murray & Ermon 2021,
    Thm. 1). Times are continuous for every schedule, a discrete one included (its
    log-linear ᾱ and piecewise-constant β); the denoiser may predict ε, x₀ or v.
    """

    eps: float = option(1e-5, help="smallest training time ε: t ~ U(ε, 1)", gt=0.0, lt=1.0)
    weighting: str = option("sigma2", help="λ(t): sigma2 (ε-MSE) or likelihood (λ = β(t))", choices=("sigma2", "likelihood"))

    def loss(self, denoiser, schedule, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand((x0.shape[0],), generator=generator, device=x0.device, dtype=torch.float64)
        t = self.eps + (1.0 - self.eps) * u
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        alpha_bar = schedule.alpha_bar(t)
        x_t = q_sample(x0, alpha_bar.to(x0.dtype), eps)
        eps_hat = predict(denoiser, x_t, t.to(x0.dtype), alpha_bar.to(x0.dtype), cond).eps
        mse = mean_flat((eps_hat - eps) ** 2)
        if self.weighting == "sigma2":
            return mse
        weight = beta_of(schedule, t) / (1.0 - alpha_bar)  # λ/σ² = β(t)/(1 − ᾱ(t))
        return weight.to(x0.dtype) * mse
