"""Entry point of the metrics plugin."""

import difftk

from difftk_metrics.classifier_score import ClassifierScore
from difftk_metrics.kid import KID
from difftk_metrics.memorization import Memorization
from difftk_metrics.metrics import FID, ConditionalAccuracy, SlicedWasserstein
from difftk_metrics.precision_recall import PrecisionRecall


@difftk.hookimpl
def difftk_register_components(register):
    register.add_metric("fid", FID)
    register.add_metric("kid", KID)
    register.add_metric("precision-recall", PrecisionRecall)
    register.add_metric("classifier-score", ClassifierScore)
    register.add_metric("memorization", Memorization)
    register.add_metric("accuracy", ConditionalAccuracy)
    register.add_metric("sliced-wasserstein", SlicedWasserstein)
