"""Ancestral sampling (Ho et al. 2020, Algorithm 2), on the full grid or any subset of it."""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
from difftk.maths.diffusion import posterior
from difftk.options import option
from difftk.sampling.steps import AffineSampler, AffinePlan


@attrs.frozen
class AncestralSampler(AffineSampler):
    """Ancestral sampling x_s ~ N(μ̃(x_t, x̂₀), σ²) (Ho et al. 2020, Algorithm 2).

    Each step goes from t to the previous time s of the grid through the posterior
    q(x_s | x_t, x̂₀) (eq. 6–7). ``variance="beta"`` uses σ² = β_{t|s} = 1 − ᾱ_t/ᾱ_s, the
    upper bound; ``"beta_tilde"`` the posterior variance β̃, the lower bound (§3.2). With
    fewer steps than the schedule has, β is rebuilt from ᾱ at the kept times — the respacing
    rule of Nichol & Dhariwal 2021. No noise is added on the last step.

    The default is β̃ (diffusers' ``fixed_small`` too): Ho et al. found the two alike on the full
    grid, but on a respaced grid β_{t|s} of a long step is far above β̃, and the noise added on
    the way to the last time is more than the final x̂₀ step removes (docs/math.md).
    """

    variance: str = option("beta_tilde", help="σ² = β̃ (posterior variance) or β (upper bound)", choices=("beta_tilde", "beta"))

    #: steps when the caller gives none: respaced to 100 (Nichol & Dhariwal 2021, §4), not all T
    default_steps: ClassVar[int] = 100

    def plan(self, schedule, steps: int | None) -> AffinePlan:
        """The coefficients of every step, in float64."""
        times, ab = self.grid(schedule, steps)
        ab_t, ab_s = ab[:-1], ab[1:]
        post = posterior(ab_s, ab_t)
        var = post.variance if self.variance == "beta_tilde" else post.beta
        var[-1] = 0.0  # x_0 = μ̃ on the last step
        return AffinePlan(times=times, alpha_bars=ab, c_x0=post.coef_x0, c_xt=post.coef_xt, c_eps=0.0,
                           sigma=np.sqrt(var))
