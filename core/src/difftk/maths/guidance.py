"""The maths guidance methods share: how a guided prediction is formed from a conditional and an
unconditional (or weaker) one, each function on [B, ...] tensors, per example (all dimensions but
the first), in whatever parameterisation the caller chose.

The weights of cfg, autoguidance and interval guidance sum to one, so those rules give the same
sample whether applied to ε, x₀, v or the flow velocity. The others are not affine in the
prediction and fix their parameterisation by their paper: rescale (Lin et al. 2024) the model's
own output, APG (Sadat et al. 2024) the denoised x̂₀, CFG-Zero* (Fan et al. 2025) the flow velocity.
"""

from __future__ import annotations

from typing import Any

import torch


def _dims(x: torch.Tensor) -> list[int]:
    return list(range(1, x.ndim))


def extrapolate(pred_c: torch.Tensor, pred_u: torch.Tensor, w: Any) -> torch.Tensor:
    """(1+w)·pred_c − w·pred_u = pred_c + w·(pred_c − pred_u) (Ho & Salimans 2022, eq. 6; Karras et
    al. 2024, with the guiding model D₀ in place of pred_u). ``w``: a float or a [B, 1, …] tensor."""
    return pred_c + w * (pred_c - pred_u)


def sigma_of(alpha_bar: torch.Tensor) -> torch.Tensor:
    """The noise level σ = √((1−ᾱ)/ᾱ) of Karras et al. 2022 (x = x₀ + σ·ε is VP with ᾱ = 1/(1+σ²))."""
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def in_interval(alpha_bar: torch.Tensor, interval: tuple[float, float] | None) -> torch.Tensor:
    """[B] bool: σ(ᾱ) ∈ (σ_lo, σ_hi], where guidance applies (Kynkäänniemi et al. 2024); all
    True without an interval."""
    if interval is None:
        return torch.ones(alpha_bar.shape, dtype=torch.bool, device=alpha_bar.device)
    sigma = sigma_of(alpha_bar)
    return (sigma > interval[0]) & (sigma <= interval[1])


def rescale(guided: torch.Tensor, pred_c: torch.Tensor, phi: float) -> torch.Tensor:
    """φ·guided·std(pred_c)/std(guided) + (1−φ)·guided (Lin et al. 2024, §3.4): the guided
    prediction's standard deviation brought back to the conditional one's, mixed by φ."""
    if phi == 0.0:
        return guided
    ratio = pred_c.std(dim=_dims(pred_c), keepdim=True) / guided.std(dim=_dims(guided), keepdim=True)
    return phi * guided * ratio + (1 - phi) * guided


def project(v0: torch.Tensor, v1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(v0∥, v0⊥): v0 split into its part along v1 and the rest, per example (Sadat et al. 2024)."""
    unit = v1 / v1.flatten(1).norm(dim=1).clamp_min(torch.finfo(v1.dtype).tiny).view(-1, *[1] * (v1.ndim - 1))
    parallel = (v0 * unit).sum(dim=_dims(v0), keepdim=True) * unit
    return parallel, v0 - parallel


def apg(pred_c: torch.Tensor, diff: torch.Tensor, w: float, eta: float, r: float) -> torch.Tensor:
    """Adaptive projected guidance on denoised predictions (Sadat et al. 2024):
    Δ = D_c − D_u (or its momentum average, given as ``diff``), rescaled to norm ≤ r (r = 0: off), split
    along D_c, and D̂ = D_c + w·(Δ⊥ + η·Δ∥) (the paper's w − 1 is this w)."""
    if r > 0:
        norm = diff.flatten(1).norm(dim=1).view(-1, *[1] * (diff.ndim - 1))
        diff = diff * torch.clamp(r / norm, max=1.0)
    parallel, orthogonal = project(diff, pred_c)
    return pred_c + w * (orthogonal + eta * parallel)


def zero_star_scale(pred_c: torch.Tensor, pred_u: torch.Tensor) -> torch.Tensor:
    """s* = ⟨v_c, v_u⟩/‖v_u‖², per example, shaped [B, 1, …] (Fan et al. 2025, §4.1): the scale of the
    unconditional velocity closest to the conditional one (0 where v_u = 0)."""
    dot = (pred_c * pred_u).sum(dim=_dims(pred_c), keepdim=True)
    norm2 = (pred_u * pred_u).sum(dim=_dims(pred_u), keepdim=True)
    return torch.where(norm2 > 0, dot / norm2.clamp_min(torch.finfo(norm2.dtype).tiny), torch.zeros_like(dot))


def cfg_zero_star(pred_c: torch.Tensor, pred_u: torch.Tensor, w: float) -> torch.Tensor:
    """ṽ = s*·v_u + (1+w)·(v_c − s*·v_u) (Fan et al. 2025, §4.1, the paper's ω = 1 + w)."""
    scaled = zero_star_scale(pred_c, pred_u) * pred_u
    return scaled + (1 + w) * (pred_c - scaled)
