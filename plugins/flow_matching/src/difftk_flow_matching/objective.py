"""The conditional flow-matching objective (Lipman et al. 2023, eq. 23; Liu et al. 2023, eq. 1)."""

from __future__ import annotations

import attrs
import torch
from difftk.maths.diffusion import convert, flow_from_x0_eps, q_sample
from difftk.maths.objectives import WEIGHTINGS, loss_weight, mean_flat
from difftk.maths.schedules import time_of
from difftk.options import option
from difftk.sampling.steps import denoiser_output

from difftk_flow_matching.frame import alpha_bar_of_flow_time

TIME_SAMPLINGS = ("uniform", "logit-normal")


@attrs.frozen
class FlowMatching:
    """E‖û(x_τ, τ) − (ε − x₀)‖², x_τ = (1−τ)·x₀ + τ·ε: regress the straight path's velocity.

    τ is drawn uniform on (0, 1], or logit-normal, τ = sigmoid(m + s·n) with n ~ N(0, 1) (Esser et
    al. 2024, eq. 19: m = 0, s = 1 puts most weight at mid noise), or a mixture of the two: with
    ``uniform_fraction=f`` each τ is uniform with probability f and logit-normal otherwise. The
    logit-normal starves the ends (m = 0.5, s = 1 puts 0.35 % of its draws below τ = 0.1), and a
    model that has seen too few low-noise draws leaves grain on every sampler's last steps; with the
    uniform share, at least f·τ₀ of the draws fall below any τ₀. On any schedule the draw is a
    point of the straight path, and the model is asked at the schedule's time of the same
    ᾱ = (1−τ)²/((1−τ)² + τ²) (on the ``flow`` schedule, t = τ), with the VP state
    x_t = x_τ·(α+σ). The denoiser's output, in whatever parameterisation it has, is converted to
    the velocity u (the core's ``flow``), so an ε- or v-network learns flow matching's minimiser
    too. ``weighting=min-snr`` multiplies by min(SNR, γ)/(1 + √SNR)² (Hang et al. 2023 on the
    velocity error).
    """

    time_sampling: str = option("logit-normal", help="how τ is drawn: uniform or logit-normal", choices=TIME_SAMPLINGS)
    loc: float = option(0.0, help="logit-normal: m, the mean of logit τ", ge=-10.0, le=10.0)
    scale: float = option(1.0, help="logit-normal: s, the spread of logit τ", gt=0.0, le=10.0)
    uniform_fraction: float = option(0.0, help="logit-normal: the share of τ drawn uniform instead "
                                               "(the low-noise end's floor)", ge=0.0, le=1.0)
    weighting: str = option("constant", help="per-example weight: constant, or min-snr (min(SNR, γ) on the x₀ error)",
                            choices=WEIGHTINGS)
    gamma: float = option(5.0, help="γ of min-snr", gt=0.0)

    def flow_times(self, batch: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
        """τ of shape [B] in float64, on (0, 1]."""
        draw = lambda sample: sample((batch,), generator=generator, device=device, dtype=torch.float64)  # noqa: E731
        if self.time_sampling == "uniform":
            return 1.0 - draw(torch.rand)  # on (0, 1]
        tau = torch.sigmoid(self.loc + self.scale * draw(torch.randn))
        if self.uniform_fraction == 0.0:  # no further draws: the generator's stream is the pure logit-normal's
            return tau
        pick = draw(torch.rand) < self.uniform_fraction
        return torch.where(pick, 1.0 - draw(torch.rand), tau)

    def loss(self, denoiser, schedule, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        tau = self.flow_times(x0.shape[0], generator, x0.device)
        t = time_of(schedule, alpha_bar_of_flow_time(tau)).clamp(0.0, 1.0)
        alpha_bar = schedule.alpha_bar(t).to(x0.dtype)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = q_sample(x0, alpha_bar, eps)
        out, _ = denoiser_output(denoiser, x_t, t.to(x0.dtype), cond)
        u_hat = convert(denoiser.prediction, out, "flow", x_t, alpha_bar)
        error = mean_flat((flow_from_x0_eps(x0, eps) - u_hat) ** 2)
        if self.weighting == "constant":
            return error
        return error * loss_weight(self.weighting, "flow", alpha_bar, self.gamma).to(error.dtype)
