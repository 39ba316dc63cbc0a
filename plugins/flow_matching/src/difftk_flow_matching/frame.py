"""The flow frame of any VP model (docs/math.md, "The flow path").

The straight path x_τ = (1−τ)·x₀ + τ·ε is the VP state x_t = α·x₀ + σ·ε (α = √ᾱ, σ = √(1−ᾱ))
scaled by 1/(α+σ): x_τ = x_t/(α+σ), at τ = σ/(α+σ). So every schedule's time t has a flow time
τ(t), and the flow path as a schedule is ᾱ(τ) = (1−τ)²/((1−τ)² + τ²). Its velocity
dx_τ/dτ = ε − x₀ is the core's ``flow`` parameterisation.
"""

from __future__ import annotations

import numpy as np
import torch


def flow_time(alpha_bar):
    """τ = σ/(α+σ) from ᾱ (float64 NumPy or tensor): 0 at ᾱ = 1, 1 at ᾱ = 0."""
    if isinstance(alpha_bar, torch.Tensor):
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    else:
        a, s = np.sqrt(alpha_bar), np.sqrt(1 - np.asarray(alpha_bar, dtype=np.float64))
    return s / (a + s)


def alpha_bar_of_flow_time(tau):
    """ᾱ = (1−τ)²/((1−τ)² + τ²), the inverse of :func:`flow_time`."""
    return (1 - tau) ** 2 / ((1 - tau) ** 2 + tau**2)


def shift_flow_time(tau, shift: float):
    """τ' = s·τ/(1 + (s−1)·τ): Esser et al. 2024's resolution-dependent shift (their eq. 23), which
    for s > 1 spends more of a grid at high noise; s = 1 is the identity."""
    return shift * tau / (1 + (shift - 1) * tau)
