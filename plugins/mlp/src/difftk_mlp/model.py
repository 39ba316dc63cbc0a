"""``mlp``: a residual MLP denoiser for vectors x ∈ ℝᴰ."""

from __future__ import annotations

import attrs
import torch
from difftk.errors import IncompatibleError
from difftk.maths.diffusion import PREDICTIONS
from difftk.maths.embedding import timestep_embedding
from difftk.options import option
from torch import nn


@attrs.frozen
class MLPDenoiserConfig:
    """Options of :class:`MLPDenoiser`; the defaults (≈ 0.1 M parameters) fit the 2-D toys."""

    in_channels: int = option(2, help="dimension D of the vectors (taken from the data)", ge=1)
    num_classes: int = option(0, help="classes for conditioning (0 = unconditional; taken from the data)", ge=0)
    hidden: int = option(128, help="width of the hidden layers", ge=1)
    depth: int = option(3, help="residual blocks", ge=1)
    time_dim: int = option(64, help="size of the sinusoidal time embedding", ge=2)
    prediction: str = option("eps", help="what the network predicts: eps, x0, v, flow (u = ε − x₀) or edm (Karras et al. 2022 F)",
                             choices=PREDICTIONS)


class _Block(nn.Module):
    """h + W₂·SiLU(W₁·SiLU(h) + e): a pre-activation residual block with the embedding e added inside."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inner, self.outer = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.outer(nn.functional.silu(self.inner(nn.functional.silu(h)) + emb))


class MLPDenoiser(nn.Module):
    """A residual MLP (x_t, t, class) -> prediction for vectors [B, D].

    x_t is projected to ``hidden`` units; the time enters as a sinusoidal embedding of 1000·t
    (Vaswani et al. 2017 §3.5, as the DDPM U-Net embeds its step) through a two-layer MLP, and
    with ``num_classes`` > 0 a learned table of ``num_classes + 1`` rows is added to it, row
    ``num_classes`` the null class used for ``cond=None`` (classifier-free guidance, Ho &
    Salimans 2022). ``depth`` residual blocks each take that embedding; the output layer starts
    at zero, so the network starts by predicting 0, as the DDPM U-Net does.
    """

    Config = MLPDenoiserConfig

    def __init__(self, config: MLPDenoiserConfig | None = None, **options) -> None:
        super().__init__()
        if config is not None and options:
            raise TypeError("MLPDenoiser takes a config or keyword options, not both")
        config = config if config is not None else MLPDenoiserConfig(**options)
        self.config = config
        self.prediction = config.prediction
        self.learned_variance = False
        self.num_classes = config.num_classes
        c = config
        self.time_mlp = nn.Sequential(nn.Linear(c.time_dim, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden))
        self.label_emb = nn.Embedding(c.num_classes + 1, c.hidden) if c.num_classes else None
        self.proj_in = nn.Linear(c.in_channels, c.hidden)
        self.blocks = nn.ModuleList(_Block(c.hidden) for _ in range(c.depth))
        self.proj_out = nn.Linear(c.hidden, c.in_channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        D = self.config.in_channels
        if x.ndim != 2 or x.shape[1] != D:
            raise IncompatibleError(f"denoiser 'mlp' takes vectors [B, {D}], got shape {tuple(x.shape)}: "
                                    "for images use an image denoiser such as unet-attn")
        emb = self.time_mlp(timestep_embedding(t, self.config.time_dim).to(x.dtype))
        if self.label_emb is not None:
            null = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label_emb(cond if cond is not None else null)
        h = self.proj_in(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.proj_out(nn.functional.silu(h))
