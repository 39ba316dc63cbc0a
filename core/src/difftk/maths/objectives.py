"""Helpers objectives share."""

from __future__ import annotations

import torch


def sample_times(schedule: object, batch: int, generator: torch.Generator | None, device: torch.device | str,
                 t_min: float = 0.0) -> torch.Tensor:
    """Training times t of shape [B]: uniform on the grid i/T (i = 1..T) of a discrete schedule,
    uniform on (t_min, 1] for a continuous one (float32)."""
    T = getattr(schedule, "grid_size", None)
    if T is not None:
        i = torch.randint(1, T + 1, (batch,), generator=generator, device=device)
        return i.to(torch.float32) / T
    u = torch.rand((batch,), generator=generator, device=device)
    return 1.0 - u * (1.0 - t_min)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch: [B, ...] -> [B]."""
    return x.reshape(x.shape[0], -1).mean(dim=1)
