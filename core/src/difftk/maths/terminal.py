"""Schedules that reach pure noise: zero terminal SNR (Lin et al. 2024) and the floor samplers use.

Lin et al. 2024 (Alg. 1) shift and scale √ᾱ so that ᾱ(1) = 0 while ᾱ at the first step is kept:

    √ᾱ'(t) = (√ᾱ(t) − √ᾱ(1)) · √ᾱ(t₀) / (√ᾱ(t₀) − √ᾱ(1)),

with t₀ the first grid point 1/T of a discrete schedule (their algorithm, on ᾱ_1..ᾱ_T: a
``DiscreteSchedule`` rescales its own β table) and t₀ = 0 for a continuous one, which
:class:`ZeroTerminalSNR` wraps. The flow path ᾱ = (1−t)²/((1−t)² + t²) reaches 0 too.

A model trained on such a schedule sees pure noise at t = 1, which is what sampling starts
from. Its SNR and log-SNR are 0 and −∞ there, and σ_EDM = √((1−ᾱ)/ᾱ) is infinite, so the
samplers' step formulas would divide by zero. :class:`TerminalFloor` is the view samplers are
given instead (:func:`for_sampling`): ᾱ is raised to at least :data:`ALPHA_BAR_FLOOR` = 2⁻²⁴,
σ_EDM = 4096 (diffusers' DPM-Solver and Euler schedulers raise their last ᾱ to the same value).
The denoiser is still asked at t = 1, the time it was trained at.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch

from difftk.maths.schedules import (
    ContinuousSchedule,
    Discretization,
    ScheduleBase,
    beta_of,
    rescale_alphas_cumprod,
    time_of,
)

__all__ = ["ALPHA_BAR_FLOOR", "TerminalFloor", "ZeroTerminalSNR", "for_sampling", "reaches_pure_noise",
           "rescale_alpha_bar", "rescale_alphas_cumprod", "with_zero_terminal_snr"]

#: The least ᾱ a sampler computes with: SNR 6.0e-8, σ_EDM = 4096
ALPHA_BAR_FLOOR = 2.0**-24


def rescale_alpha_bar(alpha_bar: torch.Tensor, at_start: torch.Tensor, at_end: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Alg. 1 on a continuous ᾱ(t), given ᾱ(t₀) and ᾱ(1); clamped to [0, 1]."""
    first, last = at_start.sqrt(), at_end.sqrt()
    return (((alpha_bar.sqrt() - last) * first / (first - last)).clamp(min=0.0) ** 2).clamp(max=1.0)


@attrs.frozen
class ZeroTerminalSNR(ScheduleBase):
    """``base``, a continuous schedule, rescaled to pure noise at t = 1 (Lin et al. 2024, Alg. 1, t₀ = 0):
    √ᾱ'(t) = (√ᾱ(t) − √ᾱ(1))·√ᾱ(0)/(√ᾱ(0) − √ᾱ(1)).

    The schedule that ``zero_terminal_snr=True`` builds (:func:`with_zero_terminal_snr`); ``base`` is
    the registered schedule, with that option on, and is itself not rescaled. β and the inverse of ᾱ
    are closed form through the base's own; log-SNR, σ and ``discretize`` are
    :class:`~difftk.maths.schedules.ScheduleBase`'s, from the rescaled ᾱ.
    """

    base: Any

    def _ends(self) -> torch.Tensor:
        """ᾱ(0) and ᾱ(1) of the base, float64."""
        return self.base.alpha_bar(torch.tensor([0.0, 1.0], dtype=torch.float64))

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ'(t), same shape and dtype as ``t``."""
        ends = self._ends()
        return rescale_alpha_bar(self.base.alpha_bar(t.to(torch.float64)), ends[0], ends[1]).to(t.dtype)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β'(t) = β(t)·√ᾱ/(√ᾱ − √ᾱ(1)), since log ᾱ' = 2·log(√ᾱ − √ᾱ(1)) + const; infinite at t = 1."""
        t64 = t.to(torch.float64)
        root = self.base.alpha_bar(t64).sqrt()
        return (beta_of(self.base, t64) * root / (root - self._ends()[1].sqrt())).to(t.dtype)

    def time_of(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """The exact inverse, float64: √ᾱ = √ᾱ'·(√ᾱ(0) − √ᾱ(1))/√ᾱ(0) + √ᾱ(1), then the base's own inverse."""
        first, last = self._ends().sqrt()
        root = alpha_bar.detach().to(torch.float64).clamp(0.0, 1.0).sqrt() * (first - last) / first + last
        return time_of(self.base, root**2)


def with_zero_terminal_snr(schedule: Any) -> Any:
    """The schedule a registered schedule is built as: :class:`ZeroTerminalSNR` around a continuous
    schedule whose ``zero_terminal_snr`` option is on, else the schedule itself (a discrete schedule
    applies the option to its own β table)."""
    if isinstance(schedule, ContinuousSchedule) and schedule.zero_terminal_snr:
        return ZeroTerminalSNR(schedule)
    return schedule


def reaches_pure_noise(schedule: Any) -> bool:
    """Whether ᾱ(1) is below :data:`ALPHA_BAR_FLOOR` (zero terminal SNR, the flow path)."""
    end = schedule.alpha_bar(torch.ones(1, dtype=torch.float64))
    return bool(end[0] < ALPHA_BAR_FLOOR)


def for_sampling(schedule: Any) -> Any:
    """The schedule a sampler is given: ``schedule`` itself, or its :class:`TerminalFloor` when
    it reaches pure noise."""
    if isinstance(schedule, TerminalFloor) or not reaches_pure_noise(schedule):
        return schedule
    return TerminalFloor(schedule)


class TerminalFloor:
    """``base`` with ᾱ raised to at least :data:`ALPHA_BAR_FLOOR`; every other time unchanged.

    On the floor (only near t = 1) ᾱ is constant, so its rate β(t) is 0 there; elsewhere every
    quantity is the base schedule's own. ``time_of`` maps ᾱ ≤ floor to t = 1, where sampling starts.
    """

    def __init__(self, base: Any) -> None:
        self.base = base
        self.grid_size = getattr(base, "grid_size", None)

    def __repr__(self) -> str:
        return f"TerminalFloor({self.base!r})"

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.base.alpha_bar(t).clamp(min=ALPHA_BAR_FLOOR)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        raw = self.base.alpha_bar(t.to(torch.float64))
        rate = beta_of(self.base, t)
        return torch.where(raw.to(rate.device) > ALPHA_BAR_FLOOR, rate, torch.zeros_like(rate))

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return ScheduleBase.log_snr(self, t)  # type: ignore[arg-type]  (from the floored ᾱ)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return ScheduleBase.sigma(self, t)  # type: ignore[arg-type]

    def time_of(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        target = alpha_bar.to(torch.float64)
        inside = time_of(self.base, target.clamp(min=ALPHA_BAR_FLOOR))
        return torch.where(target <= ALPHA_BAR_FLOOR, torch.ones_like(inside), inside)

    def discretize(self, T: int) -> Any:
        disc = self.base.discretize(T)
        return Discretization.from_alphas_cumprod(np.maximum(disc.alphas_cumprod, ALPHA_BAR_FLOOR))
