"""Statistics that metrics share: Gaussian moments of features, the Fréchet distance between
Gaussians, and bootstrap standard errors. Everything in float64."""

from __future__ import annotations

from collections.abc import Callable

import torch


def moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean μ [D] and unbiased covariance Σ [D, D] of features [N, D], in float64."""
    f = features.reshape(len(features), -1).to(torch.float64)
    if len(f) < 2:
        raise ValueError(f"moments need at least 2 samples, got {len(f)}")
    mu = f.mean(dim=0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (by eigh; negative
    round-off eigenvalues are set to 0)."""
    a = (a + a.T) / 2
    w, v = torch.linalg.eigh(a.to(torch.float64))
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) between N(μ₁, Σ₁) and N(μ₂, Σ₂) (Dowson &
    Landau 1982; the FID of Heusel et al. 2017, eq. 6). tr (Σ₁Σ₂)^½ is computed as
    tr (Σ₁^½ Σ₂ Σ₁^½)^½, the square root of a symmetric PSD matrix, so no complex round-off arises."""
    root1 = sqrtm_psd(sigma1)
    cross = sqrtm_psd(root1 @ sigma2.to(torch.float64) @ root1)
    d2 = (mu1 - mu2).to(torch.float64).square().sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * torch.trace(cross)
    return float(d2.clamp(min=0))


def frechet_distance_of(x: torch.Tensor, y: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to feature sets x [N, D] and y [M, D]."""
    return frechet_distance(*moments(x), *moments(y))


def bootstrap_standard_error(statistic: Callable[[torch.Tensor], float], x: torch.Tensor, *, resamples: int = 20,
                             generator: torch.Generator | None = None) -> float:
    """Standard deviation of ``statistic`` over ``resamples`` bootstrap resamples of the rows of x
    (Efron & Tibshirani 1993, §6.2): the standard error of the statistic due to the finite sample x."""
    n = len(x)
    values = torch.tensor([statistic(x[torch.randint(0, n, (n,), generator=generator)]) for _ in range(resamples)],
                          dtype=torch.float64)
    return float(values.std(unbiased=True))
