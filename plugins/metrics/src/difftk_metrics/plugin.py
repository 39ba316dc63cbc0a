"""Entry point of the metrics plugin."""

import difftk

from difftk_metrics.metrics import FID, ConditionalAccuracy, SlicedWasserstein


@difftk.hookimpl
def difftk_register_components(register):
    register.add_metric("fid", FID)
    register.add_metric("accuracy", ConditionalAccuracy)
    register.add_metric("sliced-wasserstein", SlicedWasserstein)
