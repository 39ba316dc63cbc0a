"""Shared maths of variance-preserving diffusion. Plugins call these; they never re-derive them.

Notation (Ho et al. 2020; Kingma et al. 2021): ``alpha_bar`` is ᾱ(t), the signal fraction left
at time t; x_t = √ᾱ·x₀ + √(1−ᾱ)·ε. Every function here is plain arithmetic, so ``alpha_bar``
may be a Python float, a NumPy array, or a tensor of shape [B] (broadcast over the trailing
dimensions of ``x``) — the coefficient functions are exact in float64 when given float64.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

#: What a denoiser may predict: ε, x₀, v (Salimans & Ho 2022), ``flow`` — the rectified-flow
#: velocity u = ε − x₀ (Lipman et al. 2023; Liu et al. 2023), and ``edm`` — the network output F
#: of Karras et al. 2022's preconditioning, x̂₀ = c_skip·x_EDM + c_out·F (σ_data = 0.5, their
#: Table 1). Each is a function of (x₀, ε, ᾱ) alone, so every one converts to every other.
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v", "flow", "edm")

#: σ_data of the ``edm`` parameterisation (Karras et al. 2022, Table 1: data in [−1, 1])
EDM_SIGMA_DATA = 0.5


def expand(a: Any, x: torch.Tensor) -> Any:
    """Make a per-example coefficient of shape [B] broadcast against ``x`` of shape [B, ...]."""
    if isinstance(a, torch.Tensor) and a.ndim == 1 and x.ndim > 1:
        return a.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
    return a


def _sqrt(a: Any) -> Any:
    return a.sqrt() if isinstance(a, torch.Tensor) else a**0.5


# --- the forward process q(x_t | x₀) ---------------------------------------------------------


def q_sample(x0: torch.Tensor, alpha_bar: Any, eps: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ·x₀ + √(1−ᾱ)·ε — a sample of q(x_t | x₀) (Ho et al. 2020, eq. 4)."""
    ab = expand(alpha_bar, x0)
    return _sqrt(ab) * x0 + _sqrt(1 - ab) * eps


def q_mean_variance(x0: torch.Tensor, alpha_bar: Any) -> tuple[torch.Tensor, Any]:
    """Mean √ᾱ·x₀ and variance 1−ᾱ of q(x_t | x₀)."""
    ab = expand(alpha_bar, x0)
    return _sqrt(ab) * x0, 1 - ab


# --- conversions between the parameterisations ------------------------------------------------


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: Any) -> torch.Tensor:
    """x₀ = (x_t − √(1−ᾱ)·ε) / √ᾱ."""
    ab = expand(alpha_bar, x_t)
    return (x_t - _sqrt(1 - ab) * eps) / _sqrt(ab)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: Any) -> torch.Tensor:
    """ε = (x_t − √ᾱ·x₀) / √(1−ᾱ)."""
    ab = expand(alpha_bar, x_t)
    return (x_t - _sqrt(ab) * x0) / _sqrt(1 - ab)


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: Any) -> torch.Tensor:
    """v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022, eq. 7 with α=√ᾱ, σ=√(1−ᾱ))."""
    ab = expand(alpha_bar, x0)
    return _sqrt(ab) * eps - _sqrt(1 - ab) * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: Any) -> torch.Tensor:
    """x₀ = √ᾱ·x_t − √(1−ᾱ)·v."""
    ab = expand(alpha_bar, x_t)
    return _sqrt(ab) * x_t - _sqrt(1 - ab) * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: Any) -> torch.Tensor:
    """ε = √(1−ᾱ)·x_t + √ᾱ·v."""
    ab = expand(alpha_bar, x_t)
    return _sqrt(1 - ab) * x_t + _sqrt(ab) * v


def score_from_eps(eps: torch.Tensor, alpha_bar: Any) -> torch.Tensor:
    """∇ log q(x_t) = −ε / √(1−ᾱ) (Song et al. 2021, the VP marginal)."""
    return -eps / _sqrt(1 - expand(alpha_bar, eps))


def eps_from_score(score: torch.Tensor, alpha_bar: Any) -> torch.Tensor:
    """ε = −√(1−ᾱ)·∇ log q(x_t)."""
    return -score * _sqrt(1 - expand(alpha_bar, score))


def flow_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """u = ε − x₀: the velocity d/dτ of the straight path (1−τ)·x₀ + τ·ε (Liu et al. 2023, eq. 1)."""
    return eps - x0


def _flow_frame(alpha_bar: Any) -> tuple[Any, Any]:
    """α = √ᾱ and σ = √(1−ᾱ): the VP state is x = α·x₀ + σ·ε, the flow state x/(α+σ)."""
    return _sqrt(alpha_bar), _sqrt(1 - alpha_bar)


def eps_x0_from_flow(x_t: torch.Tensor, u: torch.Tensor, alpha_bar: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """ε = (x_t + α·u)/(α+σ) and x₀ = (x_t − σ·u)/(α+σ), solving x_t = α·x₀ + σ·ε, u = ε − x₀."""
    a, s = _flow_frame(expand(alpha_bar, x_t))
    return (x_t + a * u) / (a + s), (x_t - s * u) / (a + s)


def edm_coefficients(alpha_bar: Any, sigma_data: float = EDM_SIGMA_DATA) -> tuple[Any, Any]:
    """(a, b) with x̂₀ = a·x_t + b·F for the VP state x_t: Karras et al. 2022, Table 1, with
    σ_EDM² = (1−ᾱ)/ᾱ and x_EDM = x_t/√ᾱ, so a = c_skip/√ᾱ = σ_d²·√ᾱ/D and b = c_out = √(1−ᾱ)·σ_d/√D,
    D = 1 − ᾱ + ᾱ·σ_d² (finite at ᾱ = 0, where x̂₀ = σ_d·F)."""
    d = 1 - alpha_bar + alpha_bar * sigma_data**2
    return sigma_data**2 * _sqrt(alpha_bar) / d, _sqrt(1 - alpha_bar) * sigma_data / _sqrt(d)


def eps_and_x0(prediction: str, output: torch.Tensor, x_t: torch.Tensor, alpha_bar: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Both ε̂ and x̂₀ from a denoiser output in parameterisation ``prediction``."""
    if prediction == "eps":
        return output, x0_from_eps(x_t, output, alpha_bar)
    if prediction == "x0":
        return eps_from_x0(x_t, output, alpha_bar), output
    if prediction == "v":
        return eps_from_v(x_t, output, alpha_bar), x0_from_v(x_t, output, alpha_bar)
    if prediction == "flow":
        return eps_x0_from_flow(x_t, output, alpha_bar)
    if prediction == "edm":
        return eps_x0_from_edm(x_t, output, alpha_bar)
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {', '.join(PREDICTIONS)}")


def eps_x0_from_edm(x_t: torch.Tensor, output: torch.Tensor, alpha_bar: Any,
                    sigma_data: float = EDM_SIGMA_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """ε̂ and x̂₀ of an ``edm`` output F: x̂₀ = a·x_t + b·F (:func:`edm_coefficients`) and
    ε̂ = (x_t − √ᾱ·x̂₀)/σ written without the division: 1 − √ᾱ·a = σ²/D, so
    ε̂ = σ·x_t/D − √ᾱ·σ_d·F/√D (σ = √(1−ᾱ), D = σ² + ᾱ·σ_d²). The quotient form cancels two numbers
    near x_t and divides by σ, which float32 rounds to 0 for ᾱ within 6·10⁻⁸ of 1 (0/0: NaN)."""
    ab = expand(alpha_bar, x_t)
    a, b = edm_coefficients(ab, sigma_data)
    d = 1 - ab + ab * sigma_data**2
    eps = _sqrt(1 - ab) / d * x_t - _sqrt(ab) * sigma_data / _sqrt(d) * output
    return eps, a * x_t + b * output


def convert(prediction: str, output: torch.Tensor, to: str, x_t: torch.Tensor, alpha_bar: Any) -> torch.Tensor:
    """Convert a denoiser output from parameterisation ``prediction`` to ``to`` (one of
    :data:`PREDICTIONS`, or score)."""
    if prediction == to:
        return output
    if to not in (*PREDICTIONS, "score"):
        raise ValueError(f"unknown target {to!r}; expected {', '.join(PREDICTIONS)} or score")
    eps, x0 = eps_and_x0(prediction, output, x_t, alpha_bar)
    if to == "score":
        return score_from_eps(eps, alpha_bar)
    if to == "edm":  # F = (x₀ − a·x_t)/b needs x_t itself
        a, b = edm_coefficients(expand(alpha_bar, x_t))
        return (x0 - a * x_t) / b
    return target_of(to, x0, eps, alpha_bar)


def target_of(to: str, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: Any) -> torch.Tensor:
    """What a denoiser predicting ``to`` should output for x_t = √ᾱ·x₀ + √(1−ᾱ)·ε."""
    if to == "eps":
        return eps
    if to == "x0":
        return x0
    if to == "v":
        return v_from_x0_eps(x0, eps, alpha_bar)
    if to == "flow":
        return flow_from_x0_eps(x0, eps)
    if to == "edm":
        a, b = edm_coefficients(expand(alpha_bar, x0))
        return (x0 - a * q_sample(x0, alpha_bar, eps)) / b
    raise ValueError(f"unknown target {to!r}; expected one of {', '.join(PREDICTIONS)}")


def error_gain(prediction: str, alpha_bar: Any) -> Any:
    """‖δy‖²/‖δx̂₀‖²: how a squared error in x̂₀ grows when written in parameterisation y at fixed
    x_t (SNR = ᾱ/(1−ᾱ)): ε: SNR; x₀: 1; v: SNR + 1 = 1/σ²; flow: ((α+σ)/σ)² = (1 + √SNR)²;
    edm: 1/c_out². A weighting stated on x₀ errors is divided by it to act on y's errors."""
    a, s = _flow_frame(alpha_bar)
    if prediction == "eps":
        return alpha_bar / (1 - alpha_bar)
    if prediction == "x0":
        return alpha_bar * 0 + 1
    if prediction == "v":
        return 1 / (1 - alpha_bar)
    if prediction == "flow":
        return ((a + s) / s) ** 2
    if prediction == "edm":
        return 1 / edm_coefficients(alpha_bar)[1] ** 2
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {', '.join(PREDICTIONS)}")


# --- the posterior q(x_s | x_t, x₀), s < t ----------------------------------------------------


@attrs.frozen
class Posterior:
    """q(x_s | x_t, x₀) = N(coef_x0·x₀ + coef_xt·x_t, variance), for any s < t.

    With ᾱ_{t|s} = ᾱ_t/ᾱ_s and β_{t|s} = 1 − ᾱ_{t|s} (Kingma et al. 2021, eq. 31–33; on
    adjacent DDPM steps this is Ho et al. 2020, eq. 6–7 with β_t):
    coef_x0 = √ᾱ_s·β_{t|s}/(1−ᾱ_t), coef_xt = √ᾱ_{t|s}·(1−ᾱ_s)/(1−ᾱ_t),
    variance = β̃ = (1−ᾱ_s)/(1−ᾱ_t)·β_{t|s}.
    """

    coef_x0: Any
    coef_xt: Any
    variance: Any
    beta: Any  # β_{t|s} = 1 − ᾱ_t/ᾱ_s, the forward variance of the step


def posterior(alpha_bar_s: Any, alpha_bar_t: Any) -> Posterior:
    """Coefficients of q(x_s | x_t, x₀) from ᾱ_s and ᾱ_t (floats, arrays or tensors)."""
    a_ts = alpha_bar_t / alpha_bar_s
    beta = 1 - a_ts
    return Posterior(
        coef_x0=_sqrt(alpha_bar_s) * beta / (1 - alpha_bar_t),
        coef_xt=_sqrt(a_ts) * (1 - alpha_bar_s) / (1 - alpha_bar_t),
        variance=(1 - alpha_bar_s) / (1 - alpha_bar_t) * beta,
        beta=beta,
    )


def posterior_mean_variance(x0: torch.Tensor, x_t: torch.Tensor, alpha_bar_s: Any, alpha_bar_t: Any) -> tuple[torch.Tensor, Any]:
    """Mean and variance of q(x_s | x_t, x₀)."""
    p = posterior(expand(alpha_bar_s, x_t), expand(alpha_bar_t, x_t))
    return p.coef_x0 * x0 + p.coef_xt * x_t, p.variance
