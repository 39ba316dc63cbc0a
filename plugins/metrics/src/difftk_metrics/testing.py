"""Test helpers for code that uses the metrics plugin: FID Inception-v3 weights files made up of random
numbers, for when the real file is not at hand (tests never download it)."""

from __future__ import annotations

from pathlib import Path

import torch

from difftk_metrics.inception import InceptionV3


def write_random_inception_weights(path: Path, seed: int = 0) -> Path:
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
