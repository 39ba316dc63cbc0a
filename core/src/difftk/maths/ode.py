"""Batched ODE solvers in torch: adaptive Dormand–Prince 5(4), and fixed-step Euler and Heun.

The right-hand side is ``f(t, y) -> (dy/dt, aux)`` with a scalar time shared by the batch
and ``aux`` anything the caller wants back with each accepted step (x̂₀ for the samplers).
The adaptive solver accepts a step when, for every example b, the RMS over its dimensions
of err/(atol + rtol·max(|y|, |y_new|)) is at most 1 — the norm of Hairer, Nørsett & Wanner
(Solving ODEs I, §II.4, eq. 4.11) taken per example, so no example is solved less
accurately because others in the batch are easy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from difftk.errors import DifftkError

RHS = Callable[[float, torch.Tensor], tuple[torch.Tensor, Any]]
OnStep = Callable[[int, float, float, torch.Tensor, Any, int], None]

# Dormand & Prince (1980), RK5(4)7FM: the nodes c, the matrix a, the 5th-order weights b
# (the last row of a: the method is first-same-as-last) and e = b − b̂ (the error weights).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def _rms(x: torch.Tensor) -> torch.Tensor:
    """Per-example root mean square over every dimension but the first: [B]."""
    return x.reshape(x.shape[0], -1).pow(2).mean(dim=1).sqrt()


def _combine(y: torch.Tensor, h: float, weights: tuple[float, ...], k: list[torch.Tensor]) -> torch.Tensor:
    out = y.clone()
    for w, ki in zip(weights, k, strict=False):
        if w != 0.0:
            out.add_(ki, alpha=h * w)
    return out


def dopri5(f: RHS, y0: torch.Tensor, t0: float, t1: float, *, rtol: float, atol: float,
           max_steps: int = 100_000, on_step: OnStep | None = None, variable: str = "t") -> tuple[torch.Tensor, int]:
    """Integrate dy/dt = f(t, y) from t0 to t1 (either direction) by Dormand–Prince 5(4) with
    step-size control (Hairer et al., Solving ODEs I, §II.4–5). Returns (y(t1), evaluations).

    ``f(t, y)`` returns a pair ``(dy/dt, aux)``: ``aux`` is anything the caller wants reported with
    the step (a sampler's x̂₀ at t), passed on to ``on_step``; return ``(dy, None)`` when there is none.
    ``on_step(index, t, t_next, y_next, aux_at_t, nfe)`` is called after each accepted step;
    ``variable`` names the integration variable in errors.
    """
    span = t1 - t0
    direction = 1.0 if span > 0 else -1.0
    k1, aux = f(t0, y0)
    nfe = 1
    # initial step: Hairer et al. §II.4, "Starting step size" (one extra evaluation)
    scale = atol + rtol * y0.abs()
    d0, d1 = float(_rms(y0 / scale).max()), float(_rms(k1 / scale).max())
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, abs(span))
    k_probe, _ = f(t0 + direction * h0, y0 + direction * h0 * k1)
    nfe += 1
    d2 = float(_rms((k_probe - k1) / scale).max()) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / 5)
    h = min(100 * h0, h1, abs(span))

    t, y, index = t0, y0, 0
    while direction * (t1 - t) > 0:
        if index >= max_steps:
            raise DifftkError(f"rk45 took {max_steps:,} steps without reaching {variable}={t1:g} (at {variable}={t:.6g}): "
                              "loosen rtol/atol or use a fixed-step method")
        h = min(h, abs(t1 - t))
        last = h >= abs(t1 - t) * (1 - 1e-12)
        hs = direction * h
        k = [k1]
        for i in range(1, 7):
            ki, aux_i = f(t + _C[i] * hs, _combine(y, hs, _A[i], k))
            k.append(ki)
        nfe += 6
        y_new = _combine(y, hs, _A[6], k[:6])
        err = _combine(torch.zeros_like(y), hs, _E, k)
        tol = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        norm = float(_rms(err / tol).max())
        if norm <= 1.0:
            t_next = t1 if last else t + hs
            if on_step is not None:
                on_step(index, t, t_next, y_new, aux, nfe)
            t, y, k1, aux = t_next, y_new, k[6], aux_i
            index += 1
            h *= 10.0 if norm == 0.0 else min(10.0, 0.9 * norm ** -0.2)
        else:
            h *= max(0.2, 0.9 * norm ** -0.2)
            if h < 1e-14 * max(1.0, abs(t)):
                raise DifftkError(f"rk45 step size underflow at {variable}={t:.6g}: the drift is not finite or not smooth")
    return y, nfe


def fixed_steps(f: RHS, y0: torch.Tensor, times: Any, *, method: str,
                on_step: OnStep | None = None) -> tuple[torch.Tensor, int]:
    """Euler (1 evaluation per step) or Heun's 2nd-order method (2; the trapezoidal
    corrector of Karras et al. 2022, Alg. 1) on the given grid of times. Returns (y, evaluations)."""
    y, nfe = y0, 0
    for index in range(len(times) - 1):
        t, s = float(times[index]), float(times[index + 1])
        h = s - t
        d, aux = f(t, y)
        nfe += 1
        y_euler = y + h * d
        if method == "euler":
            y = y_euler
        elif method == "heun":
            d_prime, _ = f(s, y_euler)  # apply the 2nd-order correction
            nfe += 1
            y = y + 0.5 * h * (d + d_prime)
        else:
            raise ValueError(f"unknown fixed-step method {method!r}; expected euler or heun")
        if on_step is not None:
            on_step(index, t, s, y, aux, nfe)
    return y, nfe


def estimated_total(index: int, t_next: float, t_end: float, last_step: float) -> int:
    """Steps an adaptive solve will take: those done plus what remains at the last step size."""
    if last_step == 0.0:
        return index + 1
    return index + 1 + math.ceil(abs(t_end - t_next) / abs(last_step) - 1e-9)
