"""Small self-contained components for testing components of other kinds.

They are not registered: the core ships no algorithm. A sampler plugin's tests can use
:class:`ReferenceLinearSchedule` without depending on the ddpm plugin.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch
from torch import nn

from difftk.components.autoencoding import LatentDistribution
from difftk.components.protocols import num_classes_of
from difftk.maths.diffusion import PREDICTIONS
from difftk.maths.schedules import ContinuousSchedule, DiscreteSchedule
from difftk.options import option


@attrs.frozen
class ReferenceLinearSchedule(DiscreteSchedule):
    """β linear from 0.1/T to 20/T on T steps (the DDPM linear schedule, defined independently)."""

    T: int = option(100, help="number of steps (β_T = 20/T must stay below 1)", ge=21)

    def paper_betas(self) -> np.ndarray:
        return np.linspace(0.1 / self.T, 20.0 / self.T, self.T, dtype=np.float64)


@attrs.frozen
class ReferenceVPSchedule(ContinuousSchedule):
    """ᾱ(t) = exp(−β_min·t − ½(β_max−β_min)·t²), the VP SDE marginal (Song et al. 2021, eq. 33)."""

    beta_min: float = option(0.1, help="β(0)", gt=0.0)
    beta_max: float = option(20.0, help="β(1)", gt=0.0)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.beta_min * t - 0.5 * (self.beta_max - self.beta_min) * t**2)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)


@attrs.frozen
class TinyDenoiserConfig:
    """Options of :class:`TinyDenoiser`."""

    in_channels: int = option(1, help="channels of the data", ge=1)
    num_classes: int = option(0, help="classes for conditioning (0 = unconditional)", ge=0)
    hidden: int = option(16, help="hidden width", ge=1)
    prediction: str = option("eps", help="what the network predicts", choices=PREDICTIONS)


class TinyDenoiser(nn.Module):
    """A trainable per-pixel network (x, t, class) -> ε̂, for objective and training tests.

    Register it from a test plugin (``register.add_denoiser("tiny", TinyDenoiser)``) to train
    pipelines in seconds.
    """

    Config = TinyDenoiserConfig

    def __init__(self, config: TinyDenoiserConfig | None = None, **options) -> None:
        super().__init__()
        config = config if config is not None else TinyDenoiserConfig(**options)
        self.config = config
        channels, num_classes, hidden = config.in_channels, config.num_classes, config.hidden
        self.prediction = config.prediction
        self.learned_variance = False
        self.num_classes = num_classes
        self.net = nn.Sequential(nn.Linear(channels + 2, hidden), nn.SiLU(), nn.Linear(hidden, channels))
        self.label = nn.Embedding(num_classes + 1, 1) if num_classes else None

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = x.movedim(1, -1)
        tt = t.view(-1, *([1] * (h.ndim - 1))).expand(*h.shape[:-1], 1).to(x.dtype)
        c = torch.zeros_like(tt)
        if self.label is not None and cond is not None:
            c = self.label(cond).view(-1, *([1] * (h.ndim - 1))).expand_as(tt)
        return self.net(torch.cat([h, tt, c], dim=-1)).movedim(-1, 1)


class WithLearnedVariance(nn.Module):
    """``inner`` with variance channels appended, set to ``fill`` (a learned-variance denoiser as
    improved-DDPM models are, Nichol & Dhariwal 2021): a sampler that takes no learned variance
    must ignore them, and sample exactly as from ``inner``."""

    learned_variance = True

    def __init__(self, inner: nn.Module, fill: float = 0.3) -> None:
        super().__init__()
        self.inner, self.fill = inner, float(fill)
        self.prediction = inner.prediction
        self.num_classes = num_classes_of(inner)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        out = self.inner(x, t, cond=cond)
        return torch.cat([out, torch.full_like(out, self.fill)], dim=1)


@attrs.frozen
class ReferenceAutoencoderConfig:
    """Options of :class:`ReferenceAutoencoder`."""

    factor: int = option(2, help="f: each latent cell is an f×f block of pixels", ge=1, le=8)
    scale: float = option(2.0, help="the scale z_scaled = (z − shift)·scale", gt=0.0)
    shift: float = option(0.25, help="the shift z_scaled = (z − shift)·scale")


class ReferenceAutoencoder(nn.Module):
    """An exact first stage: z = pixel_unshuffle(x, f) (each f×f block of every channel becomes f² channels),
    decode is its inverse, q(z | x) has σ = 0.01. decode(mean) = x exactly, so the core's encoding, scaling and
    decoding can be checked against the identity. Unregistered; a test registers it."""

    Config = ReferenceAutoencoderConfig

    def __init__(self, config: ReferenceAutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ReferenceAutoencoderConfig()
        self.scale, self.shift = self.config.scale, self.config.shift
        self.register_buffer("anchor", torch.zeros(()))  # so it has a device to follow

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        f = self.config.factor
        C, H, W = data_shape
        return (C * f * f, H // f, W // f)

    def encode(self, x: torch.Tensor) -> Any:
        mean = nn.functional.pixel_unshuffle(x, self.config.factor) + self.anchor
        return LatentDistribution(mean, torch.full_like(mean, 2 * np.log(0.01)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return nn.functional.pixel_shuffle(z, self.config.factor)
