"""The terms of the variational bound for one step of a (respaced) process (Nichol & Dhariwal 2021, eq. 4–6)."""

from __future__ import annotations

import torch
from difftk.maths.diffusion import expand, posterior_mean_variance
from difftk.maths.likelihood import discretized_gaussian_log_likelihood, gaussian_log_likelihood, mean_bits, normal_kl

from difftk_iddpm.process import Process, learned_log_variance

DECODERS = ("discrete", "continuous")


def model_log_variance(proc: Process, k: torch.Tensor, var_interp: torch.Tensor | None, like: torch.Tensor,
                       fixed: str = "beta") -> torch.Tensor:
    """log Σ_θ at steps k: learned from v when the model has it, else log β_k or log β̃_k (``fixed``)."""
    log_beta = proc.at(k, "log_beta").to(like.dtype)
    log_beta_tilde = proc.at(k, "log_beta_tilde").to(like.dtype)
    if var_interp is not None:
        return learned_log_variance(var_interp, log_beta, log_beta_tilde)
    chosen = log_beta_tilde if fixed == "beta_tilde" else log_beta
    return expand(chosen, like).expand_as(like)


def posterior_mean(proc: Process, k: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """μ̃(x_k, x₀), the mean of q(x_{k−1} | x_k, x₀) at steps k [B] of the process, in x₀'s dtype.

    The core's :func:`~difftk.maths.diffusion.posterior_mean_variance` from ᾱ_{k−1} (ᾱ_0 = 1) and ᾱ_k,
    in float64: it computes in x's dtype, and its coefficients divide by 1 − ᾱ_k ≈ 1e-4 near k = 1,
    which float32 holds to only ~1e-3."""
    alpha_bar_prev = torch.tensor(proc.disc.alphas_cumprod_prev, dtype=torch.float64, device=k.device)[k - 1]
    mean, _ = posterior_mean_variance(x0.double(), x_t.double(), alpha_bar_prev, proc.at(k, "alpha_bar"))
    return mean.to(x0.dtype)


def step_term(proc: Process, k: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, x0_hat: torch.Tensor,
              var_interp: torch.Tensor | None, *, fixed: str = "beta", decoder: str = "discrete") -> torch.Tensor:
    """L_{k−1} in bits/dim per example [B]: KL(q(x_{k−1}|x_k, x₀) ‖ p_θ(x_{k−1}|x_k)) for k > 1 and the
    decoder −log p_θ(x₀|x₁) for k = 1, where p_θ's mean is μ̃(x_k, x̂₀) (eq. 11) and its variance
    :func:`model_log_variance`. ``decoder`` is ``discrete`` for 8-bit images in [−1, 1] (eq. 13 of Ho
    et al. 2020), ``continuous`` for real-valued data (a Gaussian density)."""
    true_mean = posterior_mean(proc, k, x0, x_t)
    true_log_var = expand(proc.at(k, "log_beta_tilde"), x0)
    mean = posterior_mean(proc, k, x0_hat, x_t)
    log_var = model_log_variance(proc, k, var_interp, x0, fixed)
    kl = mean_bits(normal_kl(true_mean, true_log_var, mean, log_var))
    if decoder == "discrete":
        nll = -mean_bits(discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var))
    else:
        nll = -mean_bits(gaussian_log_likelihood(x0, mean, log_var))
    return torch.where(k == 1, nll, kl)
