"""High-precision references for the statistics in :mod:`difftk.maths.stats`, computed with mpmath.

They follow the textbook formulas, not the float64 algorithms they check, and are slow (pure
Python): for matrices of up to ~100 rows.
"""

from __future__ import annotations

import mpmath
import numpy as np
import torch


def _exact(a) -> list:
    """The values of a 1-D or 2-D float64 or longdouble array as (nested) lists of mpf, exactly: a
    longdouble is split into float64 parts hi + lo (its 64-bit significand fits in two doubles)."""
    arr = np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a)
    hi = arr.astype(np.float64)
    lo = (arr - hi).astype(np.float64) if arr.dtype == np.longdouble else np.zeros_like(hi)
    values = [mpmath.mpf(float(h)) + mpmath.mpf(float(lw)) for h, lw in zip(hi.ravel(), lo.ravel())]
    if arr.ndim == 1:
        return values
    columns = arr.shape[1]
    return [values[i * columns:(i + 1) * columns] for i in range(arr.shape[0])]


def moments_precise(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] of features [N, D], summed in extended precision
    (numpy's longdouble, 64-bit significand on x86) and returned as longdouble arrays: the products
    of float32 features are exact, so the covariance is correct to ~N·2⁻⁶⁴ relative."""
    x = features.detach().cpu().numpy().astype(np.longdouble)
    mu = x.sum(axis=0) / len(x)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def frechet_distance_precise(mu1, sigma1, mu2, sigma2, dps: int = 30) -> float:
    """d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr(Σ₁^½ Σ₂ Σ₁^½)^½ at ``dps`` decimal digits: Σ₁^½ and the
    outer square root by symmetric eigendecompositions (mpmath ``eigsy``), negative eigenvalues (which
    at this precision are round-off of 0 of order 10^−dps) set to 0. The inputs are taken as exact."""
    with mpmath.workdps(dps):
        s1, s2 = mpmath.matrix(_exact(sigma1)), mpmath.matrix(_exact(sigma2))
        m1, m2 = _exact(mu1), _exact(mu2)
        w, q = mpmath.eigsy(s1)
        root1 = q * mpmath.diag([mpmath.sqrt(v) if v > 0 else mpmath.mpf(0) for v in w]) * q.T
        inner, _ = mpmath.eigsy(root1 * s2 * root1)
        cross = mpmath.fsum(mpmath.sqrt(v) for v in inner if v > 0)
        trace = mpmath.fsum(s1[i, i] for i in range(s1.rows)) + mpmath.fsum(s2[i, i] for i in range(s2.rows))
        d2 = mpmath.fsum((a - b) ** 2 for a, b in zip(m1, m2)) + trace - 2 * cross
        return float(d2)
