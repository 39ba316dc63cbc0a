"""Noise-aware classifiers p_φ(y | x_t, t): time-conditioned encoders (Dhariwal & Nichol 2021, §4.1).

The paper's classifier is the down-sampling half of its U-Net with the time embedding; these
are the small versions that train in CPU minutes: a CNN for images, an MLP for vectors.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from difftk.options import option
from torch import nn


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features [B, dim] of t ∈ [0, 1], scaled by 1000 as for a T = 1000 step index
    (Vaswani et al. 2017, §3.5; Ho et al. 2020, App. B)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / half))
    args = (1000.0 * t.to(torch.float32))[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


@attrs.frozen
class NoisyMLPConfig:
    """Options of :class:`NoisyMLP`."""

    in_channels: int = option(2, help="dimension of the data vectors", ge=1)
    num_classes: int = option(2, help="number of classes K", ge=2)
    hidden: int = option(128, help="hidden width", ge=4)
    depth: int = option(3, help="hidden layers", ge=1, le=16)


class NoisyMLP(nn.Module):
    """An MLP classifier of noisy vectors: logits = f([x_t, emb(t)])."""

    Config = NoisyMLPConfig
    data_kinds = ("points",)

    def __init__(self, config: NoisyMLPConfig | None = None, **options) -> None:
        super().__init__()
        self.config = config if config is not None else NoisyMLPConfig(**options)
        c = self.config
        self.num_classes = c.num_classes
        layers: list[nn.Module] = []
        width = c.in_channels + 32
        for _ in range(c.depth):
            layers += [nn.Linear(width, c.hidden), nn.SiLU()]
            width = c.hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, c.num_classes))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x_t.flatten(1), time_features(t, 32).to(x_t.dtype)], dim=1))


@attrs.frozen
class NoisyCNNConfig:
    """Options of :class:`NoisyCNN`; the defaults fit MNIST."""

    in_channels: int = option(1, help="channels of the images", ge=1)
    image_size: int = option(28, help="height and width of the images", ge=4)
    num_classes: int = option(10, help="number of classes K", ge=2)
    base_channels: int = option(32, help="width of the first level (the second has twice)", ge=8)


class _Block(nn.Module):
    """conv → GroupNorm → + time bias → SiLU, twice, with a residual connection."""

    def __init__(self, channels_in: int, channels: int, emb_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1, self.norm2 = nn.GroupNorm(8, channels), nn.GroupNorm(8, channels)
        self.emb = nn.Linear(emb_dim, channels)
        self.skip = nn.Conv2d(channels_in, channels, 1) if channels_in != channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)) + self.emb(emb)[:, :, None, None])
        return self.skip(x) + F.silu(self.norm2(self.conv2(h)))


class NoisyCNN(nn.Module):
    """A small time-conditioned CNN classifier of noisy images: two residual levels, a 2× down-
    sampling between them, global average pooling, then a linear layer to K logits."""

    Config = NoisyCNNConfig
    data_kinds = ("image",)

    def __init__(self, config: NoisyCNNConfig | None = None, **options) -> None:
        super().__init__()
        self.config = config if config is not None else NoisyCNNConfig(**options)
        c = self.config
        self.num_classes = c.num_classes
        w, emb_dim = c.base_channels, 4 * c.base_channels
        self.time = nn.Sequential(nn.Linear(w, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.block1 = _Block(c.in_channels, w, emb_dim)
        self.down = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.block2 = _Block(2 * w, 2 * w, emb_dim)
        self.head = nn.Sequential(nn.GroupNorm(8, 2 * w), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(2 * w, c.num_classes))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(time_features(t, self.config.base_channels).to(x_t.dtype))
        h = self.block1(x_t, emb)
        h = self.block2(self.down(h), emb)
        return self.head(h)
