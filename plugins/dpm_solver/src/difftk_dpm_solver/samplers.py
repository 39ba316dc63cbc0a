"""DPM-Solver++ multistep samplers (Lu et al. 2022, NeurIPS: DPM-Solver; Lu et al. 2022b: DPM-Solver++).

Notation of the papers: α_t = √ᾱ(t), σ_t = √(1−ᾱ(t)), λ_t = log(α_t/σ_t) (half the log-SNR), and
x_θ(x, t) the data prediction x̂₀. A step goes from the grid time s to the next, t < s, and
h = λ_t − λ_s > 0. The probability-flow ODE has the exact solution (Lu et al. 2022, Prop. 3.1,
written for x_θ in Lu et al. 2022b)

    x_t = (σ_t/σ_s)·x_s + σ_t·∫_{λ_s}^{λ_t} e^λ·x_θ(x_λ, λ) dλ,

so the linear part is solved exactly and only x_θ is approximated: by its Taylor expansion in λ
about λ_s, D0 = x_θ(s), D1 ≈ h·dx_θ/dλ, D2 ≈ h²·d²x_θ/dλ², the derivatives taken by finite
differences of the x̂₀ of previous steps (multistep: one denoiser call per step). For n = 0, 1, 2,
σ_t·∫ e^λ·(λ − λ_s)^n/n! dλ is −α_t·φ1, α_t·h·φ2 and −α_t·h²·φ3, with

    φ1 = e^{−h} − 1,   φ2 = φ1/h + 1,   φ3 = φ2/h − ½.

Each sampler walks the core's grid t_K > … > t_1 (:meth:`GridSampler.time_grid`) and returns x̂₀
at t_1 as its last step, to t = 0 ("denoise to zero"): the limit σ_t → 0 (h → ∞) of every
order's update is x_t = x_θ(x_s, s), and no formula of higher order exists there. K steps are
K denoiser calls.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.maths.grids import SPACINGS, logsnr_unless_pure_noise, time_grid, with_end
from difftk.maths.schedules import log_snr
from difftk.options import option
from difftk.sampling.steps import GridSampler, StepInfo, batch_times, noise_like, predict

THIRD_ORDER = ("taylor", "reference")


def first_difference(m: Sequence[torch.Tensor], h: Sequence[float]) -> torch.Tensor:
    """D1 = (m0 − m1)/r0 with r0 = h0/h: h·dx_θ/dλ at λ_s, to first order (Lu et al. 2022b, Algorithm 2).

    ``m`` holds the data predictions newest first (at λ_s, λ_s − h0, …), ``h`` the λ-steps newest
    first: the one being taken, then h0 (the one into λ_s), h1 (the one before)."""
    return (h[0] / h[1]) * (m[0] - m[1])


def second_differences(m: Sequence[torch.Tensor], h: Sequence[float], third_order: str = "taylor"
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(D1, D2): h·x_θ' and h²·x_θ'' at λ_s from the quadratic through the last three x̂₀.

    D1_0 = (m0 − m1)/r0, D1_1 = (m1 − m2)/r1 (r0 = h0/h, r1 = h1/h), D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1),
    and D2 = 2·(D1_0 − D1_1)/(r0 + r1): twice the second divided difference times h², i.e. h²·x_θ''.
    ``third_order="reference"`` gives D2 without the factor 2, as the multistep third-order update
    of DPM-Solver's own code (and so of diffusers and k-diffusion) has it: half the second
    derivative, which leaves an O(h³) local error, so that update converges at order 2 only
    (docs/dpm_solver.md shows the slopes).
    """
    D1_0 = (h[0] / h[1]) * (m[0] - m[1])
    D1_1 = (h[0] / h[2]) * (m[1] - m[2])
    D1 = D1_0 + (h[1] / (h[1] + h[2])) * (D1_0 - D1_1)
    D2 = (h[0] / (h[1] + h[2])) * (D1_0 - D1_1)
    return D1, (2.0 * D2 if third_order == "taylor" else D2)


def ode_step(x: torch.Tensor, m: Sequence[torch.Tensor], h: Sequence[float], order: int, alpha_t: float,
             sigma_t: float, sigma_s: float, third_order: str = "taylor") -> torch.Tensor:
    """x_t from x_s by DPM-Solver++ of ``order`` 1, 2 or 3 (data prediction, multistep).

    order 1: x_t = (σ_t/σ_s)·x_s − α_t·φ1·D0 — DDIM, DPM-Solver++'s first-order step;
    order 2: x_t = (σ_t/σ_s)·x_s − α_t·φ1·D, D = (1 + 1/(2r))·m0 − 1/(2r)·m1 = D0 + ½·D1 (Algorithm 2);
    order 3: x_t = (σ_t/σ_s)·x_s − α_t·φ1·D0 + α_t·φ2·D1 − α_t·φ3·D2 (the Taylor terms to second order).
    """
    phi1 = math.expm1(-h[0])
    if order == 1:
        return (sigma_t / sigma_s) * x - (alpha_t * phi1) * m[0]
    if order == 2:
        return (sigma_t / sigma_s) * x - (alpha_t * phi1) * (m[0] + 0.5 * first_difference(m, h))
    phi2 = phi1 / h[0] + 1.0
    phi3 = phi2 / h[0] - 0.5
    D1, D2 = second_differences(m, h, third_order)
    return (sigma_t / sigma_s) * x - (alpha_t * phi1) * m[0] + (alpha_t * phi2) * D1 - (alpha_t * phi3) * D2


def sde_step(x: torch.Tensor, m: Sequence[torch.Tensor], h: Sequence[float], order: int, alpha_t: float,
             sigma_t: float, sigma_s: float, z: torch.Tensor) -> torch.Tensor:
    """x_t from x_s by SDE-DPM-Solver++ of ``order`` 1 or 2: the reverse SDE's linear part solved exactly,

    x_t = (σ_t/σ_s)·e^{−h}·x_s + α_t·(1 − e^{−2h})·D + σ_t·√(1 − e^{−2h})·z,

    with D = D0 (order 1: the DDPM posterior q(x_t | x_s, x̂₀) drawn exactly) or D = D0 + ½·D1
    (order 2, the same D as Algorithm 2)."""
    one_minus = -math.expm1(-2.0 * h[0])  # 1 − e^{−2h}
    D = m[0] if order == 1 else m[0] + 0.5 * first_difference(m, h)
    return (sigma_t / sigma_s * math.exp(-h[0])) * x + (alpha_t * one_minus) * D + (sigma_t * math.sqrt(one_minus)) * z


@attrs.frozen
class _Multistep(GridSampler):
    """The loop the DPM-Solver++ samplers share; each states its ``order`` and its :meth:`_step`.

    Step i (0-based) of the K − 1 between grid times has order min(order, i + 1): the first steps
    warm up, since no earlier x̂₀ exist. With ``lower_order_final`` the order of step i is also at
    most K − 1 − i, whatever K, so the step into t_1 is first order and the one before it at most
    second: the rule ``step_order = min(order, steps + 1 − step)`` of DPM-Solver's code, which
    applies it below 10 steps only (diffusers: below 15). The step into t_1 is the largest λ-step of the
    usual grids — linspace on a discrete schedule goes from t ≈ 1/K to t = 1/T, h/h0 ≈ 3.4–4.4 on linear
    T = 1000 at 50–20 steps — and a multistep update extrapolates D1, D2 over it: off, 2M and 3M
    are *worse* than DDIM there (docs/dpm_solver.md); on λ-uniform grids the choice is neutral,
    as x_θ hardly moves at the last, large λ. The K-th step, from t_1 to 0, returns x̂₀.
    """

    spacing: str = option("auto", help="which times the steps visit: auto (logsnr, or linspace where the schedule "
                          "reaches pure noise, σ(1) > 10³: docs/fast_sampling.md), linspace, leading, trailing, karras "
                          "or logsnr", choices=("auto", *SPACINGS))
    clip_x0: float | None = option(None, help="clamp x̂₀ to ±clip_x0 (1.0 for data in [−1, 1]); none = off", gt=0.0, optional=True)
    lower_order_final: bool = option(True, help="take the step into the last grid time at first order (and the one "
                                     "before at most second), as DPM-Solver's code does")

    #: the highest order of the solver
    order: ClassVar[int]
    #: steps when the caller gives none: "15 to 20 steps" (Lu et al. 2022b, abstract)
    default_steps: ClassVar[int] = 20

    @abc.abstractmethod
    def _step(self, x: torch.Tensor, m: list[torch.Tensor], h: list[float], order: int, alpha_t: float,
              sigma_t: float, sigma_s: float, generator: torch.Generator | None) -> torch.Tensor:
        """x at the next grid time from x at this one, the x̂₀ ``m`` and λ-steps ``h`` (newest first)."""

    def time_grid(self, schedule: NoiseSchedule, steps: int | None) -> np.ndarray:
        """The core grid of ``spacing``; ``auto`` is logsnr, or linspace on a schedule reaching pure noise."""
        return time_grid(schedule, steps, self.spacing_for(schedule), default=self.default_steps, times=self.times)

    def spacing_for(self, schedule: NoiseSchedule) -> str:
        """The spacing walked on ``schedule``: ``spacing``, with ``auto`` resolved (logsnr, or linspace)."""
        return logsnr_unless_pure_noise(schedule, "linspace") if self.spacing == "auto" else self.spacing

    def orders(self, K: int) -> list[int]:
        """The order of each of the K − 1 steps between the K grid times (the step to t = 0 returns x̂₀)."""
        out = []
        for i in range(K - 1):
            p = min(self.order, i + 1)
            if self.lower_order_final:
                p = min(p, K - 1 - i)
            out.append(p)
        return out

    def nfe(self, steps: int | None, schedule: NoiseSchedule) -> int:
        """Denoiser evaluations of :meth:`sample`: one per grid time (the last step reuses its x̂₀)."""
        return len(self.time_grid(schedule, steps))

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None, cond: Any = None,
               generator: torch.Generator | None = None, callback: Any = None) -> torch.Tensor:
        grid = self.time_grid(schedule, steps)
        times, ab = with_end(schedule, grid)
        alpha, sigma = np.sqrt(ab), np.sqrt(1.0 - ab)
        lam = 0.5 * log_snr(schedule, torch.from_numpy(times)).numpy()  # λ = log(α/σ); at the end (+∞) never differenced
        K = len(grid)
        orders = self.orders(K)
        t_batch = batch_times(grid, x_T)
        x, m, h = x_T, [], []
        for i in range(K):
            x0 = predict(denoiser, x, t_batch[i], float(ab[i]), cond, self.clip_x0).x0
            m = [x0, *m[: self.order - 1]]
            if i == K - 1:
                x = x0  # t_1 → 0: every order's update tends to x̂₀ as σ_t → 0
            else:
                h = [float(lam[i + 1] - lam[i]), *h[: self.order - 1]]
                x = self._step(x, m, h, orders[i], float(alpha[i + 1]), float(sigma[i + 1]), float(sigma[i]), generator)
            if callback is not None:
                callback(StepInfo(index=i, total=K, t=float(times[i]), t_next=float(times[i + 1]), x=x, x0=x0))
        return x


@attrs.frozen
class DPMSolverPP2M(_Multistep):
    """DPM-Solver++(2M): multistep second-order data-prediction solver (Lu et al. 2022b, Algorithm 2).

    x_{t_i} = (σ_{t_i}/σ_{t_{i−1}})·x_{t_{i−1}} − α_{t_i}·(e^{−h_i} − 1)·D_i, with h_i = λ_{t_i} − λ_{t_{i−1}},
    r_i = h_{i−1}/h_i and D_i = (1 + 1/(2r_i))·x_θ(t_{i−1}) − 1/(2r_i)·x_θ(t_{i−2}); the first step is
    first order (D = x̂₀: DDIM), and so, with ``lower_order_final``, is the step into the last grid
    time. The final output is x̂₀ at the last grid time. One denoiser
    call per step, on any grid of the core (``spacing``, including ``logsnr``, or ``times``).

    Defaults: the ``auto`` grid (:func:`~difftk.maths.grids.logsnr_unless_pure_noise`: logsnr, or linspace near
    pure noise) and ``lower_order_final`` on (first order into t_1), each chosen by measurement on the exact
    oracles and the shipped models (docs/fast_sampling.md).
    """

    order: ClassVar[int] = 2

    def _step(self, x, m, h, order, alpha_t, sigma_t, sigma_s, generator):
        return ode_step(x, m, h, order, alpha_t, sigma_t, sigma_s)


@attrs.frozen
class DPMSolverPP3M(_Multistep):
    """DPM-Solver++(3M): multistep third-order data-prediction solver (Lu et al. 2022b; the third-order
    multistep update of their code).

    x_t = (σ_t/σ_s)·x_s − α_t·φ1·D0 + α_t·φ2·D1 − α_t·φ3·D2 with D1 ≈ h·x_θ', D2 ≈ h²·x_θ'' from the
    last three x̂₀ (:func:`second_differences`); the first two steps warm up at orders 1 and 2
    (Algorithm 2), and with ``lower_order_final`` the last two steps into the grid drop to 2 and 1. ``third_order="reference"`` uses the code's D2, half of h²·x_θ'':
    it then agrees step for step with diffusers' ``solver_order=3`` but converges at order 2 only.
    The final output is x̂₀ at the last grid time.

    Defaults as 2M (``auto`` grid, ``lower_order_final``): at few steps a λ-step is long, and the lower orders
    at the end spare the last steps a third-order extrapolation of x̂₀ over it (docs/fast_sampling.md).
    """

    third_order: str = option("taylor", help="D2 of the third-order term: taylor = h²·x̂₀'' (third order); reference = "
                              "half of it, as DPM-Solver's code and diffusers have it (second order)", choices=THIRD_ORDER)

    order: ClassVar[int] = 3

    def _step(self, x, m, h, order, alpha_t, sigma_t, sigma_s, generator):
        return ode_step(x, m, h, order, alpha_t, sigma_t, sigma_s, self.third_order)


@attrs.frozen
class SDEDPMSolverPP2M(_Multistep):
    """SDE-DPM-Solver++(2M): the multistep second-order solver of the reverse SDE in data prediction,
    its linear part solved exactly ("sde-dpmsolver++", added to diffusers by DPM-Solver's first
    author, diffusers#3344, 2023, with the D of Lu et al. 2022b, Algorithm 2).

    x_t = (σ_t/σ_s)·e^{−h}·x_s + α_t·(1 − e^{−2h})·(D0 + ½·D1) + σ_t·√(1 − e^{−2h})·z (:func:`sde_step`);
    its first-order step is the DDPM posterior q(x_t | x_s, x̂₀). z is drawn through the core's
    ``noise_like`` (per-example streams), once per step between grid times; the last step returns
    x̂₀ at the last grid time and draws nothing.

    Defaults as 2M (``auto`` grid, ``lower_order_final``; measured in docs/fast_sampling.md).
    """

    order: ClassVar[int] = 2

    def _step(self, x, m, h, order, alpha_t, sigma_t, sigma_s, generator):
        return sde_step(x, m, h, order, alpha_t, sigma_t, sigma_s, noise_like(x, generator))
