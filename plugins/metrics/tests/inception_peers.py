"""The peers the Inception metrics are checked against, pytorch-fid and torch-fidelity, imported so
that they can never download anything.

Both import torchvision. Its PyPI wheels (0.28.0 is the release paired with torch 2.13.0) carry
operators built against CUDA torch; beside torch's CPU wheel they do not load, and torchvision's
import then stops at registering a fake kernel for one of them ("operator torchvision::nms does not
exist"). Declaring the two operators' schemas first lets its Python modules import; nothing here
calls a torchvision operator (the peers use its Inception-v3 classes and image transforms).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

_OPERATORS = None  # the Library object must live as long as the process, or the schemas are dropped


@functools.cache
def peers():
    """(pytorch_fid, torch_fidelity) modules, or a skip naming why they cannot be imported."""
    global _OPERATORS
    if not hasattr(torch.ops.torchvision, "nms"):
        _OPERATORS = torch.library.Library("torchvision", "DEF")
        for name in ("nms", "qnms"):
            _OPERATORS.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    try:
        import pytorch_fid.fid_score
        import pytorch_fid.inception
        import torch_fidelity.feature_extractor_inceptionv3
        import torch_fidelity.metric_isc
    except ImportError as err:  # the test extra is not installed
        pytest.skip(f"pytorch-fid or torch-fidelity cannot be imported: {err}")
    return pytorch_fid, torch_fidelity
