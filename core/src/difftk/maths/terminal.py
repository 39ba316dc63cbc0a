"""Schedules that reach pure noise: zero terminal SNR (Lin et al. 2024) and the floor samplers use.

Lin et al. 2024 (Alg. 1) shift and scale √ᾱ so that ᾱ(1) = 0 while ᾱ at the first step is kept:

    √ᾱ'(t) = (√ᾱ(t) − √ᾱ(1)) · √ᾱ(t₀) / (√ᾱ(t₀) − √ᾱ(1)),

with t₀ the first grid point 1/T of a discrete schedule (their algorithm, on ᾱ_1..ᾱ_T) and
t₀ = 0 for a continuous one. The flow path ᾱ = (1−t)²/((1−t)² + t²) reaches 0 too.

A model trained on such a schedule sees pure noise at t = 1, which is what sampling starts
from. Its SNR and log-SNR are 0 and −∞ there, and σ_EDM = √((1−ᾱ)/ᾱ) is infinite, so the
samplers' step formulas would divide by zero. :class:`TerminalFloor` is the view samplers are
given instead (:func:`for_sampling`): ᾱ is raised to at least :data:`ALPHA_BAR_FLOOR` = 2⁻²⁴,
σ_EDM = 4096 (diffusers' DPM-Solver and Euler schedulers raise their last ᾱ to the same value).
The denoiser is still asked at t = 1, the time it was trained at.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: The least ᾱ a sampler computes with: SNR 6.0e-8, σ_EDM = 4096
ALPHA_BAR_FLOOR = 2.0**-24


def rescale_alphas_cumprod(alphas_cumprod: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, Alg. 1 on ᾱ_1..ᾱ_T (float64): ᾱ_T becomes 0, ᾱ_1 stays."""
    root = np.sqrt(np.asarray(alphas_cumprod, dtype=np.float64))
    first, last = root[0], root[-1]
    return ((root - last) * first / (first - last)) ** 2


def rescale_alpha_bar(alpha_bar: torch.Tensor, at_start: torch.Tensor, at_end: torch.Tensor) -> torch.Tensor:
    """The same rescaling on a continuous ᾱ(t), given ᾱ(t₀) and ᾱ(1); clamped to [0, 1]."""
    first, last = at_start.sqrt(), at_end.sqrt()
    return (((alpha_bar.sqrt() - last) * first / (first - last)).clamp(min=0.0) ** 2).clamp(max=1.0)


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


def rescaled_method(name: str, own: Any) -> Any:
    """A continuous schedule's method ``name``: ``own`` when ``zero_terminal_snr`` is off; with it
    on, ᾱ rescaled (:func:`rescale_alpha_bar`), β in closed form from the schedule's own β, and
    for the other methods the generic ``ScheduleBase`` version, which reads the rescaled ᾱ."""

    def method(self: Any, arg: Any) -> Any:
        from difftk.maths.schedules import ScheduleBase

        if not getattr(self, "zero_terminal_snr", False):
            return own(self, arg)
        if name not in ("alpha_bar", "beta"):
            return getattr(ScheduleBase, name)(self, arg)
        ends = _raw(self, "alpha_bar")(torch.tensor([0.0, 1.0], dtype=torch.float64))
        if name == "beta":  # log ᾱ' = 2 log(√ᾱ − √ᾱ(1)) + const, so β' = β·√ᾱ/(√ᾱ − √ᾱ(1))
            root = _raw(self, "alpha_bar")(arg.to(torch.float64)).sqrt()
            rate = _raw(self, "beta")(arg.to(torch.float64))
            return (rate * root / (root - ends[1].sqrt())).to(arg.dtype)
        return rescale_alpha_bar(own(self, arg.to(torch.float64)), ends[0], ends[1]).to(arg.dtype)

    method.__name__, method.__qualname__, method.__doc__ = own.__name__, own.__qualname__, own.__doc__
    method._rescaled, method._own = True, own  # type: ignore[attr-defined]
    return method


def _raw(schedule: Any, name: str) -> Any:
    """The schedule's own (not rescaled) ``name`` method, bound; ScheduleBase's when it has none."""
    for cls in type(schedule).__mro__:
        found = cls.__dict__.get(name)
        if found is not None:
            return getattr(found, "_own", found).__get__(schedule)
    raise AttributeError(name)


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
        from difftk.maths.schedules import beta_of

        raw = self.base.alpha_bar(t.to(torch.float64))
        rate = beta_of(self.base, t)
        return torch.where(raw.to(rate.device) > ALPHA_BAR_FLOOR, rate, torch.zeros_like(rate))

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        from difftk.maths.schedules import ScheduleBase

        return ScheduleBase.log_snr(self, t)  # type: ignore[arg-type]  (from the floored ᾱ)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        from difftk.maths.schedules import ScheduleBase

        return ScheduleBase.sigma(self, t)  # type: ignore[arg-type]

    def time_of(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        from difftk.maths.schedules import time_of

        target = alpha_bar.to(torch.float64)
        inside = time_of(self.base, target.clamp(min=ALPHA_BAR_FLOOR))
        return torch.where(target <= ALPHA_BAR_FLOOR, torch.ones_like(inside), inside)

    def discretize(self, T: int) -> Any:
        from difftk.maths.schedules import Discretization

        disc = self.base.discretize(T)
        return Discretization.from_alphas_cumprod(np.maximum(disc.alphas_cumprod, ALPHA_BAR_FLOOR))
