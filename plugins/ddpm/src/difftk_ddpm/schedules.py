"""The β schedules of DDPM, exact in float64 on their own grid of T steps.

All three are defined at the reference T = 1000 by β_start = 1e-4 and β_end = 0.02; for
another T both ends are multiplied by 1000/T (the rule of the improved-DDPM reference code,
``get_named_beta_schedule``), so the total noise added stays comparable.
"""

from __future__ import annotations

import attrs
import numpy as np
from difftk.maths.schedules import DiscreteSchedule
from difftk.options import option, option_error


@attrs.frozen
class _BetaRange(DiscreteSchedule):
    beta_start: float = option(1e-4, help="β_1 at the reference T=1000 (scaled by 1000/T)", gt=0.0, lt=1.0)
    beta_end: float = option(0.02, help="β_T at the reference T=1000 (scaled by 1000/T)", gt=0.0, lt=1.0)

    def __attrs_post_init__(self) -> None:
        if self.beta_end < self.beta_start:
            raise option_error(self, f"beta_end={self.beta_end} must not be below beta_start={self.beta_start}")
        if self.beta_end * 1000 / self.T >= 1.0:
            raise option_error(self, f"T={self.T} scales beta_end to {self.beta_end * 1000 / self.T:g} ≥ 1: use T > {int(self.beta_end * 1000)}")
        super().__attrs_post_init__()

    def _ends(self) -> tuple[float, float]:
        scale = 1000.0 / self.T
        return scale * self.beta_start, scale * self.beta_end


@attrs.frozen
class LinearSchedule(_BetaRange):
    """Linear β from 1e-4 to 0.02 (Ho et al. 2020, §4); T=1000 gives linspace(1e-4, 0.02, 1000)."""

    def paper_betas(self) -> np.ndarray:
        lo, hi = self._ends()
        return np.linspace(lo, hi, self.T, dtype=np.float64)


@attrs.frozen
class QuadraticSchedule(_BetaRange):
    """Quadratic β: √β linear from √β_start to √β_end (the DDPM reference code's ``quad``)."""

    def paper_betas(self) -> np.ndarray:
        lo, hi = self._ends()
        return np.linspace(lo**0.5, hi**0.5, self.T, dtype=np.float64) ** 2


@attrs.frozen
class SigmoidSchedule(_BetaRange):
    """Sigmoid β = σ(linspace(−6, 6, T))·(β_end − β_start) + β_start (the DDIM reference code's
    ``sigmoid``; Song et al. 2020). Not the sigmoid-of-ᾱ schedule of Jabri et al. 2022."""

    def paper_betas(self) -> np.ndarray:
        lo, hi = self._ends()
        s = 1.0 / (1.0 + np.exp(-np.linspace(-6.0, 6.0, self.T, dtype=np.float64)))
        return s * (hi - lo) + lo
