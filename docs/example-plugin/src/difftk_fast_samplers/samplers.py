"""Two second-order solvers of the probability-flow ODE, on any difftk schedule.

Both walk the decreasing grid t_0 = 1 > t_1 > … > t_K = 0 of ``difftk.maths.schedules.time_grid`` and
ask the denoiser for x̂₀ (``difftk.sampling.steps.predict``), so they work with ε-, x₀- or v-networks,
guidance wrappers and every registered schedule. Notation of the papers: α_t = √ᾱ(t),
σ_t = √(1 − ᾱ(t)), λ_t = log(α_t/σ_t) (DPM-Solver); σ = σ_t/α_t, x̃ = x/α_t (EDM).
"""

from __future__ import annotations

import math

import attrs
import numpy as np
from difftk.maths.schedules import SPACINGS, alpha_bar_table, time_grid
from difftk.options import option
from difftk.sampling.steps import StepInfo, batch_times, predict

#: the step spacings these samplers offer: difftk's, and uniform in log-SNR (DPM-Solver's "logSNR")
GRID_SPACINGS = (*SPACINGS, "logsnr")
#: times a continuous schedule's log-SNR grid is snapped to
_FINE = 100_000


def logsnr_times(schedule, steps: int) -> np.ndarray:
    """Decreasing times whose λ(t) = ½·log(ᾱ/(1−ᾱ)) is as evenly spaced as the schedule allows, from
    t = 1 to the first grid time (Lu et al. 2022, §3.3, "logSNR" steps); each is snapped to the nearest
    grid time of a discrete schedule (repeats dropped), or to a 1/100,000 grid for a continuous one."""
    T = getattr(schedule, "grid_size", None) or _FINE
    candidates = np.arange(1, T + 1, dtype=np.float64) / T
    ab = alpha_bar_table(schedule, candidates)
    lam = 0.5 * (np.log(ab) - np.log1p(-ab))
    target = np.linspace(lam[-1], lam[0], steps)
    index = np.searchsorted(-lam, -target).clip(1, T - 1)  # λ decreases in t: neighbours of each target
    nearer = np.where(np.abs(lam[index - 1] - target) <= np.abs(lam[index] - target), index - 1, index)
    return candidates[np.unique(nearer)][::-1]


def _grid(schedule, steps: int | None, spacing: str) -> tuple[np.ndarray, np.ndarray]:
    """t_0 > … > t_{K−1} > t_K = 0 and ᾱ there."""
    if spacing == "logsnr":
        K = steps if steps is not None else (getattr(schedule, "grid_size", None) or 1000)
        times = logsnr_times(schedule, max(int(K), 1)) if K > 1 else np.array([1.0])
    else:
        times = time_grid(schedule, steps, spacing)
    times = np.append(times, 0.0)
    return times, alpha_bar_table(schedule, times)


@attrs.frozen
class DPMSolverPP2M:
    """DPM-Solver++(2M): multistep second-order data-prediction solver (Lu et al. 2022, Algorithm 2).

    x_{t_i} = (σ_{t_i}/σ_{t_{i−1}})·x − α_{t_i}(e^{−h_i} − 1)·D_i, h_i = λ_{t_i} − λ_{t_{i−1}}, with
    D_i = (1 + 1/(2r_i))·x̂₀(t_{i−1}) − 1/(2r_i)·x̂₀(t_{i−2}), r_i = h_{i−1}/h_i; the first step is
    first order (D = x̂₀, which is DDIM) and the last, to t = 0, returns x̂₀. One model call per step;
    steps evenly spaced in log-SNR by default, as the paper recommends.
    """

    spacing: str = option("logsnr", help="which times the steps visit: evenly in log-SNR, or a difftk grid spacing",
                          choices=GRID_SPACINGS)
    clip_x0: float | None = option(None, help="clamp x̂₀ to ±clip_x0 (1.0 for data in [−1, 1]); none = off", gt=0.0, optional=True)

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        times, ab = _grid(schedule, steps, self.spacing)
        alpha, sigma = np.sqrt(ab), np.sqrt(1.0 - ab)
        lam = np.log(alpha) - np.log(np.where(sigma > 0, sigma, np.nan))  # λ(0) = +∞, never used in a difference
        t_batch = batch_times(times[:-1], x_T)
        K = len(times) - 1
        x, x0_prev, h_prev = x_T, None, None
        for i in range(K):
            x0 = predict(denoiser, x, t_batch[i], float(ab[i]), cond, self.clip_x0).x0
            if sigma[i + 1] == 0.0:
                x = x0  # the last step lands on the data
            else:
                h = float(lam[i + 1] - lam[i])
                D = x0
                if x0_prev is not None:
                    r = h_prev / h
                    D = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
                x = float(sigma[i + 1] / sigma[i]) * x - float(alpha[i + 1] * math.expm1(-h)) * D
                h_prev = h
            x0_prev = x0
            if callback is not None:
                callback(StepInfo(index=i, total=K, t=float(times[i]), t_next=float(times[i + 1]), x=x, x0=x0))
        return x


@attrs.frozen
class EDMHeun:
    """Deterministic Heun sampler of EDM (Karras et al. 2022, Algorithm 1, S_churn = 0).

    In x̃ = x/α_t and σ = σ_t/α_t the ODE is dx̃/dσ = (x̃ − D(x̃; σ))/σ with D = x̂₀. Each step
    takes an Euler step, then corrects it with the slope at its end (2nd order); the last step,
    to σ = 0, is Euler. VP schedules reach σ far above EDM's σ_max = 80 at t = 1 (2·10⁴ for
    cosine): a step starting above ``sigma_max`` stays an Euler step — there D ≈ E[x₀] is
    constant, which makes Euler exact, while the trapezoid over σ spanning orders of magnitude is
    not. At most 2K − 1 model calls for K steps.
    """

    spacing: str = option("linspace", help="which times the steps visit: a difftk grid spacing, or evenly in log-SNR",
                          choices=GRID_SPACINGS)
    clip_x0: float | None = option(None, help="clamp x̂₀ to ±clip_x0 (1.0 for data in [−1, 1]); none = off", gt=0.0, optional=True)
    sigma_max: float = option(80.0, help="2nd-order corrections only on steps starting at σ ≤ this (EDM's σ_max)", gt=0.0)

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        times, ab = _grid(schedule, steps, self.spacing)
        alpha = np.sqrt(ab)
        sig = np.sqrt(1.0 - ab) / alpha  # σ(t) of EDM; 0 at t = 0
        t_batch = batch_times(times[:-1], x_T)
        K = len(times) - 1

        def D(x_tilde, i):  # x̂₀ from x̃ at grid time i
            return predict(denoiser, float(alpha[i]) * x_tilde, t_batch[i], float(ab[i]), cond, self.clip_x0).x0

        x = x_T / float(alpha[0])
        for i in range(K):
            x0 = D(x, i)
            d = (x - x0) / float(sig[i])
            x_next = x + float(sig[i + 1] - sig[i]) * d  # Euler step
            if sig[i + 1] > 0 and sig[i] <= self.sigma_max:
                d_prime = (x_next - D(x_next, i + 1)) / float(sig[i + 1])
                x_next = x + float(sig[i + 1] - sig[i]) * (0.5 * d + 0.5 * d_prime)  # Apply 2nd order correction.
            x = x_next
            if callback is not None:
                callback(StepInfo(index=i, total=K, t=float(times[i]), t_next=float(times[i + 1]),
                                  x=x * float(alpha[i + 1]), x0=x0))
        return x * float(alpha[-1])
