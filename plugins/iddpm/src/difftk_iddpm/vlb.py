"""The terms of the variational bound for one step of a (respaced) process (Nichol & Dhariwal 2021, eq. 4–6)."""

from __future__ import annotations

import torch
from difftk.likelihood import discretized_gaussian_log_likelihood, gaussian_log_likelihood, mean_bits, normal_kl

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
    return chosen.view(-1, *([1] * (like.ndim - 1))).expand_as(like)


def step_term(proc: Process, k: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, x0_hat: torch.Tensor,
              var_interp: torch.Tensor | None, *, fixed: str = "beta", decoder: str = "discrete") -> torch.Tensor:
    """L_{k−1} in bits/dim per example [B]: KL(q(x_{k−1}|x_k, x₀) ‖ p_θ(x_{k−1}|x_k)) for k > 1 and the
    decoder −log p_θ(x₀|x₁) for k = 1, where p_θ's mean is μ̃(x_k, x̂₀) (eq. 11) and its variance
    :func:`model_log_variance`. ``decoder`` is ``discrete`` for 8-bit images in [−1, 1] (eq. 13 of Ho
    et al. 2020), ``continuous`` for real-valued data (a Gaussian density)."""
    shape = (-1, *([1] * (x0.ndim - 1)))
    coef_x0 = proc.at(k, "coef_x0").to(x0.dtype).view(shape)
    coef_xt = proc.at(k, "coef_xt").to(x0.dtype).view(shape)
    true_mean = coef_x0 * x0 + coef_xt * x_t
    true_log_var = proc.at(k, "log_beta_tilde").to(x0.dtype).view(shape)
    mean = coef_x0 * x0_hat + coef_xt * x_t
    log_var = model_log_variance(proc, k, var_interp, x0, fixed)
    kl = mean_bits(normal_kl(true_mean, true_log_var, mean, log_var))
    if decoder == "discrete":
        nll = -mean_bits(discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var))
    else:
        nll = -mean_bits(gaussian_log_likelihood(x0, mean, log_var))
    return torch.where(k == 1, nll, kl)
