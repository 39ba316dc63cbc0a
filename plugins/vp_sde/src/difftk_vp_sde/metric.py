"""``bpd-ode``: bits per dimension of held-out 8-bit images, by the probability-flow ODE."""

from __future__ import annotations

from typing import ClassVar

import math

import attrs
import torch
from difftk.components.protocols import num_classes_of
from difftk.evaluation.context import EvalContext, MetricResult, mean_and_standard_error
from difftk.options import option

from difftk_vp_sde.likelihood import DIVERGENCES, bits_per_dim, dequantize, ode_log_likelihood


@attrs.frozen
class BitsPerDimODE:
    """Bits/dim of held-out images by the probability-flow ODE (Song et al. 2021, App. D.2).

    Each uint8 image u is dequantized to x = (u + U)/128 − 1, U ~ U[0, 1) (bins of width 2/256
    on [−1, 1)), log p(x) is computed by :func:`~difftk_vp_sde.likelihood.ode_log_likelihood`,
    and bpd = −log p(x)/(D ln 2) + 7 — an upper bound on the discrete −log₂ P(u)/D. The value
    is the mean over ``n`` test images, the spread its standard error. A class-conditional
    model is evaluated on log p(x | y) with the images' labels.
    """

    #: which values are better, for `difftk compare`'s tests against the best cell
    better: ClassVar[str] = "lower"
    #: a likelihood of the data under the diffusion model: refused for a latent model, before any work
    likelihood: ClassVar[bool] = True

    n: int = option(64, help="held-out images evaluated", ge=1)
    divergence: str = option("rademacher", help="∇·f: exact (D backward passes) or a Hutchinson estimate", choices=DIVERGENCES)
    n_probes: int = option(1, help="Hutchinson probes averaged per evaluation", ge=1, le=1000)
    rtol: float = option(1e-5, help="relative tolerance of the rk45 solve", gt=0.0, lt=1.0)
    atol: float = option(1e-5, help="absolute tolerance of the rk45 solve", gt=0.0, lt=1.0)
    eps: float = option(1e-5, help="the ODE starts at t = ε", gt=0.0, lt=1.0)
    batch_size: int = option(64, help="images integrated at once", ge=1)

    def evaluate(self, context: EvalContext) -> MetricResult:
        data = context.held_out("bpd-ode", kind="image")
        g = torch.Generator().manual_seed(context.seed)  # on the CPU: the same draws on every device
        index = torch.randperm(len(data), generator=g)[: self.n]
        conditional = num_classes_of(context.denoiser) > 0 and data.labels is not None
        D = math.prod(data.shape)
        values, nfe = [], 0
        for start in range(0, len(index), self.batch_size):
            batch = index[start:start + self.batch_size]
            x = dequantize(data.read(batch)[0].to(context.device), g)  # the stored uint8 pixels, any dataset type
            cond = data.labels[batch].to(context.device) if conditional else None
            result = ode_log_likelihood(context.denoiser, context.pipeline.schedule, x, cond=cond,
                                        divergence=self.divergence, n_probes=self.n_probes, eps=self.eps,
                                        rtol=self.rtol, atol=self.atol, generator=g)
            values.append(bits_per_dim(result.log_p, D).cpu())
            nfe += result.nfe
        value, spread = mean_and_standard_error(torch.cat(values))
        return MetricResult(name="bpd-ode", value=value, spread=spread, n=len(index), unit="bits/dim",
                            details={"nfe": nfe, "divergence": self.divergence, "conditional": conditional,
                                     "dequantization": "x = (u + U)/128 − 1, U ~ U[0, 1)"})
