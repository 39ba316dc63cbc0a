"""EDM's noise levels as a difftk schedule (Karras et al. 2022, eq. 5 and Table 1)."""

from __future__ import annotations

import attrs
import torch
from difftk.maths.schedules import ContinuousSchedule
from difftk.options import option, option_error


@attrs.frozen
class EDMSchedule(ContinuousSchedule):
    """σ(t) = (σ_min^{1/ρ} + t·(σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ and, written VP, ᾱ(t) = 1/(1 + σ(t)²).

    EDM's x = x₀ + σ·n is the VP state x_t = x/√(1+σ²) (docs/math.md). Time is the ρ-ramp of
    eq. 5, so the core's linspace grid on t visits EDM's own sampling levels. t = 0 is σ_min,
    not σ = 0; every sampler still ends at σ = 0, the data (the end rule,
    :func:`difftk.maths.grids.with_end`), as EDM's σ_N = 0 does. ``time_of`` and ``beta`` are closed form.
    """

    sigma_min: float = option(0.002, help="σ at t = 0 (Table 1)", gt=0.0)
    sigma_max: float = option(80.0, help="σ at t = 1 (Table 1)", gt=0.0, le=1e8)
    rho: float = option(7.0, help="ρ of the ramp (eq. 5)", gt=0.0, le=100.0)

    def __attrs_post_init__(self) -> None:
        if self.sigma_max <= self.sigma_min:
            raise option_error(self, f"sigma_max={self.sigma_max:g} must be above sigma_min={self.sigma_min:g}")

    def _ends(self) -> tuple[float, float]:
        return self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)

    def noise_level(self, t: torch.Tensor) -> torch.Tensor:
        """σ(t) in float64."""
        lo, hi = self._ends()
        return (lo + t.to(torch.float64).clamp(0.0, 1.0) * (hi - lo)) ** self.rho

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ(t) = 1/(1 + σ(t)²); same shape and dtype as ``t``."""
        return (1.0 / (1.0 + self.noise_level(t) ** 2)).to(t.dtype)

    def time_of(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """t = (σ^{1/ρ} − σ_min^{1/ρ})/(σ_max^{1/ρ} − σ_min^{1/ρ}) with σ = √((1−ᾱ)/ᾱ), in [0, 1]."""
        ab = alpha_bar.detach().to(torch.float64)
        lo, hi = self._ends()
        sigma = torch.sqrt((1 - ab) / ab)
        return ((sigma ** (1 / self.rho) - lo) / (hi - lo)).clamp(0.0, 1.0)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = d log(1+σ²)/dt = 2σσ'/(1+σ²), σ' = ρ·σ^{(ρ−1)/ρ}·(σ_max^{1/ρ} − σ_min^{1/ρ})."""
        lo, hi = self._ends()
        sigma = self.noise_level(t)
        slope = self.rho * sigma ** ((self.rho - 1) / self.rho) * (hi - lo)
        return (2 * sigma * slope / (1 + sigma**2)).to(t.dtype)
