"""UniPC sampling (Zhao et al. 2023): the multistep predictor UniP-p with the corrector UniC-p, in data prediction."""

from __future__ import annotations

import collections
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.maths.grids import SPACINGS, logsnr_unless_pure_noise, time_grid, with_end
from difftk.options import option
from difftk.sampling.steps import GridSampler, StepInfo, batch_times, predict

from difftk_unipc.coefficients import VARIANTS, update

#: one update x_new = c_x·x + Σ_j c_j·m_j, the m_j newest first
Update = tuple[float, tuple[float, ...]]


@attrs.frozen
class UniPCPlan:
    """Every update of one run, in float64, computed before the loop.

    ``times`` holds τ_0 > … > τ_{K−1} (the grid) and τ_K = 0; ``orders[k]`` is the order p of
    step k's predictor UniP-p. ``predictor[k]`` makes x̃ at τ_{k+1} from the state at τ_k and
    the model outputs m_k, m_{k−1}, …; ``corrector[k]`` (``None`` where there is none) replaces
    the state at τ_k by UniC's, from the state at τ_{k−1} and m_k, m_{k−1}, … (m_k, evaluated at
    the predicted x̃ at τ_k, is the one the next predictor also uses).
    """

    times: np.ndarray
    alpha_bars: np.ndarray
    orders: tuple[int, ...]
    predictor: tuple[Update, ...]
    corrector: tuple[Update | None, ...]


def step_orders(order: int, K: int, finite: np.ndarray, lower_order_final: bool = True) -> list[int]:
    """The predictor order p_k of each step k = 0..K−1.

    p_k = min(order, k + 1): lower orders while the history fills (warm-up); a history time of
    infinite log-SNR (ᾱ = 0) is never used. The step to t = 0 (λ = ∞) is first order, the only
    update defined there; with ``lower_order_final`` also p_k ≤ K − k, the reference code's rule,
    which makes the step before it at most second order.
    """
    orders, usable = [], 0
    for k in range(K):
        usable = usable + 1 if finite[k] else 0
        cap = K - k if lower_order_final else (1 if k == K - 1 else order)
        orders.append(max(1, min(order, usable, cap)))
    return orders


@attrs.frozen
class UniPCSampler(GridSampler):
    """UniPC: the multistep predictor UniP-p and the corrector UniC-p in data prediction, B(h) = h
    (``bh1``) or 1 − e^{−h} (``bh2``) (Zhao et al. 2023; the coefficients in :mod:`difftk_unipc.coefficients`).

    Each step goes from one time of the core grid to the next, the last from t_1 to t = 0, where
    the only update defined (first order, λ = ∞) is the denoiser's x̂₀ at t_1, as DDIM's last
    step. Orders are lowered where the history is short (warm-up) and at the end
    (:func:`step_orders`). After every step but the last the denoiser is evaluated at the
    predicted x̃_{t_{k+1}}; UniC then corrects x_{t_{k+1}} with that evaluation and the next
    predictor starts from the corrected point, reusing it — so NFE = steps. The last step has no
    corrector: the step to t = 0 multiplies the state by σ(0)/σ(t_1) = 0, so a corrected x_{t_1}
    could not change the result (the reference code skips it too).

    Defaults to ``auto`` (:func:`~difftk.maths.grids.logsnr_unless_pure_noise`: logsnr, or trailing near pure
    noise), chosen by measurement on the exact oracle and the shipped models (docs/fast_sampling.md).
    """

    spacing: str = option("auto", help="which times the steps visit: auto (logsnr, or trailing where the schedule "
                          "reaches pure noise, σ(1) > 10³: docs/fast_sampling.md), trailing (from t = 1 in steps of "
                          "T/K, the last near 1/K, as the reference grids), linspace (down to 1/T), leading, karras or "
                          "logsnr", choices=("auto", *SPACINGS))
    order: int = option(2, help="p of UniP-p/UniC-p: 2 (guided sampling, the paper's and diffusers' default) or 3 "
                        "(unconditional)", ge=2, le=3)
    variant: str = option("bh2", help="B(h) of the updates: bh1 = h, bh2 = 1 − e^{−h}", choices=VARIANTS)
    corrector: bool = option(True, help="apply UniC after every step but the last (false = UniP alone: order p, "
                             "not p + 1)")
    lower_order_final: bool = option(True, help="order ≤ steps left, as the reference code (the step before the last "
                                     "at most second order); false = only the step to t = 0 is first order")
    clip_x0: float | None = option(None, help="clamp x̂₀ to ±clip_x0 (1.0 for data in [−1, 1]); none = off", gt=0.0,
                                   optional=True)

    #: steps when the caller gives none: UniPC is made for 5–20 steps (the paper's experiments); 20 leaves
    #: headroom for guided sampling
    default_steps: ClassVar[int] = 20

    def time_grid(self, schedule: NoiseSchedule, steps: int | None) -> np.ndarray:
        """The core grid of ``spacing``; ``auto`` is logsnr, or trailing on a schedule reaching pure noise."""
        return time_grid(schedule, steps, self.spacing_for(schedule), default=self.default_steps, times=self.times)

    def spacing_for(self, schedule: NoiseSchedule) -> str:
        """The spacing walked on ``schedule``: ``spacing``, with ``auto`` resolved (logsnr, or trailing)."""
        return logsnr_unless_pure_noise(schedule, "trailing") if self.spacing == "auto" else self.spacing

    def nfe(self, steps: int | None, schedule: NoiseSchedule) -> int:
        """Denoiser evaluations of :meth:`sample`: one per grid time (the corrector reuses the next step's)."""
        return len(self.time_grid(schedule, steps))

    def plan(self, schedule: NoiseSchedule, steps: int | None) -> UniPCPlan:
        """The float64 coefficients of every update on the grid ``self.time_grid(schedule, steps)``."""
        times, ab = with_end(schedule, self.time_grid(schedule, steps))
        K = len(times) - 1
        alpha, sigma = np.sqrt(ab), np.sqrt(1.0 - ab)
        with np.errstate(divide="ignore"):
            lam = np.log(alpha) - np.log(sigma)  # λ = log(α/σ); +∞ at t = 0, −∞ where ᾱ = 0
        orders = step_orders(self.order, K, np.isfinite(lam), self.lower_order_final)
        predictor: list[Update] = []
        corrector: list[Update | None] = [None] * K
        for k, p in enumerate(orders):
            if k == K - 1:
                predictor.append((0.0, (1.0,)))  # to λ = ∞: x = x̂₀ (σ(0) = 0, α(0)(1 − e^{−∞}) = 1)
                break
            history = lam[k - p + 1:k + 1][::-1]  # λ_k, λ_{k−1}, … newest first
            predictor.append(update(history, float(lam[k + 1]), float(alpha[k + 1]), float(sigma[k + 1] / sigma[k]),
                                    self.variant, corrector=False))
            if self.corrector and k + 1 < K - 1 and np.isfinite(lam[k]):  # UniC-p on this step, with the output at τ_{k+1}
                corrector[k + 1] = update(history, float(lam[k + 1]), float(alpha[k + 1]),
                                          float(sigma[k + 1] / sigma[k]), self.variant, corrector=True)
        return UniPCPlan(times=times, alpha_bars=ab, orders=tuple(orders), predictor=tuple(predictor),
                         corrector=tuple(corrector))

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None,
               cond: Any = None, generator: torch.Generator | None = None, callback: Any = None) -> torch.Tensor:
        plan = self.plan(schedule, steps)
        times = [float(t) for t in plan.times]
        alpha_bars = [float(a) for a in plan.alpha_bars]
        K = len(times) - 1
        t_batch = batch_times(times[:-1], x_T)
        outputs: collections.deque[torch.Tensor] = collections.deque(maxlen=self.order + 1)  # x̂₀, newest first
        x, x_before = x_T, x_T
        for k in range(K):
            x0 = predict(denoiser, x, t_batch[k], alpha_bars[k], cond, self.clip_x0).x0
            outputs.appendleft(x0)
            if plan.corrector[k] is not None:  # UniC: x at τ_k again, from τ_{k−1}, with the output just made
                x = _combine(plan.corrector[k], x_before, outputs)
            x_before = x
            x = _combine(plan.predictor[k], x, outputs)  # UniP: x̃ at τ_{k+1}
            if callback is not None:
                callback(StepInfo(index=k, total=K, t=times[k], t_next=times[k + 1], x=x, x0=x0))
        return x


def _combine(step: Update, x: torch.Tensor, outputs: collections.deque[torch.Tensor]) -> torch.Tensor:
    """c_x·x + Σ_j c_j·outputs[j]; a zero c_x drops x (the step to t = 0 returns x̂₀ exactly)."""
    c_x, c = step
    out = outputs[0] * c[0]
    for c_j, m_j in zip(c[1:], list(outputs)[1:len(c)], strict=True):
        out.add_(m_j, alpha=c_j)
    if c_x != 0.0:
        out.add_(x, alpha=c_x)
    return out
