"""``kid``: the Kernel Inception Distance of Bińkowski et al. 2018, in any feature network's features.

KID is the unbiased estimator of the squared maximum mean discrepancy (MMD², Gretton et al. 2012,
Lemma 6) between sample and held-out features under the cubic polynomial kernel
k(x, y) = (xᵀy/d + 1)³ (Bińkowski et al. 2018, "Demystifying MMD GANs"), averaged over random
subsets as their reference recipe does. Unlike FID it is unbiased: 0 is its expected value for two
samples of one distribution, at any n, so it can come out negative.

The spread is the standard error of that average, in two parts (the law of total variance):
the variance of the complete statistic (every sample against every held-out image), estimated by
the two-sample delete-one jackknife (Arvesen 1969; conservative by the Efron–Stein inequality,
Efron & Stein 1981), plus the variance added by picking S random subsets, s²/S with s the standard
deviation of the subset values. The subsets' standard deviation alone — the "±" papers print — is
no standard error of the mean, and is 0 whenever a set is smaller than the subset size and so is
used whole in every subset (the 500 held-out digits of the shipped MNIST always are).
"""

from __future__ import annotations

from typing import ClassVar

import math

import attrs
import torch
from difftk.errors import DifftkError
from difftk.evaluation.context import EvalContext, MetricResult
from difftk.options import option

from difftk_metrics.features import context_device, embed, feature_network, features_option, held_out_features

#: below this many samples the standard error of KID (≈ 1,500–2,500 at n = 30) is as large as the KID of
#: the shipped model's blurred 3-step digits (≈ 2,200, docs/metrics.md), so the value cannot rank models
TRUSTED_KID_N = 50
#: rows of a kernel matrix computed at once (bounds the memory to CHUNK × max(n, N) float64)
CHUNK = 1024


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (xᵀy/d + 1)³ for every row pair of x [N, d] and y [M, d], in float64 (Bińkowski et al. 2018)."""
    x, y = x.to(torch.float64), y.to(torch.float64)
    return (x @ y.T / x.shape[1] + 1) ** 3


def _sums(a: torch.Tensor, b: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Row sums Σ_j k(a_i, b_j) [len(a)], column sums Σ_i k(a_i, b_j) [len(b)] and, for each subset s,
    Σ_{i∈A_s, j∈B_s} k(a_i, b_j) [S], where the subsets are the rows of the 0/1 indicator matrices
    pa [S, len(a)] and pb [S, len(b)]; the kernel matrix is made CHUNK rows at a time."""
    rows, columns = [], torch.zeros(len(b), dtype=torch.float64)
    q = torch.zeros(len(pa), len(b), dtype=torch.float64)
    for start in range(0, len(a), CHUNK):
        k = polynomial_kernel(a[start:start + CHUNK], b)
        rows.append(k.sum(dim=1))
        columns += k.sum(dim=0)
        q += pa[:, start:start + CHUNK] @ k
    return torch.cat(rows), columns, (q * pb).sum(dim=1)


def _indicators(n: int, m: int, subsets: int, generator: torch.Generator) -> torch.Tensor:
    """[subsets, n] 0/1 rows, each marking m of the n items drawn without replacement."""
    p = torch.zeros(subsets, n, dtype=torch.float64)
    for s in range(subsets):
        p[s, torch.randperm(n, generator=generator)[:m]] = 1.0
    return p


@attrs.frozen
class KernelDistance:
    """What :func:`kernel_distance` found: the subset mean (the KID), its standard error, and its parts."""

    value: float
    standard_error: float
    subset_std: float  # the standard deviation of the S subset values (what papers print as ±)
    complete: float  # the unbiased MMD² of the whole sets, which the subset mean estimates
    jackknife_se: float  # the jackknife standard error of ``complete``
    subset_size: int
    subsets: int


def kernel_distance(x: torch.Tensor, y: torch.Tensor, *, subsets: int = 100, subset_size: int = 1000,
                    generator: torch.Generator | None = None) -> KernelDistance:
    """KID between features x [n, d] and y [N, d]: the mean over ``subsets`` pairs of subsets of
    m = min(subset_size, n, N) rows (each drawn without replacement) of the unbiased MMD²

        MMD²_u = Σ_{i≠j} k(x_i, x_j)/(m(m−1)) + Σ_{i≠j} k(y_i, y_j)/(m(m−1)) − 2 Σ_{i,j} k(x_i, y_j)/m²

    (Gretton et al. 2012, Lemma 6), with its standard error √(V_jack + s²/S) (module docstring).
    A set of m rows or fewer is used whole in every subset. Everything in float64.
    """
    x, y = x.reshape(len(x), -1).to(torch.float64), y.reshape(len(y), -1).to(torch.float64)
    n, big_n = len(x), len(y)
    if min(n, big_n) < 3:
        raise ValueError(f"kernel distance needs at least 3 rows in each set, got {n} and {big_n}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    m = min(subset_size, n, big_n)
    px, py = _indicators(n, m, subsets, g), _indicators(big_n, m, subsets, g)
    d = x.shape[1]
    diag_x, diag_y = (x.square().sum(1) / d + 1) ** 3, (y.square().sum(1) / d + 1) ** 3
    rows_xx, _, sub_xx = _sums(x, x, px, px)
    rows_yy, _, sub_yy = _sums(y, y, py, py)
    rows_xy, rows_yx, sub_xy = _sums(x, y, px, py)
    # the subset estimates, off-diagonal sums only within a set
    u = ((sub_xx - px @ diag_x) + (sub_yy - py @ diag_y)) / (m * (m - 1)) - 2 * sub_xy / m**2
    # the complete statistic and its delete-one values: dropping x_i removes row and column i of K_xx
    r_x, r_y = rows_xx - diag_x, rows_yy - diag_y
    s_xx, s_yy, s_xy = r_x.sum(), r_y.sum(), rows_xy.sum()
    a, b, c = s_xx / (n * (n - 1)), s_yy / (big_n * (big_n - 1)), s_xy / (n * big_n)
    drop_x = (s_xx - 2 * r_x) / ((n - 1) * (n - 2)) + b - 2 * (s_xy - rows_xy) / ((n - 1) * big_n)
    drop_y = a + (s_yy - 2 * r_y) / ((big_n - 1) * (big_n - 2)) - 2 * (s_xy - rows_yx) / (n * (big_n - 1))
    v_jack = (n - 1) / n * (drop_x - drop_x.mean()).square().sum() + (
        big_n - 1) / big_n * (drop_y - drop_y.mean()).square().sum()
    s = float(u.std(unbiased=True)) if subsets > 1 else 0.0
    return KernelDistance(value=float(u.mean()), standard_error=math.sqrt(float(v_jack) + s**2 / subsets), subset_std=s,
                          complete=float(a + b - 2 * c), jackknife_se=math.sqrt(float(v_jack)), subset_size=m,
                          subsets=subsets)


@attrs.frozen
class KID:
    """Kernel Inception Distance (Bińkowski et al. 2018): samples vs held-out images, in the ``features`` network's units.

    The unbiased MMD² under the cubic polynomial kernel, averaged over ``subsets`` random subsets
    of min(``subset_size``, n, N) samples and held-out digits, as the paper's reference recipe
    does; 0 is its expected value when the samples are distributed as the data, at any n. The
    spread is the standard error of that mean: the jackknife variance of the complete statistic
    plus the subset-sampling variance (``difftk_metrics.kid``). Features (``features``: mnist for
    1×28×28 images, inception otherwise) and sampling as for fid.
    """

    #: which values are better, for `difftk compare`'s tests against the best cell
    better: ClassVar[str] = "lower"

    n: int = option(500, help="samples generated", ge=3)
    subsets: int = option(100, help="random subsets the value averages over", ge=1, le=10_000)
    subset_size: int = option(1000, help="samples (and held-out images) per subset; fewer when n or the held-out "
                                         "split is smaller", ge=3)
    features: str = features_option()

    def evaluate(self, context: EvalContext) -> MetricResult:
        net = feature_network(self.features, context.shape, "kid", context_device(context))
        data = context.held_out("kid")
        net.check("kid", context.shape, "this model")
        net.check("kid", data.shape, data.name)
        if len(data) < 3:
            raise DifftkError(f"metric 'kid' needs at least 3 held-out images, but {data.name} has {len(data)}")
        real, where = held_out_features(data, net)  # in stored order: the subsets are drawn seeded
        fake, _ = embed(net, context.samples(self.n, context.balanced_labels(self.n)))
        kd = kernel_distance(fake, real, subsets=self.subsets, subset_size=self.subset_size,
                             generator=torch.Generator().manual_seed(context.seed + 2))
        scale = ", while the shipped model's blurred 3-step digits score ≈ 2,200" if net.kind == "mnist" else ""
        caveat = "" if self.n >= TRUSTED_KID_N else (
            f"kid at n = {self.n} is too noisy to rank models: its standard error is {kd.standard_error:,.4g}{scale}; "
            f"use n ≥ {TRUSTED_KID_N}")
        return MetricResult(name="kid", value=kd.value, spread=kd.standard_error, n=self.n,
                            spread_kind="standard error (jackknife + subsets)", caveat=caveat,
                            details={"reference": where, "subsets": f"{kd.subsets} of {kd.subset_size}",
                                     "subset std": round(kd.subset_std, 6), "complete": round(kd.complete, 6),
                                     "features": net.description, "steps": context.steps})
