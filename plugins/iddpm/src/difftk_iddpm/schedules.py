"""The cosine schedule of Nichol & Dhariwal 2021 (§3.2, eq. 17)."""

from __future__ import annotations

import math

import attrs
import numpy as np
from difftk.maths.schedules import DiscreteSchedule
from difftk.options import option


def cosine_f(t: np.ndarray, s: float) -> np.ndarray:
    """f(t) = cos²(((t+s)/(1+s))·π/2), t ∈ [0, 1] (eq. 17)."""
    return np.cos((np.asarray(t, dtype=np.float64) + s) / (1.0 + s) * math.pi / 2) ** 2


@attrs.frozen
class CosineSchedule(DiscreteSchedule):
    """Cosine ᾱ(t) = f(t)/f(0), f(t) = cos²(((t+s)/(1+s))·π/2) (Nichol & Dhariwal 2021, eq. 17).

    On the grid i/T, β_i = 1 − ᾱ(i/T)/ᾱ((i−1)/T) clipped to ``max_beta`` (0.999 in the paper,
    to avoid the singularity at t = 1), so ᾱ_i = ∏(1 − β_j) equals f(i/T)/f(0) except at
    the clipped final step(s). The offset s keeps β_1 from being too small near t = 0.
    """

    s: float = option(0.008, help="offset s of f(t); keeps β small but not vanishing near t = 0", gt=0.0, lt=1.0)
    max_beta: float = option(0.999, help="clip each β_i to this (the paper's 0.999)", gt=0.0, lt=1.0)

    def paper_betas(self) -> np.ndarray:
        t = np.arange(self.T + 1, dtype=np.float64) / self.T
        f = cosine_f(t, self.s)
        return np.minimum(1.0 - f[1:] / f[:-1], self.max_beta)
