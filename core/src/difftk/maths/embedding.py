"""The time embedding networks share: sinusoids of the continuous time t ∈ [0, 1]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of continuous times t ∈ [0, 1] (Vaswani et al. 2017, §3.5).

    t is multiplied by 1000 first, so the frequencies see the same numbers as the discrete step
    index i ∈ {1..1000} of Ho et al. 2020 (App. B) and a network trained on that grid embeds
    t = i/1000 exactly as the paper embeds step i.
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(max_period) / half))
    args = (1000.0 * t.to(torch.float32))[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim - 2 * half)) if dim % 2 else emb
