"""``classifier-score``: the Inception Score (Salimans et al. 2016) with any feature network's classifier.

IS = exp(E_x KL(p(y|x) ‖ p(y))), p(y) = E_x p(y|x) over the same samples: high when each sample is
confidently one class (low H(y|x)) and the classes are varied (high H(y)); it lies in [1, K] for
K classes, since E_x KL(p(y|x) ‖ p(y)) = H(y) − E_x H(y|x) ≤ log K. As in the paper's code the
samples are cut into splits, the score is computed on each, and the splits' scores are averaged;
the splits are torch-fidelity's, rows ⌊iN/S⌋ to ⌊(i+1)N/S⌋, taken in order (not shuffled).
With ``features=inception`` this is the Inception Score: p(y|x) the softmax of the 1008 logits
without bias, as the paper's code and torch-fidelity compute them.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch
from difftk.errors import OptionError
from difftk.evaluation.context import EvalContext, MetricResult, mean_and_standard_error
from difftk.options import option

from difftk_metrics.features import context_device, embed, feature_network, features_option

#: below this many samples per split the p(y) of a split is too noisy: the score drops (docs/metrics.md)
TRUSTED_SPLIT_SIZE = 50


def classifier_score(logits: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))) of class logits [N, K], p(y) their mean softmax (Salimans et al. 2016, §4);
    in float64."""
    log_p = torch.log_softmax(logits.to(torch.float64), dim=1)
    log_marginal = torch.logsumexp(log_p, dim=0) - math.log(len(log_p))
    kl = (log_p.exp() * (log_p - log_marginal)).sum(dim=1)
    return math.exp(float(kl.mean()))


def split_scores(logits: torch.Tensor, splits: int) -> torch.Tensor:
    """The score of each of ``splits`` consecutive parts of the N rows of logits, rows ⌊iN/S⌋ to ⌊(i+1)N/S⌋
    for part i (torch-fidelity's splits)."""
    n = len(logits)
    return torch.tensor([classifier_score(logits[i * n // splits:(i + 1) * n // splits]) for i in range(splits)],
                        dtype=torch.float64)


@attrs.frozen
class ClassifierScore:
    """The Inception Score recipe exp(E KL(p(y|x) ‖ p(y))) with the ``features`` network's classifier (Salimans et al. 2016).

    The n samples are cut into ``splits`` consecutive parts (a class-conditional model's classes,
    drawn in turn, fall evenly into each), the score is computed on each part and the parts'
    scores are averaged; the spread is their standard error (standard deviation / √splits).
    It lies in [1, K] for K classes: K when every sample is confidently one class and the classes are
    equally drawn, 1 for noise or a single repeated class (what real digits score: docs/metrics.md). The
    classifier is the shipped MNIST network by default for 1×28×28 images; with ``features=inception``
    it is the Inception Score. The score needs no held-out data, and knows nothing of what real images look
    like beyond the classifier: use it beside fid or kid.
    """

    #: which values are better, for `difftk compare`'s tests against the best cell
    better: ClassVar[str] = "higher"

    n: int = option(500, help="samples generated", ge=2)
    splits: int = option(10, help="parts the samples are cut into; the value is the mean of their scores",
                         ge=1, le=1000)
    features: str = features_option()

    def evaluate(self, context: EvalContext) -> MetricResult:
        net = feature_network(self.features, context.shape, "classifier-score", context_device(context))
        net.check("classifier-score", context.shape, "this model")
        if self.n < 2 * self.splits:
            raise OptionError(f"classifier-score: n={self.n} is too few for splits={self.splits}: give n ≥ "
                              f"{2 * self.splits} (2 samples per split), or fewer splits")
        _, logits = embed(net, context.samples(self.n, context.balanced_labels(self.n)))
        scores = split_scores(logits, self.splits)
        value, spread = mean_and_standard_error(scores)  # nan spread for one split
        size = self.n // self.splits
        caveat = "" if size >= TRUSTED_SPLIT_SIZE else (
            f"classifier-score with {size} samples per split is biased low (each split's p(y) is too noisy): "
            f"give n ≥ {TRUSTED_SPLIT_SIZE * self.splits} or fewer splits")
        return MetricResult(name="classifier-score", value=value, spread=spread, n=self.n,
                            spread_kind=f"standard error over {self.splits} splits", caveat=caveat,
                            details={"split std": round(float(scores.std()), 4) if self.splits > 1 else 0.0,
                                     "classifier": net.description, "steps": context.steps})
