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


def rescale_alphas_cumprod(alphas_cumprod: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, Alg. 1 on ᾱ_1..ᾱ_T (float64): √ᾱ shifted and scaled so that ᾱ_T becomes 0 and ᾱ_1 stays."""
    root = np.sqrt(np.asarray(alphas_cumprod, dtype=np.float64))
    first, last = root[0], root[-1]
    return ((root - last) * first / (first - last)) ** 2


def grid_size_of(schedule: Any) -> int | None:
    """T of a discrete schedule's native grid, ``None`` for a continuous schedule (the default of
    :attr:`ScheduleBase.grid_size`), for any object with the NoiseSchedule protocol."""
    return getattr(schedule, "grid_size", None)


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


def zero_terminal_snr_option() -> Any:
    """The ``zero_terminal_snr`` option every schedule has (Lin et al. 2024, Alg. 1)."""
    return option(False, help="rescale √ᾱ so that ᾱ(1) = 0, pure noise at t = 1 (Lin et al. 2024); pair it with "
                  "prediction v, flow or edm, since an ε-model cannot tell x₀ from pure noise")


@attrs.frozen
class DiscreteSchedule(ScheduleBase):
    """A schedule defined by the paper's β_1..β_T; subclasses implement :meth:`paper_betas`.

    ᾱ is exact on the grid t_i = i/T and log-linear in between; :meth:`discretize` with the
    native T returns the paper's β exactly, and with another K samples ᾱ on the grid i/K.
    With ``zero_terminal_snr`` the β are those of Lin et al. 2024, Alg. 1 (β_T = 1, ᾱ_T = 0);
    on the last interval, where log ᾱ would reach −∞, √ᾱ is interpolated linearly instead.
    """

    T: int = option(1000, help="number of diffusion steps of the discrete schedule", ge=2, le=1_000_000)
    zero_terminal_snr: bool = zero_terminal_snr_option()
    _betas: np.ndarray = attrs.field(init=False, eq=False, repr=False)
    _log_ab: torch.Tensor = attrs.field(init=False, eq=False, repr=False)
    _rate: torch.Tensor = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        betas = np.asarray(self.paper_betas(), dtype=np.float64)
        if betas.shape != (self.T,) or not np.all((betas[:-1] > 0) & (betas[:-1] < 1)) or not 0 < betas[-1] <= 1:
            raise ValueError(f"{type(self).__name__}.paper_betas() must return {self.T} values in (0, 1) (the last may be "
                             "1: pure noise at t = 1)")
        if self.zero_terminal_snr:
            betas = np.array(Discretization.from_alphas_cumprod(rescale_alphas_cumprod(np.cumprod(1.0 - betas))).betas)
            betas[-1] = 1.0  # exactly: ᾱ_T = 0
        with np.errstate(divide="ignore"):
            log_ab = np.concatenate([[0.0], np.cumsum(np.log1p(-betas))])
            rate = -np.log1p(-betas) * self.T
        object.__setattr__(self, "_betas", _readonly(betas))
        object.__setattr__(self, "_log_ab", torch.from_numpy(log_ab))
        object.__setattr__(self, "_rate", torch.from_numpy(rate))

    @property
    def grid_size(self) -> int:  # type: ignore[override]
        return self.T

    @property
    def terminal_zero(self) -> bool:
        """Whether ᾱ_T = 0 (pure noise at t = 1)."""
        return bool(self._betas[-1] == 1.0)

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
        if self.terminal_zero:  # last interval: √ᾱ linear from √ᾱ_{T−1} to 0
            last = x > self.T - 1
            w = torch.where(last, torch.zeros_like(w), w)
            inner = torch.exp(log_ab[i0] * (1 - w) + log_ab[torch.clamp(i0 + 1, max=self.T - 1)] * w)
            tail = torch.exp(log_ab[self.T - 1]) * (self.T - x) ** 2
            return torch.where(last, tail, inner).to(t.dtype)
        out = torch.exp(log_ab[i0] * (1 - w) + log_ab[i0 + 1] * w)
        return out.to(t.dtype)

    def time_of(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        """The exact inverse of ᾱ(t) (float64); outside [ᾱ(1), 1] the nearer end."""
        target64 = alpha_bar.detach().to(torch.float64)
        log_ab = self._log_ab.to(target64.device)
        if self.terminal_zero:
            inner = DiscreteSchedule._time_of_log_linear(log_ab[: self.T], target64.clamp(min=float(torch.exp(log_ab[self.T - 1]))))
            below = target64 < torch.exp(log_ab[self.T - 1])
            tail = (self.T - torch.sqrt(target64.clamp(min=0.0) / torch.exp(log_ab[self.T - 1]))) / self.T
            return torch.where(below, tail, inner * (self.T - 1) / self.T)
        return DiscreteSchedule._time_of_log_linear(log_ab, target64)

    @staticmethod
    def _time_of_log_linear(log_ab: torch.Tensor, target64: torch.Tensor) -> torch.Tensor:
        """t ∈ [0, 1] on the log-linear interpolation of the table log ᾱ_0..ᾱ_n (n intervals)."""
        n = len(log_ab) - 1
        target = torch.log(target64).clamp(float(log_ab[-1]), 0.0)
        i = torch.clamp(torch.searchsorted(-log_ab, -target, right=True) - 1, 0, n - 1)
        lo, hi = log_ab[i], log_ab[i + 1]
        return (i.to(torch.float64) + (lo - target) / (lo - hi)) / n

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = −T·log(1−β_i) on (t_{i−1}, t_i]: the exact rate of the log-linear ᾱ (and
        2T/(T − tT) on the last interval of a zero-terminal-SNR schedule, infinite at t = 1)."""
        x = self._position(t)
        i = torch.clamp(torch.ceil(x), 1, self.T).long()
        rate = self._rate.to(i.device)[i - 1]
        if self.terminal_zero:
            rate = torch.where(i == self.T, 2 * self.T / (self.T - x), rate)
        return rate.to(t.dtype)

    def discretize(self, T: int) -> Discretization:
        """The paper's β on T steps when T is the native grid; else ᾱ sampled on i/T."""
        if T == self.T:
            return Discretization.from_betas(self._betas)
        return ScheduleBase.discretize(self, T)


@attrs.frozen
class ContinuousSchedule(ScheduleBase):
    """A schedule given by a closed-form ᾱ(t); subclasses implement :meth:`alpha_bar`.

    ``zero_terminal_snr`` is applied by a wrapper, :class:`difftk.maths.terminal.ZeroTerminalSNR`,
    which building the schedule by name puts around it (``difftk.create``, ``compose``, a pipeline
    file: :meth:`difftk.components.registry.ComponentInfo.instantiate`; an instance given to ``compose``
    is wrapped there too). The instance itself keeps its own ᾱ: outside those, wrap it with
    ``ZeroTerminalSNR(schedule)``.
    """

    zero_terminal_snr: bool = zero_terminal_snr_option()


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
    with torch.inference_mode(False), torch.enable_grad():  # also inside a sampler's inference mode
        t64 = t.detach().to(torch.float64).clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.log(alpha_bar(t64)).sum(), t64)
    return (-grad).to(t.dtype)
