"""A deterministic first-order sampler: x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂ (DDIM with η = 0, Song et al. 2020, eq. 12)."""

import math
from typing import ClassVar

import attrs
from difftk.maths.grids import with_end
from difftk.sampling.steps import GridSampler, StepInfo, batch_time, predict


@attrs.frozen
class MyPluginSampler(GridSampler):
    """DDIM with η = 0 on the core's time grid (the options ``spacing`` and ``times`` come from GridSampler).

    K steps visit the K grid times t_K > … > t_1; each goes to the next time of the grid, and the
    last returns x̂₀ at t_1 (the end rule: ᾱ = 1 at the end makes the update exactly x̂₀). One denoiser call per step,
    so GridSampler's nfe (one per grid time) is this sampler's.
    """

    #: steps when the caller gives none
    default_steps: ClassVar[int] = 50
    #: the global error falls as 1/K (the kit checks it against an exact oracle)
    convergence_order: ClassVar[int] = 1

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        times, alpha_bar = with_end(schedule, self.time_grid(schedule, steps))  # float64; ᾱ = 1 at the end
        K = len(times) - 1
        x = x_T
        for k in range(K):
            pred = predict(denoiser, x, batch_time(times[k], x), float(alpha_bar[k]), cond)
            ab_next = float(alpha_bar[k + 1])
            x = math.sqrt(ab_next) * pred.x0 + math.sqrt(1.0 - ab_next) * pred.eps  # eq. 12, σ = 0
            if callback is not None:
                callback(StepInfo(index=k, total=K, t=float(times[k]), t_next=float(times[k + 1]), x=x, x0=pred.x0))
        return x
