"""``precision-recall``: improved precision and recall (Kynkäänniemi et al. 2019) in any feature network's features.

Each feature set Φ stands for its manifold: the union of balls centred on its points, each as
wide as that point's distance to its k-th nearest neighbour in Φ (k = 3 in the paper).
Precision is the fraction of samples inside the held-out digits' manifold (how many samples look
real), recall the fraction of held-out digits inside the samples' manifold (how much of the data
the samples cover). A model that draws only some classes keeps its precision and loses recall;
one that draws blurred or broken digits loses precision.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from difftk.errors import OptionError
from difftk.evaluation.context import EvalContext, MetricResult
from difftk.options import option

from difftk_metrics.features import context_device, embed, feature_network, features_option, held_out_features

#: rows of a distance matrix computed at once
CHUNK = 1024
#: below this many samples the k-NN balls are so wide that blurred digits lacking variety score as
#: real ones do (docs/metrics.md: both ≈ (0.95, 1.0) at n = 20)
TRUSTED_PR_N = 50


def knn_radii(phi: torch.Tensor, k: int) -> torch.Tensor:
    """NN_k(φ, Φ) for every row φ of phi [N, D]: the distance to its k-th nearest other row (float64)."""
    phi = phi.to(torch.float64)
    if not 1 <= k < len(phi):
        raise ValueError(f"the k-th nearest neighbour needs 1 ≤ k < {len(phi)} points, got k = {k}")
    radii = []
    for start in range(0, len(phi), CHUNK):
        d = torch.cdist(phi[start:start + CHUNK], phi, compute_mode="donot_use_mm_for_euclid_dist")
        d[torch.arange(len(d)), torch.arange(start, start + len(d))] = float("inf")  # not its own neighbour
        radii.append(d.kthvalue(k, dim=1).values)
    return torch.cat(radii)


def inside(queries: torch.Tensor, phi: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """f(q, Φ) for every row q of queries: True when ‖q − φ‖ ≤ NN_k(φ, Φ) for some φ in Φ."""
    phi = phi.to(torch.float64)
    found = []
    for start in range(0, len(queries), CHUNK):
        q = queries[start:start + CHUNK].to(torch.float64)
        d = torch.cdist(q, phi, compute_mode="donot_use_mm_for_euclid_dist")
        found.append((d <= radii).any(dim=1))
    return torch.cat(found)


def precision_recall(fake: torch.Tensor, real: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of features fake [n, D] against real [N, D] with k-NN manifolds
    (Kynkäänniemi et al. 2019)."""
    precision = inside(fake, real, knn_radii(real, k)).double().mean()
    recall = inside(real, fake, knn_radii(fake, k)).double().mean()
    return float(precision), float(recall)


@attrs.frozen
class PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019): samples vs held-out images, in ``features``.

    The value is the precision (the fraction of samples within the held-out digits' k-NN manifold);
    the recall (the fraction of held-out digits within the samples' manifold) is in the details,
    with its own spread. Both sets have the same size, as in the paper: when n and the held-out
    split differ, the larger is subsampled (seeded). The spreads are binomial standard errors
    √(p(1−p)/m) given the two manifolds. Features (``features``: mnist for 1×28×28 images,
    inception otherwise) and sampling as for fid.
    """

    #: which values are better, for `difftk compare`'s tests against the best cell
    better: ClassVar[str] = "higher"

    n: int = option(500, help="samples generated", ge=10)
    k: int = option(3, help="the k of the k-nearest-neighbour radii", ge=1, le=100)
    features: str = features_option()

    def evaluate(self, context: EvalContext) -> MetricResult:
        net = feature_network(self.features, context.shape, "precision-recall", context_device(context))
        data = context.held_out("precision-recall")
        net.check("precision-recall", context.shape, "this model")
        net.check("precision-recall", data.shape, data.name)
        g = torch.Generator().manual_seed(context.seed + 3)
        m = min(self.n, len(data))
        if self.k >= m:
            raise OptionError(f"precision-recall: option k={self.k} needs more than k samples and held-out images, "
                              f"but there are {m}: give k < {m}")
        real, _ = held_out_features(data, net)
        real = real[torch.randperm(len(data), generator=g)[:m]]
        fake, _ = embed(net, context.samples(self.n, context.balanced_labels(self.n)))
        fake = fake[torch.randperm(self.n, generator=g)[:m]] if m < self.n else fake
        p, r = precision_recall(fake, real, self.k)
        caveat = " ".join(filter(None, [
            "" if m == self.n else f"precision-recall compares sets of equal size: {m:,} of the {self.n:,} samples "
                                   f"were used, as many as the held-out split ({data.name}) has.",
            "" if m >= TRUSTED_PR_N else f"precision-recall at n = {m} cannot see missing variety (its k-NN balls "
                                         f"are too wide): use n ≥ {TRUSTED_PR_N}, and compare at equal n."]))
        return MetricResult(name="precision-recall", value=p, spread=(p * (1 - p) / m) ** 0.5, n=m,
                            spread_kind="precision; binomial standard error", caveat=caveat,
                            details={"precision": round(p, 4), "recall": round(r, 4),
                                     "recall standard error": round((r * (1 - r) / m) ** 0.5, 4), "k": self.k,
                                     "reference": f"{data.name} held-out split, {m} images",
                                     "features": net.description, "steps": context.steps})
