"""The peers the Inception metrics are checked against, pytorch-fid and torch-fidelity, imported so
that they can never download anything, and random FID Inception weights for when no real file is
at hand.

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
from difftk_metrics.inception import InceptionV3

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


def random_inception_weights(path: Path, seed: int = 0) -> Path:
    """Write a state dict of the FID Inception-v3 with random weights to ``path`` (torch.save, as the
    distributed files are): He-scaled convolutions and batch norms near the identity, so that the
    activations keep a spread of order 1 through the 94 layers, and a random classifier."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in InceptionV3().state_dict().items():
        if name.endswith("conv.weight"):
            fan_in = value[0].numel()
            state[name] = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif name.endswith("bn.weight"):
            state[name] = 1 + 0.1 * torch.randn(value.shape, generator=g)
        elif name.endswith(("bn.bias", "bn.running_mean")):
            state[name] = 0.1 * torch.randn(value.shape, generator=g)
        elif name.endswith("bn.running_var"):
            state[name] = 0.5 + torch.rand(value.shape, generator=g)
        elif name.endswith("num_batches_tracked"):
            continue
        else:  # the classifier
            state[name] = 0.05 * torch.randn(value.shape, generator=g)
    torch.save(state, path)
    return path
