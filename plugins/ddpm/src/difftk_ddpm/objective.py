"""L_simple (Ho et al. 2020, eq. 14 and Algorithm 1), regressed in any parameterisation."""

from __future__ import annotations

import attrs
import torch
from difftk.maths.diffusion import PREDICTIONS, convert, q_sample, target_of
from difftk.maths.objectives import WEIGHTINGS, loss_weight, mean_flat, sample_times
from difftk.options import option
from difftk.sampling.steps import denoiser_output


@attrs.frozen
class SimpleLoss:
    """L_simple: E‖y − ŷ(√ᾱ x₀ + √(1−ᾱ) ε, t)‖², t uniform (Ho et al. 2020, eq. 14).

    ``target`` is the parameterisation y the squared error is taken in. ``native`` (the
    default) uses the denoiser's own prediction type, as the papers do: ε for Ho et al.'s
    ε-model (eq. 14), v for a v-model (Salimans & Ho 2022, eq. 9, the "SNR+1" weighting of
    the x₀ error), x₀ for an x₀-model. ``eps`` on a v-model gives ε-MSE = ᾱ·‖v − v̂‖², which
    leaves v unlearned where ᾱ → 0. A learned-variance output channel is ignored (it gets no
    gradient from L_simple). ``weighting=min-snr`` weights each example by Min-SNR-γ (Hang et
    al. 2023), derived for the parameterisation the error is taken in
    (:func:`difftk.maths.objectives.loss_weight`).
    """

    target: str = option("native", help="parameterisation of the squared error: native (the denoiser's own), eps, x0 or v",
                         choices=("native", *PREDICTIONS))
    weighting: str = option("constant", help="per-example weight: constant, or min-snr (min(SNR, γ) on the x₀ error)",
                            choices=WEIGHTINGS)
    gamma: float = option(5.0, help="γ of min-snr (Hang et al. 2023 use 5)", gt=0.0)

    def loss(self, denoiser, schedule, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        t = sample_times(schedule, x0.shape[0], generator, x0.device)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        alpha_bar = schedule.alpha_bar(t.to(torch.float64)).to(x0.dtype)
        x_t = q_sample(x0, alpha_bar, eps)
        out, _ = denoiser_output(denoiser, x_t, t.to(x0.dtype), cond)
        to = denoiser.prediction if self.target == "native" else self.target
        y_hat = convert(denoiser.prediction, out, to, x_t, alpha_bar)
        error = mean_flat((target_of(to, x0, eps, alpha_bar) - y_hat) ** 2)
        if self.weighting == "constant":
            return error
        return error * loss_weight(self.weighting, to, alpha_bar, self.gamma).to(error.dtype)
