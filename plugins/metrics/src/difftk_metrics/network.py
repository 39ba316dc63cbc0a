"""The MNIST feature network behind ``fid`` and ``accuracy``: a small CNN classifier whose
penultimate layer (128 ReLU units) are the features, the role Inception-v3's pool3 layer plays in
the FID of Heusel et al. 2017 for natural images. Its weights ship with the package
(``data/mnist_features.safetensors``, made by ``scripts/train_feature_net.py``)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from difftk.checkpoint.files import load_weights
from difftk.errors import DifftkError
from safetensors.torch import load_file
from torch import nn

WEIGHTS = Path(__file__).parent / "data" / "mnist_features.safetensors"
#: the one image shape the network reads: MNIST digits, grey, 28×28, scaled to [−1, 1]
SHAPE = (1, 28, 28)
FEATURES = 128


class MnistFeatureNet(nn.Module):
    """conv3×3(32) → conv3×3(64) → maxpool → conv3×3(64) → maxpool → fc(128) = features → fc(10)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURES), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, 28, 28] images in [−1, 1] -> [B, 128] features."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits [B, 10]."""
        return self.head(self.dropout(self.features(x)))


@functools.cache
def feature_net() -> MnistFeatureNet:
    """The shipped network, in eval mode on the CPU (loaded once)."""
    if not WEIGHTS.is_file():
        raise DifftkError(f"the MNIST feature network {WEIGHTS} is missing: reinstall difftk-metrics")
    net = MnistFeatureNet()
    load_weights(net, load_file(str(WEIGHTS)), source=str(WEIGHTS), what="feature network")
    return net.eval().requires_grad_(False)


def check_shape(metric: str, shape: tuple[int, ...], what: str) -> None:
    """One line when ``shape`` is not an MNIST digit's."""
    if tuple(shape) != SHAPE:
        raise DifftkError(f"metric '{metric}' judges MNIST digits (1×28×28) with its MNIST feature network, but {what} "
                          f"has examples of shape {'×'.join(map(str, shape))}: use it on MNIST-format data")


@torch.inference_mode()
def embed(images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, 128] (float64) and logits [N, 10] of images in [−1, 1], on the CPU."""
    net = feature_net()
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        f = net.features(images[start:start + batch_size].float().cpu())
        feats.append(f.double())
        logits.append(net.head(f))
    return torch.cat(feats), torch.cat(logits)
