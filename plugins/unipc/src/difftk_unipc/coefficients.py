"""The coefficients of one UniPC update in data prediction (Zhao et al. 2023, §3), in float64.

A step goes from λ_s to λ_t = λ_s + h, where λ = log(α/σ) is half the log-SNR (α = √ᾱ,
σ = √(1−ᾱ)). In data prediction the probability-flow ODE is solved exactly by
(Lu et al. 2022, DPM-Solver++, eq. 9)

    x_t = (σ_t/σ_s)·x_s + α_t·∫_0^h e^{−(h−u)}·x̂₀(λ_s + u) du,

and a Taylor expansion of x̂₀ in λ turns the integral into Σ_n h^{n+1}·φ_{n+1}(−h)·x̂₀^{(n)}(λ_s)
with the φ-functions φ_k(z) = ∫_0^1 e^{(1−θ)z}·θ^{k−1}/(k−1)! dθ. UniPC keeps the first term exactly
and replaces the rest by differences of earlier (or, for the corrector, later) model outputs:

    x_t = (σ_t/σ_s)·x_s + α_t·(1 − e^{−h})·m_s + α_t·B(h)·Σ_m a_m·D_m/r_m,

with r_m = (λ_{s_m} − λ_s)/h, D_m = x̂₀(λ_{s_m}) − m_s and B(h) = h (``bh1``) or 1 − e^{−h}
(``bh2``): the paper's B₁(h) = h and B₂(h) = e^h − 1 of its noise-prediction form with h → −h, as
its data-prediction form has them. Matching the Taylor terms n = 1..N gives the order
conditions Σ_m a_m·r_m^{n−1} = n!·h·φ_{n+1}(−h)/B(h) (the paper's R_p(h)·a_p = g_p(h)/B(h));
both right-hand sides tend to 1/(n+1) as h → 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

VARIANTS: tuple[str, ...] = ("bh1", "bh2")


def phi(k: int, z: float) -> float:
    """φ_k(z) for k ≥ 1: Σ_j z^j/(j+k)! for |z| < 1, else φ_1 = (e^z − 1)/z and
    φ_{j+1} = (φ_j − 1/j!)/z (the recursion loses accuracy only for small |z|, where the series is used)."""
    if abs(z) < 1.0:
        term, total = 1.0 / math.factorial(k), 0.0
        for j in range(40):
            total += term
            term *= z / (j + k + 1)
        return total
    value = math.expm1(z) / z
    for j in range(1, k):
        value = (value - 1.0 / math.factorial(j)) / z
    return value


def b_of_h(h: float, variant: str) -> float:
    """B(h) of the data-prediction update: h for ``bh1``, 1 − e^{−h} for ``bh2``."""
    if variant == "bh1":
        return h
    if variant == "bh2":
        return -math.expm1(-h)
    raise ValueError(f"unknown UniPC variant {variant!r}; expected one of {', '.join(VARIANTS)}")


def order_targets(h: float, n: int, variant: str) -> np.ndarray:
    """g_j(h)/B(h) = j!·h·φ_{j+1}(−h)/B(h) for j = 1..n: the right-hand sides of the order conditions."""
    B = b_of_h(h, variant)
    return np.array([math.factorial(j) * h * phi(j + 1, -h) / B for j in range(1, n + 1)], dtype=np.float64)


def difference_weights(r: Sequence[float], h: float, variant: str) -> np.ndarray:
    """a_1..a_N solving Σ_m a_m·r_m^{n−1} = g_n(h)/B(h), n = 1..N (a Vandermonde system in the r_m).

    With one difference (N = 1: UniP-2, or UniC-1 after a first-order step) a₁ = 1/2, the limit of
    g₁/B as h → 0, as the authors' code and diffusers do; it meets the order condition to O(h),
    which is all the order needs there.
    """
    r = np.asarray(r, dtype=np.float64)
    if r.size == 1:
        return np.array([0.5])
    R = np.vander(r, increasing=True).T  # R[n, m] = r_m^n
    return np.linalg.solve(R, order_targets(h, r.size, variant))


def update(lambdas: Sequence[float], lambda_t: float, alpha_t: float, sigma_ratio: float, variant: str,
           corrector: bool) -> tuple[float, tuple[float, ...]]:
    """One UniP (``corrector=False``) or UniC (``corrector=True``) update as a linear combination:
    x_t = c_x·x_s + Σ_j c_j·m_j.

    ``lambdas`` = (λ_s, λ_{s−1}, …): the times of the model outputs used besides a new one, newest
    first (one of them: first order; p of them: UniP-p, or UniC-p with the new output at λ_t).
    ``sigma_ratio`` = σ_t/σ_s. The returned c_j belong, in this order, to the new output at λ_t
    (corrector only), then m_s, m_{s−1}, … — newest first.
    """
    lambda_s = float(lambdas[0])
    h = lambda_t - lambda_s
    c_s = alpha_t * -math.expm1(-h)  # α_t·(1 − e^{−h}), the exact weight of a constant x̂₀
    r = [(float(lam) - lambda_s) / h for lam in lambdas[1:]] + ([1.0] if corrector else [])
    if not r:
        return sigma_ratio, (c_s,)
    a = difference_weights(r, h, variant)
    scale = alpha_t * b_of_h(h, variant)
    c_diff = [scale * a_m / r_m for a_m, r_m in zip(a, r, strict=True)]  # weight of D_m/r_m, on x̂₀ at λ_{s_m}
    c_s -= sum(c_diff)  # each D_m = x̂₀(λ_{s_m}) − m_s
    older = tuple(c_diff[:len(lambdas) - 1])
    new = (c_diff[-1],) if corrector else ()
    return sigma_ratio, (*new, c_s, *older)
