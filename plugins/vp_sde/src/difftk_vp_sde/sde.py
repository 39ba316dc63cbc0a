"""What the VP-SDE samplers share: the score of a denoiser, β(t), the time grid, step reports.

The forward SDE is dx = −½β(t)x dt + √β(t) dw (Song et al. 2021, eq. 11), the reverse SDE
dx = [−½β(t)x − β(t)∇log p_t(x)] dt + √β(t) dw̄ (eq. 6), and the score comes from any
denoiser through ∇log p_t(x) = −ε̂/√(1−ᾱ(t)) (:func:`difftk.maths.diffusion.score_from_eps`).
Every schedule works through its continuous view: ᾱ(t) and β(t) = −d log ᾱ/dt
(:func:`difftk.maths.schedules.beta_of`).
"""

from __future__ import annotations

import numpy as np
import torch
from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.maths.diffusion import score_from_eps
from difftk.maths.schedules import beta_of
from difftk.sampling.steps import batch_time, predict


class ScoreFunction:
    """∇log p_t(x) and x̂₀ from a denoiser at one time t for the whole batch, counting evaluations.

    ``denoiser`` may predict ε, x₀ or v; the conversion is the core's. ``nfe`` is the number
    of denoiser calls made through this object.
    """

    def __init__(self, denoiser: Denoiser, schedule: NoiseSchedule, cond: torch.Tensor | None = None) -> None:
        self.denoiser, self.schedule, self.cond = denoiser, schedule, cond
        self.nfe = 0

    def alpha_bar(self, t: float) -> float:
        """ᾱ(t) in float64."""
        return float(self.schedule.alpha_bar(torch.tensor([t], dtype=torch.float64))[0])

    def beta(self, t: float) -> float:
        """β(t) = −d log ᾱ/dt in float64."""
        return float(beta_of(self.schedule, torch.tensor([t], dtype=torch.float64))[0])

    def __call__(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(∇log p_t(x), x̂₀(x, t)), both shaped and typed like ``x``."""
        alpha_bar = self.alpha_bar(t)
        pred = predict(self.denoiser, x, batch_time(t, x), alpha_bar, self.cond)
        self.nfe += 1
        return score_from_eps(pred.eps, alpha_bar), pred.x0


def uniform_times(steps: int, eps: float) -> np.ndarray:
    """t_0 = 1 > t_1 > … > t_K = ε, evenly spaced: the grid of the fixed-step samplers (float64)."""
    return np.linspace(1.0, eps, steps + 1, dtype=np.float64)


def per_example_norm(x: torch.Tensor) -> torch.Tensor:
    """‖x_b‖ over every dimension but the batch, shaped to broadcast against ``x``."""
    n = x.reshape(x.shape[0], -1).norm(dim=1)
    return n.view(-1, *([1] * (x.ndim - 1)))
