"""Log-likelihood pieces of the diffusion variational bound, shared by plugins (elementwise, nats).

Ho et al. 2020 §3.3 and Nichol & Dhariwal 2021 §2–3: the bound on −log p(x₀) is
L_vlb = L_0 + L_1 + … + L_{T−1} + L_T with L_T = KL(q(x_T|x₀) ‖ N(0, I)) (the prior term),
L_{t−1} = KL(q(x_{t−1}|x_t, x₀) ‖ p_θ(x_{t−1}|x_t)) and L_0 = −log p_θ(x₀|x₁), a Gaussian
discretized to the 256 bins of 8-bit data in [−1, 1].
"""

from __future__ import annotations

import math
from typing import Any

import torch

from difftk.maths.diffusion import expand, q_mean_variance

LOG2 = math.log(2.0)


def normal_kl(mean1: torch.Tensor, logvar1: Any, mean2: torch.Tensor, logvar2: Any) -> torch.Tensor:
    """KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) = ½(−1 + log σ₂² − log σ₁² + σ₁²/σ₂² + (μ₁ − μ₂)²/σ₂²), elementwise,
    in nats; log-variances may be tensors or floats and broadcast."""
    logvar1, logvar2 = (torch.as_tensor(v, dtype=mean1.dtype, device=mean1.device) for v in (logvar1, logvar2))
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) = ½(1 + erf(x/√2)), exact (the improved-DDPM reference uses a tanh approximation)."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) of 8-bit data x ∈ {−1, −1 + 2/255, …, 1} under N(mean, exp(log_scale)²) integrated over
    x's bin [x − 1/255, x + 1/255], the outer bins reaching to ∓∞ (Ho et al. 2020, eq. 13). Elementwise, nats."""
    centred = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = standard_normal_cdf(inv_std * (centred + 1.0 / 255))
    cdf_min = standard_normal_cdf(inv_std * (centred - 1.0 / 255))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_bin = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_bin))


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, logvar: Any) -> torch.Tensor:
    """log N(x; mean, exp(logvar)), elementwise, nats — the decoder for continuous data."""
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device)
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def prior_kl(x0: torch.Tensor, alpha_bar_T: Any) -> torch.Tensor:
    """L_T = KL(q(x_T | x₀) ‖ N(0, I)), elementwise, nats; ``alpha_bar_T`` a float or a [B] tensor."""
    mean, var = q_mean_variance(x0, alpha_bar_T)
    logvar = torch.log(torch.as_tensor(var, dtype=x0.dtype, device=x0.device))
    return normal_kl(mean, expand(logvar, x0) if logvar.ndim else logvar, torch.zeros_like(x0), 0.0)


def mean_bits(x: torch.Tensor) -> torch.Tensor:
    """Nats per element [B, ...] -> bits per dimension [B]: the mean over all but the batch, / ln 2."""
    return x.reshape(x.shape[0], -1).mean(dim=1) / LOG2
