"""The peers the Inception metrics are checked against, pytorch-fid and torch-fidelity, imported so
that they can never download anything.

Both import torchvision. Its PyPI wheels (0.28.0 is the release paired with torch 2.13.0) carry
operators built against CUDA torch; beside torch's CPU wheel they do not load, and torchvision's
import then stops at registering a fake kernel for one of them ("operator torchvision::nms does not
exist"). scripts/install.sh therefore puts the three in ``<venv>/peers``, off sys.path (an installed
torchvision that fails to import would break diffusers, which imports it when present); here that
folder is put on sys.path after the two operators' schemas are declared, which lets torchvision's
Python modules import. Nothing calls a torchvision operator (the peers use its Inception-v3 classes
and image transforms).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest
import torch

_OPERATORS = None  # the Library object must live as long as the process, or the schemas are dropped


@functools.cache
def peers():
    """(pytorch_fid, torch_fidelity) modules; without them a skip naming why (a failure under DIFFTK_CI=1)."""
    folder = Path(sys.prefix) / "peers"
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))
    try:
        _import_torchvision()
        import pytorch_fid.fid_score
        import pytorch_fid.inception
        import torch_fidelity.feature_extractor_inceptionv3
        import torch_fidelity.metric_isc
    except ImportError as err:
        why = f"pytorch-fid or torch-fidelity cannot be imported ({err}): scripts/install.sh puts them in {folder}"
        (pytest.fail if os.environ.get("DIFFTK_CI") else pytest.skip)(why)
    return pytorch_fid, torch_fidelity


def _import_torchvision() -> None:
    """Import torchvision; when its compiled operators do not load, declare the two it registers fake
    kernels for, forget the half-imported modules, and import it again."""
    global _OPERATORS
    try:
        import torchvision  # noqa: F401
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _OPERATORS = torch.library.Library("torchvision", "DEF")
        for name in ("nms", "qnms"):
            _OPERATORS.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401
