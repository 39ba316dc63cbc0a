"""Statistics that metrics and comparisons share: Gaussian moments of features, the Fréchet
distance between Gaussians, bootstrap standard errors, and Student's t — its distribution
function through the regularised incomplete beta function, confidence intervals of a mean and
Welch's unequal-variance t-test. Everything in float64."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import attrs
import torch


def moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean μ [D] and unbiased covariance Σ [D, D] of features [N, D], in float64."""
    f = features.reshape(len(features), -1).to(torch.float64)
    if len(f) < 2:
        raise ValueError(f"moments need at least 2 samples, got {len(f)}")
    mu = f.mean(dim=0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def _psd_eigen(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The eigenpairs (w [r], V [D, r]) of a symmetric positive semi-definite Σ [D, D] whose eigenvalue
    exceeds round-off: w > D·ε·max|w|, the rank tolerance of LAPACK's and numpy's ``matrix_rank``. An
    eigenvalue that small is indistinguishable from 0 in float64 (negative ones included), and its
    square root (≈ √ε·‖Σ‖^½) would be an error far above ε. In float64."""
    a = sigma.to(torch.float64)
    w, v = torch.linalg.eigh((a + a.T) / 2)
    keep = w > len(w) * torch.finfo(torch.float64).eps * float(w.abs().max())
    return w[keep], v[:, keep]


def psd_factor(sigma: torch.Tensor) -> torch.Tensor:
    """L = V √W [D, r] with L Lᵀ = Σ, over the eigenpairs of Σ above round-off (:func:`_psd_eigen`)."""
    w, v = _psd_eigen(sigma)
    return v * w.sqrt()


def sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """The symmetric square root Σ^½ = V √W Vᵀ of a symmetric positive semi-definite matrix (by eigh;
    eigenvalues within round-off of 0 count as 0: :func:`_psd_eigen`)."""
    w, v = _psd_eigen(a)
    return (v * w.sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½) between N(μ₁, Σ₁) and N(μ₂, Σ₂) (Dowson &
    Landau 1982; the FID of Heusel et al. 2017, eq. 6), exact to round-off when Σ₁ or Σ₂ is singular:
    :func:`frechet_distance_factors` with the factors of :func:`psd_factor`."""
    return frechet_distance_factors(mu1, psd_factor(sigma1), mu2, psd_factor(sigma2))


def frechet_distance_factors(mu1: torch.Tensor, l1: torch.Tensor, mu2: torch.Tensor, l2: torch.Tensor) -> float:
    """The Fréchet distance d² of N(μ₁, L₁L₁ᵀ) and N(μ₂, L₂L₂ᵀ), given factors Lᵢ [D, rᵢ] of the covariances.

    Σ₁^½Σ₂Σ₁^½ has the nonzero eigenvalues of Σ₂Σ₁ = L₂L₂ᵀL₁L₁ᵀ, which are those of MᵀM = L₂ᵀL₁L₁ᵀL₂
    (M = L₁ᵀL₂): the squared singular values of M. So tr(Σ₁^½Σ₂Σ₁^½)^½ = Σ σ(M), the nuclear norm of
    M, and tr Σᵢ = ‖Lᵢ‖²_F. Singular values move by at most the round-off of M, where the square root
    of a matrix with round-off eigenvalues moves by the square root of it (≈ 1e-8 relative). In float64."""
    l1, l2 = l1.to(torch.float64), l2.to(torch.float64)
    cross = torch.linalg.svdvals(l1.T @ l2).sum() if l1.shape[1] and l2.shape[1] else torch.zeros((), dtype=torch.float64)
    d2 = (mu1 - mu2).to(torch.float64).square().sum() + l1.square().sum() + l2.square().sum() - 2 * cross
    return float(d2.clamp(min=0))


def gaussian_factor(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean μ [D] and a factor L of the unbiased covariance Σ = LLᵀ of features [N, D], in float64: the
    centred features over √(N − 1) when N ≤ D (exact, and no D×D eigendecomposition), else
    :func:`psd_factor` of Σ."""
    f = features.reshape(len(features), -1).to(torch.float64)
    if len(f) > f.shape[1]:
        mu, sigma = moments(f)
        return mu, psd_factor(sigma)
    if len(f) < 2:
        raise ValueError(f"moments need at least 2 samples, got {len(f)}")
    mu = f.mean(dim=0)
    return mu, (f - mu).T / math.sqrt(len(f) - 1)


def frechet_distance_of(x: torch.Tensor, y: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to feature sets x [N, D] and y [M, D]."""
    return frechet_distance_factors(*gaussian_factor(x), *gaussian_factor(y))


def bootstrap_standard_error(statistic: Callable[[torch.Tensor], float], x: torch.Tensor, *, resamples: int = 20,
                             generator: torch.Generator | None = None) -> float:
    """Standard deviation of ``statistic`` over ``resamples`` bootstrap resamples of the rows of x
    (Efron & Tibshirani 1993, §6.2): the standard error of the statistic due to the finite sample x."""
    n = len(x)
    values = torch.tensor([statistic(x[torch.randint(0, n, (n,), generator=generator)]) for _ in range(resamples)],
                          dtype=torch.float64)
    return float(values.std(unbiased=True))


# --- Student's t ----------------------------------------------------------------------------------

#: iterations of the continued fraction before it is declared divergent (it needs O(√max(a, b)))
_MAX_TERMS = 100_000
_TINY = 1e-300


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (Abramowitz & Stegun 26.5.8), evaluated by the modified
    Lentz method (Lentz 1976; Thompson & Barnett 1986): f = 1/(1 + d₁/(1 + d₂/(1 + …))) with
    d_{2m+1} = −(a+m)(a+b+m)x / ((a+2m)(a+2m+1)) and d_{2m} = m(b−m)x / ((a+2m−1)(a+2m)).
    It converges fast for x < (a+1)/(a+b+2)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)  # the first level, d₁ = −(a+b)x/(a+1)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    f = d
    for m in range(1, _MAX_TERMS):
        for coefficient in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + coefficient * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + coefficient / c
            c = c if abs(c) > _TINY else _TINY
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            return f
    raise ArithmeticError(f"the continued fraction of I_x(a={a}, b={b}) at x={x} did not converge")


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) = B(x; a, b)/B(a, b) for a, b > 0 and 0 ≤ x ≤ 1 (A&S 26.5.1), from the continued
    fraction, through the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where that converges faster."""
    if not (a > 0 and b > 0):
        raise ValueError(f"I_x(a, b) needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"I_x(a, b) needs 0 ≤ x ≤ 1, got x={x}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for T ~ Student's t with ``df`` > 0 degrees of freedom (any real df; ∞ is the
    normal): I_{df/(df+t²)}(df/2, ½) (A&S 26.7.1 with 26.5.27)."""
    if not df > 0:
        raise ValueError(f"Student's t needs df > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    if math.isinf(df):
        return math.erfc(abs(t) / math.sqrt(2.0))
    # df/(df+t²) loses every digit when t² ≪ df; the complement t²/(df+t²) does not
    x, complement = df / (df + t * t), t * t / (df + t * t)
    if x < (df / 2 + 1.0) / (df / 2 + 2.5):
        return regularized_incomplete_beta(df / 2, 0.5, x)
    return 1.0 - regularized_incomplete_beta(0.5, df / 2, complement)


def student_t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom (∞: the standard normal)."""
    tail = student_t_two_sided_p(t, df) / 2
    return 1.0 - tail if t > 0 else tail


@functools.lru_cache(maxsize=1024)  # a comparison asks for t_{0.975, k−1} once per cell
def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T ≤ t) = p, 0 < p < 1: the inverse of :func:`student_t_cdf`, by bisection
    on a bracket that is doubled until it holds p (60 halvings past it reach double precision)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if student_t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def mean_confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the Student-t confidence interval x̄ ± t_{(1+level)/2, k−1}·s/√k of the
    mean of k values (s the sample standard deviation); the half-width is NaN for k = 1."""
    v = [float(x) for x in values]
    k = len(v)
    if k == 0:
        raise ValueError("a confidence interval needs at least one value")
    mean = math.fsum(v) / k
    if k == 1:
        return mean, math.nan
    s = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (k - 1))
    return mean, student_t_quantile((1.0 + level) / 2, k - 1) * s / math.sqrt(k)


@attrs.frozen
class WelchTest:
    """Welch's t-test of equal means: the statistic, the Welch–Satterthwaite degrees of freedom and
    the two-sided p-value."""

    t: float
    df: float
    p: float


def welch_t_test(x: Sequence[float], y: Sequence[float]) -> WelchTest:
    """Welch's unequal-variance t-test of mean(x) = mean(y) (Welch 1947): t = (x̄ − ȳ)/√(s²ₓ/m + s²ᵧ/n)
    with ν = (s²ₓ/m + s²ᵧ/n)² / ((s²ₓ/m)²/(m−1) + (s²ᵧ/n)²/(n−1)) degrees of freedom (Satterthwaite
    1946). Each sample needs at least 2 values. Two samples without any spread are equal (p = 1)
    or different (p = 0)."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values on each side, got {m} and {n}")
    mx, my = math.fsum(map(float, x)) / m, math.fsum(map(float, y)) / n
    vx = math.fsum((float(a) - mx) ** 2 for a in x) / (m - 1) / m  # the squared standard errors
    vy = math.fsum((float(b) - my) ** 2 for b in y) / (n - 1) / n
    if vx + vy == 0.0:
        same = mx == my
        return WelchTest(t=0.0 if same else math.copysign(math.inf, mx - my), df=float(m + n - 2), p=1.0 if same else 0.0)
    t = (mx - my) / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx * vx / (m - 1) + vy * vy / (n - 1))
    return WelchTest(t=t, df=df, p=student_t_two_sided_p(t, df))
