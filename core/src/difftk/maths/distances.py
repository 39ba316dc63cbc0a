"""Two-sample distances, to test that a sampler reproduces a distribution known by exact samples."""

from __future__ import annotations

import torch


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, projections: int = 128, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between the empirical distributions of x [N, D] and y [M, D].

    SW₁(x, y) = E_θ[W₁(θᵀx, θᵀy)] over directions θ uniform on the sphere (Bonneel et al. 2015,
    eq. 3), estimated with ``projections`` fixed directions drawn from ``seed``; each 1-D W₁ is
    the mean absolute difference of matched quantiles (N = M: of the sorted projections).
    Deterministic for given inputs, in float64.
    """
    x, y = x.reshape(x.shape[0], -1).to(torch.float64), y.reshape(y.shape[0], -1).to(torch.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"samples of different dimension: {x.shape[1]} and {y.shape[1]}")
    theta = torch.randn((x.shape[1], projections), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = (x @ theta).sort(dim=0).values, (y @ theta).sort(dim=0).values
    if px.shape[0] != py.shape[0]:
        q = torch.linspace(0, 1, max(px.shape[0], py.shape[0]), dtype=torch.float64)
        px, py = (torch.quantile(p, q, dim=0) for p in (px, py))
    return float((px - py).abs().mean())
