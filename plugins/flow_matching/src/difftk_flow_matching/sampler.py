"""Euler's method on the flow ODE dx_τ/dτ = u(x_τ, τ), the sampler of rectified flow (Liu et al. 2023)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.maths.diffusion import convert
from difftk.maths.grids import SPACINGS, explicit_times, step_count, time_grid, with_end
from difftk.maths.schedules import alpha_bar_table, time_of
from difftk.maths.terminal import ALPHA_BAR_FLOOR
from difftk.options import option
from difftk.sampling.steps import GridSampler, StepInfo, batch_times, denoiser_output

from difftk_flow_matching.frame import alpha_bar_of_flow_time, flow_time, shift_flow_time


@attrs.frozen
class FlowEuler(GridSampler):
    """x_{τ'} = x_τ + (τ' − τ)·û on the straight path, for any model on any schedule.

    Each grid time t has its flow time τ = σ/(α+σ) and flow state x_τ = x_t/(α+σ) (docs/math.md);
    û = ε̂ − x̂₀ is the denoiser's output converted by the core. With the step written through
    x̂₀ and ε̂ it is x_{τ'} = (1−τ')·x̂₀ + τ'·ε̂: the same point as DDIM (η = 0) on the same grid,
    an identity its tests hold to 1e-12. What makes it flow matching's sampler is the grid: by
    default evenly spaced in τ from the schedule's τ(1) (1 when it reaches pure noise; 80/81 on
    ``edm``) to 0, and ``shift`` (Esser et al. 2024, eq. 23) moves it towards noise. On the
    ``flow`` schedule, τ = t and the default grid is linspace.
    """

    spacing: str = option("flow", help="flow (evenly in the flow time τ), or a core spacing: "
                          f"{', '.join(SPACINGS)}", choices=("flow", *SPACINGS))
    shift: float = option(1.0, help="move the grid towards noise: τ → s·τ/(1 + (s−1)·τ)", gt=0.0, le=1000.0)

    #: steps when the caller gives none: a few dozen Euler steps suffice on a straight path
    default_steps: ClassVar[int] = 50
    #: Euler's method
    convergence_order: ClassVar[int] = 1

    def time_grid(self, schedule: NoiseSchedule, steps: int | None) -> np.ndarray:
        """t_K > … > t_1: τ = k/K mapped to the schedule's times (``flow``), or ``times`` or a core
        spacing; then, when ``shift`` ≠ 1, each moved to the time of its shifted τ."""
        if self.spacing == "flow" and self.times is None:
            K = step_count(schedule, steps, self.default_steps)
            top = float(alpha_bar_table(schedule, np.array([1.0]))[0])  # the schedule's t = 1 is at τ < 1 when ᾱ(1) > 0
            tau_top = 1.0 if top <= ALPHA_BAR_FLOOR else float(flow_time(top))
            taus = tau_top * np.arange(K, 0, -1, dtype=np.float64) / K
        else:
            spacing = "linspace" if self.spacing == "flow" else self.spacing
            grid = time_grid(schedule, steps, spacing, default=self.default_steps, times=self.times)
            if self.shift == 1.0:
                return grid
            taus = flow_time(alpha_bar_table(schedule, grid))
        taus = shift_flow_time(taus, self.shift)
        times = time_of(schedule, torch.from_numpy(alpha_bar_of_flow_time(taus))).numpy().clip(max=1.0)
        times[0] = 1.0  # the top of the grid is the schedule's t = 1 (up to the inverse's precision)
        return explicit_times(times)

    def nfe(self, steps: int | None, schedule: NoiseSchedule) -> int:
        """Denoiser evaluations of :meth:`sample`: one per step."""
        return len(self.time_grid(schedule, steps))

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None,
               cond: Any = None, generator: torch.Generator | None = None, callback: Any = None) -> torch.Tensor:
        times, ab = with_end(schedule, self.time_grid(schedule, steps))
        taus = flow_time(ab)
        scale = [float(math.sqrt(a) + math.sqrt(1 - a)) for a in ab]  # x_t = x_τ·(α+σ)
        t_batch = batch_times(times[:-1], x_T)
        x = x_T / scale[0]  # the flow state
        K = len(times) - 1
        for k in range(K):
            x_t = x * scale[k]
            out, _ = denoiser_output(denoiser, x_t, t_batch[k], cond)
            u = convert(denoiser.prediction, out, "flow", x_t, float(ab[k]))
            x0 = x - float(taus[k]) * u  # x_τ = (1−τ)·x₀ + τ·ε and u = ε − x₀ give x₀ = x_τ − τ·u
            x = x + float(taus[k + 1] - taus[k]) * u
            if callback is not None:
                callback(StepInfo(index=k, total=K, t=float(times[k]), t_next=float(times[k + 1]), x=x * scale[k + 1], x0=x0))
        return x * scale[-1]
