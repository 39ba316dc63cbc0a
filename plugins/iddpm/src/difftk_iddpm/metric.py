"""``bpd-vlb``: bits per dimension of held-out 8-bit images by the variational bound."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from difftk.evaluation.context import EvalContext, MetricResult, mean_and_standard_error
from difftk.maths.diffusion import q_sample
from difftk.maths.likelihood import mean_bits, prior_kl
from difftk.options import option
from difftk.sampling.steps import predict

from difftk_iddpm.process import process
from difftk_iddpm.sampler import VARIANCES
from difftk_iddpm.vlb import step_term


def vlb_bits(denoiser, schedule, x0: torch.Tensor, *, cond: torch.Tensor | None = None, steps: int | None = None,
             variance: str = "learned", decoder: str = "discrete", generator: torch.Generator | None = None,
             spacing: str = "linspace") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bound L_T + Σ_{k>1} L_{k−1} + L_0 in bits/dim per example [B], with its prior term L_T and
    decoder term L_0, on the process of ``steps`` kept times (all T by default) — Ho et al. 2020 eq. 5,
    Nichol & Dhariwal 2021 §2. Each x_k is drawn from q(x_k | x₀) with ``generator``."""
    proc = process(schedule, steps, spacing)
    B = x0.shape[0]
    prior = mean_bits(prior_kl(x0, float(proc.alpha_bar[-1])))
    total, decoder_term = prior.clone(), None
    fixed = variance if variance != "learned" else "beta"
    learned = variance == "learned"
    for step in range(proc.K, 0, -1):
        k = torch.full((B,), step, dtype=torch.long, device=x0.device)
        alpha_bar = float(proc.alpha_bar[step - 1])
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = q_sample(x0, alpha_bar, eps)
        pred = predict(denoiser, x_t, proc.at(k, "times").to(x0.dtype), alpha_bar, cond)
        term = step_term(proc, k, x0, x_t, pred.x0, pred.var_interp if learned else None, fixed=fixed, decoder=decoder)
        total = total + term
        if step == 1:
            decoder_term = term
    return total, prior, decoder_term


@attrs.frozen
class BitsPerDimVLB:
    """Bits/dim of held-out 8-bit images by the variational bound (Ho et al. 2020 eq. 5; Nichol & Dhariwal 2021 §2).

    L_T = KL(q(x_T|x₀) ‖ N(0, I)) + Σ KL(q(x_{t−1}|x_t, x₀) ‖ p_θ(x_{t−1}|x_t)) + −log p_θ(x₀|x₁) with
    the discretized Gaussian decoder, each step's x_t drawn once from q(x_t | x₀): one model call
    per step and image. The reverse variance is the model's learned one, or β / β̃ for a model
    without (``variance``). With ``steps`` K < T it is the bound of the respaced K-step model.
    The value is the mean over ``n`` test images, the spread its standard error.
    """

    #: which values are better, for `difftk compare`'s tests against the best cell
    better: ClassVar[str] = "lower"
    #: a likelihood of the data under the diffusion model: refused for a latent model, before any work
    likelihood: ClassVar[bool] = True

    n: int = option(64, help="held-out images evaluated", ge=1)
    steps: int | None = option(None, help="steps of the (respaced) process; none = --steps, else all T", ge=1, optional=True)
    variance: str = option("learned", help="reverse variance: the model's learned one (β without), β or β̃", choices=VARIANCES)
    batch_size: int = option(64, help="images evaluated at once", ge=1)

    @torch.inference_mode()
    def evaluate(self, context: EvalContext) -> MetricResult:
        data = context.held_out("bpd-vlb", kind="image")
        g = torch.Generator(device=context.device).manual_seed(context.seed)
        index = torch.randperm(len(data), generator=torch.Generator().manual_seed(context.seed))[: self.n]
        conditional = context.num_classes > 0 and data.labels is not None
        steps = self.steps or context.steps
        values, priors, decoders = [], [], []
        for start in range(0, len(index), self.batch_size):
            x0, y = data.batch(index[start:start + self.batch_size], context.device)
            bits, prior, decoder = vlb_bits(context.denoiser, context.pipeline.schedule, x0,
                                            cond=y if conditional else None, steps=steps, variance=self.variance,
                                            generator=g)
            values.append(bits.cpu())
            priors.append(prior.cpu())
            decoders.append(decoder.cpu())
        value, spread = mean_and_standard_error(torch.cat(values))
        K = process(context.pipeline.schedule, steps).K
        return MetricResult(name="bpd-vlb", value=value, spread=spread, n=len(index), unit="bits/dim",
                            details={"steps": K, "prior term": round(float(torch.cat(priors).mean()), 6),
                                     "decoder term": round(float(torch.cat(decoders).mean()), 4),
                                     "variance": self.variance, "conditional": conditional})
