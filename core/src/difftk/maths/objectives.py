"""Helpers objectives share."""

from __future__ import annotations

import torch

from difftk.maths.schedules import grid_size_of


def sample_times(schedule: object, batch: int, generator: torch.Generator | None, device: torch.device | str,
                 t_min: float = 0.0) -> torch.Tensor:
    """Training times t of shape [B]: uniform on the grid i/T (i = 1..T) of a discrete schedule,
    uniform on (t_min, 1] for a continuous one (float32)."""
    T = grid_size_of(schedule)
    if T is not None:
        i = torch.randint(1, T + 1, (batch,), generator=generator, device=device)
        return i.to(torch.float32) / T
    u = torch.rand((batch,), generator=generator, device=device)
    return 1.0 - u * (1.0 - t_min)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch: [B, ...] -> [B]."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


#: Loss weightings an objective may offer: constant (none), or Min-SNR-γ (Hang et al. 2023)
WEIGHTINGS: tuple[str, ...] = ("constant", "min-snr")


def loss_weight(weighting: str, prediction: str, alpha_bar: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """Per-example weight of a squared error taken in parameterisation ``prediction`` ([B], float64).

    ``min-snr`` weights the x₀ error by min(SNR, γ) (Hang et al. 2023, eq. 11); written on y's
    error that is min(SNR, γ)/g(y), g = :func:`~difftk.maths.diffusion.error_gain`: ε:
    min(1, γ/SNR); x₀: min(SNR, γ); v: min(SNR, γ)/(SNR + 1); flow: min(SNR, γ)/(1 + √SNR)²;
    edm: min(SNR, γ)·c_out². At SNR = 0 (pure noise) the ε weight is its limit 1, the others 0;
    at SNR = ∞ (t = 0, never trained) the ε weight is 0.
    """
    from difftk.maths.diffusion import error_gain

    ab = alpha_bar.to(torch.float64)
    if weighting == "constant":
        return torch.ones_like(ab)
    if weighting != "min-snr":
        raise ValueError(f"unknown weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")
    if prediction == "eps":  # min(SNR, γ)/SNR without 0/0 at SNR = 0
        return torch.where(ab * (1 + gamma) <= gamma, torch.ones_like(ab), gamma * (1 - ab) / ab)
    snr = ab / (1 - ab)
    return torch.minimum(snr, torch.full_like(snr, gamma)) / error_gain(prediction, ab)
