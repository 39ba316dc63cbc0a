"""Base classes for noise schedules, and the discrete view every schedule has.

A schedule is a function ᾱ(t) on continuous time t ∈ [0, 1] (t=0 data, t=1 noise). A
*discrete* schedule of T steps is defined by the paper's β_1..β_T: on the grid t_i = i/T it
reproduces ᾱ_i = ∏_{j≤i}(1−β_j) exactly (float64), and between grid points log ᾱ is
interpolated linearly. Its continuous rate β(t) = −d log ᾱ/dt is then piecewise constant,
T·(−log(1−β_i)) on (t_{i−1}, t_i], which is the VP-SDE drift of the same model
(Song et al. 2021, eq. 11) — so discrete and continuous samplers can share one model.
"""

from __future__ import annotations

import abc
from typing import Any

import attrs
import numpy as np
import torch

from difftk.options import option


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@attrs.frozen
class Discretization:
    """A schedule on T steps: β_i and ᾱ_i for i = 1..T (float64 NumPy arrays, read-only)."""

    betas: np.ndarray = attrs.field(converter=_readonly, eq=False)
    alphas_cumprod: np.ndarray = attrs.field(converter=_readonly, eq=False)

    @classmethod
    def from_betas(cls, betas: np.ndarray) -> Discretization:
        """ᾱ_i = ∏_{j≤i} (1 − β_j) (Ho et al. 2020, §2)."""
        betas = np.asarray(betas, dtype=np.float64)
        return cls(betas=betas, alphas_cumprod=np.cumprod(1.0 - betas))

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: np.ndarray) -> Discretization:
        """β_i = 1 − ᾱ_i/ᾱ_{i−1}, with ᾱ_0 = 1 (the respacing rule of Nichol & Dhariwal 2021)."""
        ab = np.asarray(alphas_cumprod, dtype=np.float64)
        prev = np.concatenate([[1.0], ab[:-1]])
        return cls(betas=1.0 - ab / prev, alphas_cumprod=ab)

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> np.ndarray:
        return 1.0 - self.betas

    @property
    def alphas_cumprod_prev(self) -> np.ndarray:
        """ᾱ_{i−1}, with ᾱ_0 = 1."""
        return np.concatenate([[1.0], self.alphas_cumprod[:-1]])

    @property
    def times(self) -> np.ndarray:
        """The grid t_i = i/T, i = 1..T."""
        return np.arange(1, self.T + 1, dtype=np.float64) / self.T

    @property
    def posterior_variance(self) -> np.ndarray:
        """β̃_i = (1−ᾱ_{i−1})/(1−ᾱ_i)·β_i (Ho et al. 2020, eq. 7)."""
        return (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod) * self.betas

    @property
    def posterior_log_variance_clipped(self) -> np.ndarray:
        """log β̃_i with β̃_1 (which is 0) replaced by β̃_2, as in the improved-DDPM reference."""
        var = self.posterior_variance
        return np.log(np.concatenate([var[1:2], var[1:]]))


class ScheduleBase(abc.ABC):
    """Helpers every schedule gets: the continuous rate β(t), log-SNR, σ(t), and a generic
    :meth:`discretize` that samples ᾱ on the grid i/K."""

    #: Native number of steps of a discrete schedule; ``None`` for continuous ones.
    grid_size: int | None = None

    @abc.abstractmethod
    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ(t) for t in [0, 1], same shape and dtype as ``t``."""

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = −d log ᾱ(t)/dt, by automatic differentiation in float64."""
        return _beta_by_autograd(self.alpha_bar, t)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ(t) = log(ᾱ/(1−ᾱ))."""
        ab = self.alpha_bar(t.to(torch.float64))
        return (torch.log(ab) - torch.log1p(-ab)).to(t.dtype)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """√(1−ᾱ(t)), the noise level."""
        return torch.sqrt(1 - self.alpha_bar(t.to(torch.float64))).to(t.dtype)

    def time_of(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """The inverse of ᾱ(t): the t ∈ [0, 1] with ᾱ(t) = ``alpha_bar`` (float64, by bisection).

        ᾱ is decreasing, so 60 halvings of [0, 1] pin t to 1e-18; values outside [ᾱ(1), 1]
        map to the nearer end. Subclasses with a closed-form inverse override this.
        """
        target = alpha_bar.detach().to(torch.float64)
        lo, hi = torch.zeros_like(target), torch.ones_like(target)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self.alpha_bar(mid) > target  # still too little noise: t lies to the right
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def discretize(self, T: int) -> Discretization:
        """ᾱ sampled on the grid i/T in float64, β from consecutive ratios."""
        t = torch.arange(1, T + 1, dtype=torch.float64) / T
        return Discretization.from_alphas_cumprod(self.alpha_bar(t).numpy())


@attrs.frozen
class DiscreteSchedule(ScheduleBase):
    """A schedule defined by the paper's β_1..β_T; subclasses implement :meth:`paper_betas`.

    ᾱ is exact on the grid t_i = i/T and log-linear in between; :meth:`discretize` with the
    native T returns the paper's β exactly, and with another K samples ᾱ on the grid i/K.
    """

    T: int = option(1000, help="number of diffusion steps of the discrete schedule", ge=2, le=1_000_000)
    _log_ab: torch.Tensor = attrs.field(init=False, eq=False, repr=False)
    _rate: torch.Tensor = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        betas = np.asarray(self.paper_betas(), dtype=np.float64)
        if betas.shape != (self.T,) or not np.all((betas > 0) & (betas < 1)):
            raise ValueError(f"{type(self).__name__}.paper_betas() must return {self.T} values in (0, 1)")
        log_ab = np.concatenate([[0.0], np.cumsum(np.log1p(-betas))])
        object.__setattr__(self, "_log_ab", torch.from_numpy(log_ab))
        object.__setattr__(self, "_rate", torch.from_numpy(-np.log1p(-betas) * self.T))

    @property
    def grid_size(self) -> int:  # type: ignore[override]
        return self.T

    @abc.abstractmethod
    def paper_betas(self) -> np.ndarray:
        """β_1..β_T in float64, exactly as the paper defines them for this T."""

    def _position(self, t: torch.Tensor) -> torch.Tensor:
        """t·T in float64, snapped onto the grid when t is a grid point up to its precision."""
        x = t.detach().to(torch.float64).clamp(0.0, 1.0) * self.T
        tol = 1e-9 if t.dtype == torch.float64 else 1e-4
        r = torch.round(x)
        return torch.where((x - r).abs() < tol * max(1.0, self.T / 1000), r, x)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ(t): exact on t = i/T, log-linear in between; same shape and dtype as ``t``."""
        x = self._position(t)
        log_ab = self._log_ab.to(x.device)
        i0 = torch.clamp(torch.floor(x), max=self.T - 1).long()
        w = x - i0
        out = torch.exp(log_ab[i0] * (1 - w) + log_ab[i0 + 1] * w)
        return out.to(t.dtype)

    def time_of(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """The exact inverse of the log-linear ᾱ(t) (float64); outside [ᾱ(1), 1] the nearer end."""
        target = torch.log(alpha_bar.detach().to(torch.float64)).clamp(float(self._log_ab[-1]), 0.0)
        neg = (-self._log_ab).to(target.device)  # increasing in i
        i = torch.clamp(torch.searchsorted(neg, -target, right=True) - 1, 0, self.T - 1)
        lo, hi = self._log_ab.to(target.device)[i], self._log_ab.to(target.device)[i + 1]
        return (i.to(torch.float64) + (lo - target) / (lo - hi)) / self.T

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = −T·log(1−β_i) on (t_{i−1}, t_i]: the exact rate of the log-linear ᾱ."""
        i = torch.clamp(torch.ceil(self._position(t)), 1, self.T).long()
        return self._rate.to(i.device)[i - 1].to(t.dtype)

    def discretize(self, T: int) -> Discretization:
        """The paper's β on T steps when T is the native grid; else ᾱ sampled on i/T."""
        if T == self.T:
            return Discretization.from_betas(self.paper_betas())
        return ScheduleBase.discretize(self, T)


@attrs.frozen
class ContinuousSchedule(ScheduleBase):
    """A schedule given by a closed-form ᾱ(t); subclasses implement :meth:`alpha_bar`."""
















def alpha_bar_table(schedule: object, times: np.ndarray) -> np.ndarray:
    """ᾱ at the given times in float64 (NumPy), through the schedule's own ``alpha_bar``."""
    return schedule.alpha_bar(torch.from_numpy(np.ascontiguousarray(times, dtype=np.float64))).numpy()


def time_of(schedule: object, alpha_bar: torch.Tensor) -> torch.Tensor:
    """t with ᾱ(t) = ``alpha_bar``, float64: the schedule's own inverse (every
    :class:`ScheduleBase` has one), else bisection on its ``alpha_bar``."""
    inverse = getattr(schedule, "time_of", None)
    if callable(inverse):
        return inverse(alpha_bar)
    return ScheduleBase.time_of(schedule, alpha_bar)  # type: ignore[arg-type]


def beta_of(schedule: object, t: torch.Tensor) -> torch.Tensor:
    """β(t) = −d log ᾱ(t)/dt of any schedule (Song et al. 2021, eq. 11: the VP-SDE rate).

    Uses the schedule's own ``beta(t)`` when it has one (every :class:`ScheduleBase` does, in
    closed form or piecewise constant for a discrete schedule); for a third-party schedule that
    only defines ``alpha_bar`` it differentiates log ᾱ by autograd in float64. Same shape and
    dtype as ``t``.
    """
    beta = getattr(schedule, "beta", None)
    if callable(beta):
        return beta(t)
    return _beta_by_autograd(schedule.alpha_bar, t)


def log_snr(schedule: object, t: torch.Tensor) -> torch.Tensor:
    """λ(t) = log(ᾱ/(1−ᾱ)) of any schedule: its own ``log_snr`` (every :class:`ScheduleBase` has
    one), else computed from its ``alpha_bar`` in float64. Same shape and dtype as ``t``."""
    own = getattr(schedule, "log_snr", None)
    if callable(own):
        return own(t)
    return ScheduleBase.log_snr(schedule, t)  # type: ignore[arg-type]


def _beta_by_autograd(alpha_bar: Any, t: torch.Tensor) -> torch.Tensor:
    """−d log ᾱ/dt at ``t`` by autograd in float64, returned in ``t``'s dtype."""
    with torch.enable_grad():
        t64 = t.detach().to(torch.float64).requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.log(alpha_bar(t64)).sum(), t64)
    return (-grad).to(t.dtype)
