"""Exact denoisers for data whose noisy marginals are known in closed form.

For x₀ ~ N(μ, s²I) and x_t = √ᾱ·x₀ + √(1−ᾱ)·ε, x_t ~ N(√ᾱ·μ, (ᾱs² + 1 − ᾱ)I), and the
minimum-MSE predictor of ε is E[ε | x_t] = √(1−ᾱ)·(x_t − √ᾱ·μ)/(ᾱs² + 1 − ᾱ). For a mixture
Σ_k π_k N(μ_k, s_k²I) it is the responsibility-weighted sum of the components' predictors.
Used as a denoiser, these make every sampler's error measurable against the truth.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from difftk.maths.diffusion import convert, expand, target_of


def _as_tensor(value, dtype=torch.float64) -> torch.Tensor:
    return value.detach().to(dtype) if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=dtype)


class GaussianMixtureOracle(nn.Module):
    """The exact denoiser of a mixture of isotropic Gaussians Σ_k π_k N(μ_k, s_k²I).

    :param schedule: any NoiseSchedule; ᾱ(t) is taken from it.
    :param means: [K, *event_shape] component means.
    :param stds: [K] (or scalar) component standard deviations s_k.
    :param weights: [K] mixture weights π_k (normalised here); uniform by default.
    :param prediction: the parameterisation it outputs, any of the core's ``PREDICTIONS``.

    With ``cond`` (a [B] tensor of component indices) it is the exact *conditional*
    denoiser of component ``cond``; index ``num_classes`` means unconditional.
    """

    def __init__(self, schedule, means, stds=1.0, weights=None, prediction: str = "eps") -> None:
        super().__init__()
        self.schedule = schedule
        self.prediction = prediction
        self.learned_variance = False
        means = _as_tensor(means)
        K = means.shape[0]
        self.register_buffer("means", means)
        self.register_buffer("stds", _as_tensor(stds).expand(K).clone())
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else _as_tensor(weights)
        self.register_buffer("weights", w / w.sum())
        self.num_classes = K

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[1:])

    def _terms(self, x_t: torch.Tensor, t: torch.Tensor):
        x = x_t.to(torch.float64).flatten(1)  # [B, D]
        ab = self.schedule.alpha_bar(t.to(torch.float64))[:, None]  # [B, 1]
        mu = self.means.flatten(1)  # [K, D]
        var = ab * self.stds[None, :] ** 2 + 1 - ab  # [B, K]: variance of x_t under component k
        diff = x[:, None, :] - ab.sqrt()[:, :, None] * mu[None]  # [B, K, D]
        D = x.shape[1]
        log_n = -0.5 * (diff**2).sum(-1) / var - 0.5 * D * torch.log(2 * math.pi * var)
        return ab, var, diff, log_n + torch.log(self.weights)[None, :]

    def class_log_posterior(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p(k | x_t) [B, K]: the exact noise-aware classifier of the mixture components."""
        return torch.log_softmax(self._terms(x_t, t)[3], dim=1)

    def log_prob(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """log q_t(x) [B] of the noisy marginal at t (the data density at t = 0)."""
        t = torch.zeros(x.shape[0], dtype=torch.float64) if t is None else t
        return torch.logsumexp(self._terms(x, t)[3], dim=1)

    def _posterior(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None):
        ab, var, diff, log_w = self._terms(x_t, t)
        if cond is not None:
            mask = torch.nn.functional.one_hot(cond.clamp(max=self.num_classes - 1), self.num_classes).bool()
            mask = mask | (cond == self.num_classes)[:, None]
            log_w = log_w.masked_fill(~mask, -math.inf)
        return ab, var, diff, torch.softmax(log_w, dim=1)  # responsibilities p(k | x_t) [B, K]

    def score(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """∇ log q_t(x_t) in float64."""
        _, var, diff, resp = self._posterior(x_t, t, cond)
        s = -(resp[:, :, None] * diff / var[:, :, None]).sum(1)
        return s.view(x_t.shape)

    def mean_x0(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """E[x₀ | x_t] = Σ_k p(k | x_t)·(μ_k + √ᾱ·s_k²·(x_t − √ᾱ μ_k)/(ᾱ s_k² + 1 − ᾱ)), float64;
        finite at ᾱ = 0 (pure noise), where it is the data mean."""
        return self._eps_x0(x_t, t, cond)[1]

    def _eps_x0(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None):
        """E[ε | x_t] = −√(1−ᾱ)·score and E[x₀ | x_t], from one evaluation of the posterior over k."""
        ab, var, diff, resp = self._posterior(x_t, t, cond)
        score = -(resp[:, :, None] * diff / var[:, :, None]).sum(1)
        gain = ab.sqrt() * self.stds[None, :] ** 2 / var  # [B, K]
        x0 = (resp[:, :, None] * (self.means.flatten(1)[None] + gain[:, :, None] * diff)).sum(1)
        return (-score * (1 - ab).sqrt()).view(x_t.shape), x0.view(x_t.shape)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        ab = self.schedule.alpha_bar(t.to(torch.float64))
        eps, x0 = self._eps_x0(x_t, t, cond)  # x₀ exact, so no division by √ᾱ where ᾱ → 0
        if self.prediction == "edm":
            return convert("x0", x0, "edm", x_t.to(torch.float64), ab).to(x_t.dtype)
        return target_of(self.prediction, x0, eps, ab).to(x_t.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        """n exact samples of the data (float64); with ``cond``, of the given components."""
        k = cond if cond is not None else torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n, *self.event_shape), generator=generator, dtype=torch.float64)
        return self.means[k] + expand(self.stds[k], z) * z


class GaussianOracle(GaussianMixtureOracle):
    """The exact denoiser of data N(μ, s²I): E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱμ)/(ᾱs² + 1 − ᾱ).

    :param mean: scalar or a tensor of the data's shape (without batch).
    :param std: s, a positive scalar.
    :param shape: event shape when ``mean`` is a scalar.
    """

    def __init__(self, schedule, mean=0.0, std=1.0, shape=(1,), prediction: str = "eps") -> None:
        mean = _as_tensor(mean)
        if mean.ndim == 0:
            mean = mean.expand(tuple(shape)).clone()
        super().__init__(schedule, mean[None], stds=float(std), prediction=prediction)
