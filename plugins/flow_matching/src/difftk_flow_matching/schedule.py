"""The rectified-flow path as a difftk schedule (Liu et al. 2023; Lipman et al. 2023, §4.1)."""

from __future__ import annotations

import attrs
import torch
from difftk.maths.schedules import ContinuousSchedule
from difftk.options import option

from difftk_flow_matching.frame import alpha_bar_of_flow_time, flow_time, shift_flow_time


@attrs.frozen
class FlowSchedule(ContinuousSchedule):
    """x = (1−τ)·x₀ + τ·ε with τ = t, written VP: ᾱ(t) = (1−t)²/((1−t)² + t²), x_VP = x/√((1−t)² + t²).

    ᾱ(1) = 0: the path ends at pure noise, where samplers start. With ``shift`` s the path is
    walked at τ(t) = s·t/(1 + (s−1)·t) (Esser et al. 2024, eq. 23): s > 1 moves every time
    towards noise. ``time_of`` and ``beta`` are closed form.
    """

    shift: float = option(1.0, help="time shift s: τ = s·t/(1 + (s−1)·t); 1 = the straight path at τ = t "
                          "(Esser et al. 2024 use 3 at 1024²)", gt=0.0, le=1000.0)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """(1−τ)²/((1−τ)² + τ²) at τ = shift(t), computed in float64; same shape and dtype as ``t``."""
        tau = shift_flow_time(t.to(torch.float64).clamp(0.0, 1.0), self.shift)
        return alpha_bar_of_flow_time(tau).to(t.dtype)

    def time_of(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """t = shift⁻¹(σ/(α+σ)), float64 (the inverse shift is the shift by 1/s)."""
        tau = flow_time(alpha_bar.detach().to(torch.float64).clamp(0.0, 1.0))
        return shift_flow_time(tau, 1.0 / self.shift)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = −d log ᾱ/dt = (2/(1−τ) + (4τ − 2)/((1−τ)² + τ²))·dτ/dt, dτ/dt = s/(1 + (s−1)t)²;
        infinite at t = 1."""
        t64 = t.to(torch.float64).clamp(0.0, 1.0)
        tau = shift_flow_time(t64, self.shift)
        dtau = self.shift / (1 + (self.shift - 1) * t64) ** 2
        rate = (2 / (1 - tau) + (4 * tau - 2) / ((1 - tau) ** 2 + tau**2)) * dtau
        return rate.to(t.dtype)
