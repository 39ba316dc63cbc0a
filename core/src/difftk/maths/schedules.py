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
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch

from difftk.errors import OptionError
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


def step_count(schedule: object, steps: int | None, default: int | None = None) -> int:
    """How many steps a sampler takes: ``steps``, else its ``default`` (at most the schedule's T),
    else T (1000 on a continuous schedule). The one place this rule is written: at least one
    step, and on a discrete schedule of T steps at most T (there are no times between its grid
    points that it was trained on)."""
    T = getattr(schedule, "grid_size", None)
    K = int(steps if steps is not None else min(default or T or 1000, T or 1_000_000))
    if K < 1:
        raise OptionError(f"steps={K}: a sampler needs at least 1 step")
    if T is not None and K > T:
        raise OptionError(f"steps={K} is more than the model's schedule has (T={T}): use steps=1..{T}")
    return K


def time_grid(schedule: object, steps: int | None, spacing: str = "linspace", default: int | None = None,
              times: Sequence[float] | None = None) -> np.ndarray:
    """The decreasing times t_K > … > t_1 a sampler visits, in float64.

    K is ``steps``; without it the sampler's ``default`` (at most the schedule's T), else T
    (1000 on a continuous schedule). ``times`` gives the grid explicitly (then ``steps`` must be
    ``None`` or its length), used exactly as given.

    On a discrete schedule of T steps the times are grid points i/T, chosen by ``spacing``:

    ``linspace``  i = round(linspace(T, 1, K)) — evenly spread from t = 1, the first grid step
                  included when K > 1;
    ``leading``   i = 1 + k·⌊T/K⌋, k = 0..K−1 — the DDIM paper's spacing;
    ``trailing``  i = round(T − k·T/K), k = 0..K−1 — always starts at t = 1.

    On a continuous schedule t_k = k/K for those three. ``karras`` spaces the noise levels
    σ = √((1−ᾱ)/ᾱ) with ρ = 7 between σ(1) and σ_min (Karras et al. 2022, eq. 5) and maps them
    back to times through the schedule's inverse of ᾱ; σ_min is σ(1/T) on a discrete schedule
    (its least trained noise) and 0.002 (their Table 1) on a continuous one. ``logsnr`` spaces
    λ = log(α/σ) = −log σ evenly between the same two ends (DPM-Solver's "logSNR" steps, Lu et al.
    2022; the limit ρ → ∞ of karras): exactly, through the inverse of ᾱ, on a continuous
    schedule, and snapped to distinct grid points on a discrete one (:func:`logsnr_times`). The step taken from
    t_k always goes to the *next element of this grid* (t_0 = 0 after the last), never to a
    time computed by another formula.
    """
    if times is not None:
        return explicit_times(times, steps)
    T = getattr(schedule, "grid_size", None)
    K = step_count(schedule, steps, default)
    if spacing == "karras":
        return _karras_times(schedule, K, T)
    if spacing == "logsnr":
        return logsnr_times(schedule, K, T)
    if spacing not in SPACINGS:
        raise OptionError(f"unknown spacing {spacing!r}; expected {', '.join(SPACINGS)}")
    if T is None:
        return np.arange(K, 0, -1, dtype=np.float64) / K
    if spacing == "linspace":
        idx = np.round(np.linspace(T, 1, K)).astype(np.int64)
    elif spacing == "leading":
        idx = 1 + np.arange(K, dtype=np.int64) * (T // K)
    else:  # trailing
        idx = np.round(T - np.arange(K) * (T / K)).astype(np.int64)
    return np.sort(idx)[::-1].astype(np.float64) / T  # K ≤ T keeps the K indices distinct


SPACINGS: tuple[str, ...] = ("linspace", "leading", "trailing", "karras", "logsnr")
#: ρ of Karras et al. 2022, eq. 5, and their σ_min for a continuous schedule (Table 1)
KARRAS_RHO, KARRAS_SIGMA_MIN = 7.0, 0.002


def karras_sigmas(sigma_min: float, sigma_max: float, K: int, rho: float = KARRAS_RHO) -> np.ndarray:
    """σ_i = (σ_max^{1/ρ} + i/(K−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0..K−1 (Karras et al. 2022,
    eq. 5, without the final σ = 0), decreasing from σ_max to σ_min; [σ_max] for K = 1."""
    if K == 1:
        return np.array([sigma_max], dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, K, dtype=np.float64)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def _karras_times(schedule: object, K: int, T: int | None) -> np.ndarray:
    ends = alpha_bar_table(schedule, np.array([1.0, 1.0 / T if T else 0.0]))
    sigma_max = float(np.sqrt((1 - ends[0]) / ends[0]))
    sigma_min = float(np.sqrt((1 - ends[1]) / ends[1])) if T else KARRAS_SIGMA_MIN
    if not np.isfinite(sigma_max):
        raise OptionError("spacing='karras' needs a finite σ(1) = √((1−ᾱ(1))/ᾱ(1)); this schedule reaches pure noise "
                          "(ᾱ(1) = 0): use linspace or trailing")
    sigmas = karras_sigmas(sigma_min, sigma_max, K)
    times = time_of(schedule, torch.from_numpy(1.0 / (1.0 + sigmas**2))).numpy().astype(np.float64)
    times[0] = 1.0
    if np.any(np.diff(times) >= 0):
        raise OptionError(f"spacing='karras' with steps={K} gives repeated times on this schedule: use fewer steps")
    return times


def logsnr_times(schedule: object, K: int, T: int | None) -> np.ndarray:
    """K times from t = 1 with λ = log(α/σ) evenly spaced up to λ(1/T) (discrete) or −log σ_min (continuous,
    σ_min = 0.002 as for karras): Lu et al. 2022, §3.3, steps uniform in logSNR. Continuous: exact, through
    the inverse of ᾱ. Discrete: each λ_k snapped to the grid point of nearest λ; where two snap to one
    point the later moves to the next free point towards t = 1, so the K ≤ T points are distinct and
    include t = 1 and t = 1/T."""
    if K == 1:
        return np.array([1.0])
    if T is None:  # log_snr is 2λ: evenly spaced in one is evenly spaced in the other
        top, end = float(log_snr(schedule, torch.ones(1, dtype=torch.float64))[0]), -2.0 * np.log(KARRAS_SIGMA_MIN)
        if not -np.inf < top < end:
            raise OptionError(f"spacing='logsnr' needs ᾱ(1) > 0 and σ(1) above {KARRAS_SIGMA_MIN}: use linspace or trailing")
        lam = np.linspace(top, end, K)
        times = time_of(schedule, torch.from_numpy(1.0 / (1.0 + np.exp(-lam)))).numpy().astype(np.float64)
        times[0] = 1.0
        if np.any(np.diff(times) >= 0):
            raise OptionError(f"spacing='logsnr' with steps={K} gives repeated times on this schedule: use fewer steps")
        return times
    lam = log_snr(schedule, torch.arange(1, T + 1, dtype=torch.float64) / T).numpy()  # decreasing in i = 1..T
    if not np.isfinite(lam[-1]):
        raise OptionError("spacing='logsnr' needs ᾱ(1) > 0; this schedule reaches pure noise: use linspace or trailing")
    target = np.linspace(lam[0], lam[-1], K)
    j = np.clip(np.searchsorted(-lam, -target), 1, T - 1)  # lam[j−1] ≥ target ≥ lam[j]
    idx = np.where(lam[j - 1] - target <= target - lam[j], j, j + 1)  # grid numbers i, non-decreasing in k
    idx = np.minimum(idx, T - K + 1 + np.arange(K))  # room for the points still to come
    for n in range(1, K):
        idx[n] = max(idx[n], idx[n - 1] + 1)
    return idx[::-1].astype(np.float64) / T


def explicit_times(times: Sequence[float], steps: int | None = None) -> np.ndarray:
    """A grid given as times t_K > … > t_1 in (0, 1], checked: strictly decreasing (no repeated
    or zero-length step) and, when ``steps`` is given, exactly that many."""
    grid = np.asarray(list(times), dtype=np.float64)
    said = "times=[" + ", ".join(f"{v:g}" for v in grid[:6]) + (", …" if len(grid) > 6 else "") + "]"
    if grid.ndim != 1 or grid.size == 0:
        raise OptionError(f"{said} must list at least one time")
    if not np.all(np.isfinite(grid)) or grid.min() <= 0.0 or grid.max() > 1.0:
        raise OptionError(f"{said}: every time must lie in (0, 1] (t = 0 is data; the last step goes there)")
    if np.any(np.diff(grid) >= 0):
        raise OptionError(f"{said} must be strictly decreasing: each step goes from one time to the next")
    if steps is not None and steps != grid.size:
        raise OptionError(f"steps={steps} but {said} lists {grid.size} times: give one or the other")
    return grid


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
