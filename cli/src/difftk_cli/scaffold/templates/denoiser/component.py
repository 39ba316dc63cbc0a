"""A small convolutional denoiser: two 3×3 convolutions with the time (and class) embedding added
between them, predicting ε (Ho et al. 2020) or what ``prediction`` says."""

import math

import attrs
import torch
from difftk.maths.diffusion import PREDICTIONS
from difftk.options import option
from torch import nn


@attrs.frozen
class MyPluginNetConfig:
    """The network's options. ``difftk train`` fills in_channels, image_size and num_classes from
    the data when the pipeline does not set them."""

    in_channels: int = option(1, help="channels of the images (filled from the data by difftk train)", ge=1)
    image_size: int = option(28, help="side of the square images (filled from the data by difftk train)", ge=1)
    num_classes: int = option(0, help="classes to condition on, 0 = unconditional (filled from the data)", ge=0)
    width: int = option(32, help="channels of the hidden layers", ge=1, le=4096)
    prediction: str = option("eps", help="what the network predicts", choices=PREDICTIONS)


class MyPluginNet(nn.Module):
    """conv3×3 → + embed(t, y) → SiLU → conv3×3 → SiLU → conv3×3; t enters as sinusoidal features."""

    Config = MyPluginNetConfig

    def __init__(self, config: MyPluginNetConfig | None = None, **options) -> None:
        super().__init__()
        config = config if config is not None else MyPluginNetConfig(**options)
        self.config = config
        self.prediction = config.prediction
        self.num_classes = config.num_classes
        self.learned_variance = False
        w = config.width
        self.time = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.label = nn.Embedding(config.num_classes + 1, w) if config.num_classes else None  # + 1: cfg's null class
        self.conv_in = nn.Conv2d(config.in_channels, w, 3, padding=1)
        self.conv_mid = nn.Conv2d(w, w, 3, padding=1)
        self.conv_out = nn.Conv2d(w, config.in_channels, 3, padding=1)

    def features(self, t: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features of t ∈ [0, 1] (Vaswani et al. 2017), t scaled by 1000 as DDPM's step index."""
        half = self.config.width // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / max(half, 1))
        angles = 1000 * t.float()[:, None] * freqs[None]
        out = torch.cat([angles.sin(), angles.cos()], dim=1)
        return nn.functional.pad(out, (0, self.config.width - out.shape[1]))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time(self.features(t))
        if self.label is not None and cond is not None:
            emb = emb + self.label(cond)
        h = nn.functional.silu(self.conv_in(x) + emb[:, :, None, None].to(x.dtype))
        h = nn.functional.silu(self.conv_mid(h))
        return self.conv_out(h)
