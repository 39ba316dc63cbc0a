"""The step grids every sampler walks: how many steps (:func:`step_count`), which times
(:func:`time_grid`: linspace, leading, trailing, karras, logsnr, or explicit times), and where
every sampler ends (:func:`with_end`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from difftk.errors import OptionError
from difftk.maths.schedules import alpha_bar_table, grid_size_of, log_snr, time_of


def step_count(schedule: object, steps: int | None, default: int | None = None) -> int:
    """How many steps a sampler takes: ``steps``, else its ``default`` (at most the schedule's T),
    else T (1000 on a continuous schedule). The one place this rule is written: at least one
    step, and on a discrete schedule of T steps at most T (there are no times between its grid
    points that it was trained on)."""
    T = grid_size_of(schedule)
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
    T = grid_size_of(schedule)
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

#: σ(1) above which a schedule counts as reaching pure noise for :func:`logsnr_unless_pure_noise`: linear's 157,
#: vp's 152 and edm's 80 are below; cosine's and flow's (ᾱ(1) floored at 2⁻²⁴ for sampling: σ = 4096) above
PURE_NOISE_SIGMA = 1e3


def logsnr_unless_pure_noise(schedule: object, otherwise: str) -> str:
    """The high-order solvers' default grid (docs/fast_sampling.md): ``logsnr``, unless the schedule's
    σ(1) = √((1−ᾱ(1))/ᾱ(1)) exceeds :data:`PURE_NOISE_SIGMA`; then ``otherwise``. Near pure noise an even
    log-SNR grid spends its first steps where x̂₀ is still the data mean (cosine, 10 steps: t = 1, 0.999,
    0.997, 0.987, 0.941, …); the measurements that chose this rule are in docs/fast_sampling.md."""
    ab = float(alpha_bar_table(schedule, np.array([1.0]))[0])
    return otherwise if ab <= 0.0 or (1.0 - ab) / ab > PURE_NOISE_SIGMA**2 else "logsnr"


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


#: ᾱ where every sampler ends: σ = 0, the data itself (:func:`with_end`)
END_ALPHA_BAR = 1.0


def with_end(schedule: object, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The visited times t_K > … > t_1 followed by the end, and ᾱ at each (float64): the end rule.

    Every sampler ends at σ = 0, ᾱ = 1: it returns a sample of the data x₀, in the data frame
    (where the VP state x_t = √ᾱ·x₀ + √(1−ᾱ)·ε and EDM's x = x₀ + σ·n are the same point). The end
    is labelled t = 0, and ᾱ there is 1 whatever the schedule's ᾱ(0): on most schedules ᾱ(0) = 1
    already; on ``edm``, whose t = 0 is σ_min = 0.002, the last step goes on from σ(t_1) to σ = 0,
    as EDM's own grid ends with σ_N = 0 (Karras et al. 2022, eq. 5). No denoiser is asked at the
    end, so a first-order update from t_1 lands exactly on x̂₀ there.
    """
    times = np.append(np.asarray(grid, dtype=np.float64), 0.0)
    alpha_bars = alpha_bar_table(schedule, times)
    alpha_bars[-1] = END_ALPHA_BAR
    return times, alpha_bars


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
