"""The discrete process on a chosen subset of a schedule's grid, with the learned-range variance.

Respacing (Nichol & Dhariwal 2021, §4, "Improving sampling speed"): keep the grid times
t_1 < … < t_K, set ᾱ_k = ᾱ(t_k) and rebuild β_k = 1 − ᾱ_k/ᾱ_{k−1} (ᾱ_0 = 1); the model is still
called at its own times t_k. With all T grid times this is the schedule's own process.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
import numpy as np
import torch
from difftk.components.protocols import NoiseSchedule, grid_size_of
from difftk.maths.diffusion import Posterior, expand, posterior
from difftk.maths.grids import time_grid
from difftk.maths.schedules import Discretization, alpha_bar_table

#: the number of steps a continuous schedule is discretized to for training and the bound
CONTINUOUS_T = 1000


def learned_log_variance(v: torch.Tensor, log_beta: Any, log_beta_tilde: Any) -> torch.Tensor:
    """log Σ_θ = frac·log β_t + (1 − frac)·log β̃_t with frac = (v + 1)/2 (Nichol & Dhariwal 2021,
    eq. 15): the network's v ∈ [−1, 1] interpolates, in the log domain, between the lower (β̃) and
    the upper (β) bound of the reverse variance. ``log_beta_tilde`` is the clipped posterior
    log-variance (β̃_1 = 0 replaced by β̃_2). Coefficients may be floats or [B] tensors."""
    frac = (v + 1) / 2
    return frac * expand(log_beta, v) + (1 - frac) * expand(log_beta_tilde, v)


@attrs.frozen(eq=False)
class Process:
    """The process on kept times t_1 < … < t_K (float64 NumPy, index k−1 for step k).

    ``alpha_bar`` ᾱ_k, ``betas`` the rebuilt β_k, ``log_beta_tilde`` the clipped posterior
    log-variance, and the posterior q(x_{k−1} | x_k, x₀) of every step."""

    times: np.ndarray
    disc: Discretization
    post: Posterior
    _tables: dict = attrs.field(factory=dict, init=False, repr=False)

    @property
    def K(self) -> int:
        return len(self.times)

    @property
    def alpha_bar(self) -> np.ndarray:
        return self.disc.alphas_cumprod

    @property
    def log_beta(self) -> np.ndarray:
        return np.log(self.disc.betas)

    @property
    def log_beta_tilde(self) -> np.ndarray:
        """log β̃_k, with the k = 1 value (β̃_1 = 0) replaced by β̃_2; a single step has β̃ = β."""
        if self.K == 1:
            return self.log_beta
        return self.disc.posterior_log_variance_clipped

    def at(self, k: torch.Tensor, name: str) -> torch.Tensor:
        """Per-example values of table ``name`` at 1-based step indices ``k`` [B], float64, on k's device."""
        if not self._tables:  # made once per process, on first use
            arrays = {"alpha_bar": self.alpha_bar, "log_beta": self.log_beta, "log_beta_tilde": self.log_beta_tilde,
                      "coef_x0": self.post.coef_x0, "coef_xt": self.post.coef_xt, "times": self.times}
            self._tables.update({key: torch.tensor(np.array(a), dtype=torch.float64) for key, a in arrays.items()})
        return self._tables[name].to(k.device)[k - 1]


@functools.lru_cache(maxsize=32)
def process(schedule: NoiseSchedule, steps: int | None = None, spacing: str = "linspace", default: int | None = None,
            times: tuple[float, ...] | None = None) -> Process:
    """The process on ``steps`` grid times of ``schedule`` chosen by ``spacing``; without ``steps``
    ``default`` of them (at most T), else all T (a continuous schedule is discretized to
    :data:`CONTINUOUS_T` steps); ``times`` gives the grid explicitly."""
    T = grid_size_of(schedule)
    times = time_grid(schedule, steps, spacing, default=default or T or CONTINUOUS_T, times=times)[::-1].copy()
    disc = Discretization.from_alphas_cumprod(alpha_bar_table(schedule, times))
    return Process(times=times, disc=disc, post=posterior(disc.alphas_cumprod_prev, disc.alphas_cumprod))
