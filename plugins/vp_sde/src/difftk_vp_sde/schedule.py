"""The VP SDE's noise schedule (Song et al. 2021, eq. 11 and 33; App. B)."""

from __future__ import annotations

import attrs
import numpy as np
import torch
from difftk.maths.schedules import ContinuousSchedule, Discretization, ScheduleBase
from difftk.options import option, option_error


@attrs.frozen
class VPSchedule(ContinuousSchedule):
    """β(t) = β_min + t(β_max − β_min); ᾱ(t) = exp(−β_min t − ½(β_max − β_min)t²) (Song et al. 2021, eq. 33).

    ``discretize(N)`` is the paper's discretization (App. B): β_i = β̄_i/N with β̄_i linear from
    β_min to β_max, which for N = 1000 is DDPM's linear schedule, 1e-4 to 0.02. It approximates
    the continuous ᾱ to first order in 1/N (log ᾱ differs by ≈ (1/2N)∫β² = 0.067 at N = 1000).
    For N ≤ β_max that rule would give β ≥ 1, so there ᾱ is sampled on the grid i/N instead.
    """

    beta_min: float = option(0.1, help="β(0), the rate at t = 0", gt=0.0)
    beta_max: float = option(20.0, help="β(1), the rate at t = 1", gt=0.0)

    def __attrs_post_init__(self) -> None:
        if self.beta_max < self.beta_min:
            raise option_error(self, f"beta_max={self.beta_max} must not be below beta_min={self.beta_min}")

    def log_alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """log ᾱ(t) = −∫₀ᵗ β(s) ds = −β_min t − ½(β_max − β_min)t²."""
        return -self.beta_min * t - 0.5 * (self.beta_max - self.beta_min) * t**2

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ(t) = exp(−∫₀ᵗ β), computed in float64; same shape and dtype as ``t``."""
        return torch.exp(self.log_alpha_bar(t.to(torch.float64))).to(t.dtype)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = β_min + t(β_max − β_min) (Song et al. 2021, eq. 11 with the App. C rate)."""
        return (self.beta_min + t.to(torch.float64) * (self.beta_max - self.beta_min)).to(t.dtype)

    def paper_betas(self, N: int) -> np.ndarray:
        """β_i = β̄_i/N, β̄_i = linspace(β_min, β_max, N) (Song et al. 2021, App. B)."""
        return np.linspace(self.beta_min / N, self.beta_max / N, N, dtype=np.float64)

    def discretize(self, T: int) -> Discretization:
        """The paper's β_i = β̄_i/T when every β_i < 1 (T > β_max), else ᾱ sampled on i/T."""
        if T > self.beta_max:
            return Discretization.from_betas(self.paper_betas(T))
        return ScheduleBase.discretize(self, T)
