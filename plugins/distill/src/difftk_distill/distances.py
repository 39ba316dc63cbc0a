"""The per-example distances the distillation objectives train with."""

from __future__ import annotations

import torch
from difftk.maths.objectives import mean_flat

DISTANCES = ("l2", "pseudo-huber")


def per_example(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    """d(a, b) for each example, [B]: ``l2`` is ‖a − b‖², ``pseudo-huber`` √(‖a − b‖² + c²) − c with
    c = 0.00054·√d for d dimensions (Song & Dhariwal 2023, §3.3; Lee et al. 2024 for rectified flow), which is
    ‖a − b‖²/(2c) near 0 and ‖a − b‖ − c far from it: each example's gradient is bounded, so pairs the student
    cannot fit yet pull no harder than the rest."""
    sq = mean_flat((a - b) ** 2) * a[0].numel()
    if distance == "l2":
        return sq
    if distance != "pseudo-huber":
        raise ValueError(f"unknown distance {distance!r}: one of {', '.join(DISTANCES)}")
    c = 0.00054 * a[0].numel() ** 0.5
    return (sq + c * c).sqrt() - c
