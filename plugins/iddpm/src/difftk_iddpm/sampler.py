"""Ancestral sampling on a respaced process, with the learned or a fixed variance (Nichol & Dhariwal 2021)."""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.maths.grids import SPACINGS
from difftk.options import option
from difftk.sampling.steps import StepInfo, batch_times, noise_like, predict, times_option

from difftk_iddpm.process import learned_log_variance, process

VARIANCES = ("learned", "beta", "beta_tilde")


@attrs.frozen
class RespacedSampler:
    """x_{k−1} ~ N(μ̃(x_k, x̂₀), Σ) on K ≤ T kept grid times (Nichol & Dhariwal 2021, §3.1 and §4).

    β is rebuilt from ᾱ at the kept times and the model is called at its own times. Σ is the
    model's learned-range variance (eq. 15) on the respaced β_k and β̃_k when it outputs one;
    otherwise the fixed σ² = β̃_k, or with ``variance`` set to ``beta`` / ``beta_tilde`` the fixed
    σ² = β_k or β̃_k of Ho et al. 2020 (β̃ without a learned variance for the reason the
    ``ancestral`` sampler gives). No noise is added on the last step. K = T with a fixed variance is DDPM's
    Algorithm 2.
    """

    variance: str = option("learned", help="Σ: the model's learned variance (β̃ when it has none), or β, or β̃", choices=VARIANCES)
    spacing: str = option("linspace", help="which grid times K < T steps keep", choices=SPACINGS)
    times: tuple[float, ...] | None = times_option()
    clip_x0: float | None = option(None, help="clamp x̂₀ to ±clip_x0 (1.0 for data in [−1, 1]); none = off", gt=0.0, optional=True)

    #: steps when the caller gives none: Nichol & Dhariwal 2021 (Fig. 8) find a learned Σ near its full-T
    #: quality at 100 steps
    default_steps: ClassVar[int] = 100

    def nfe(self, steps: int | None, schedule: NoiseSchedule) -> int:
        """Denoiser evaluations of :meth:`sample`: one per kept step."""
        return process(schedule, steps, self.spacing, default=self.default_steps, times=self.times).K

    def sample(self, denoiser: Denoiser, schedule: NoiseSchedule, x_T: torch.Tensor, steps: int | None = None, cond=None,
               generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
        p = process(schedule, steps, self.spacing, default=self.default_steps, times=self.times)
        K = p.K
        learned = self.variance == "learned" and getattr(denoiser, "learned_variance", False)
        fixed = p.log_beta if self.variance == "beta" else p.log_beta_tilde
        coef_x0, coef_xt, alpha_bar = (np.asarray(a, dtype=np.float64) for a in (p.post.coef_x0, p.post.coef_xt, p.alpha_bar))
        t_batch = batch_times(p.times, x_T)
        x = x_T
        for k in range(K - 1, -1, -1):  # step k+1 of the process, from t_{k+1} to t_k (0 after the first)
            pred = predict(denoiser, x, t_batch[k], float(alpha_bar[k]), cond, self.clip_x0)
            mean = pred.x0 * float(coef_x0[k]) + x * float(coef_xt[k])
            if k > 0:
                if learned:
                    log_var = learned_log_variance(pred.var_interp, float(p.log_beta[k]), float(p.log_beta_tilde[k]))
                    x = mean + torch.exp(0.5 * log_var) * noise_like(x, generator)
                else:
                    x = mean + float(np.exp(0.5 * fixed[k])) * noise_like(x, generator)
            else:
                x = mean
            if callback is not None:
                callback(StepInfo(index=K - 1 - k, total=K, t=float(p.times[k]),
                                  t_next=float(p.times[k - 1]) if k > 0 else 0.0, x=x, x0=pred.x0))
        return x
