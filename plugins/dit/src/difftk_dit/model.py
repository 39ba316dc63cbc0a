"""``dit``: the diffusion transformer of Peebles & Xie 2023 as a difftk Denoiser."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from difftk.maths.embedding import timestep_embedding
from torch import nn

from difftk_dit.config import DiTConfig
from difftk_dit.layers import (
    FREQUENCY_DIM,
    NORM_EPS,
    DiTBlock,
    diffusers_frequency_embedding,
    modulate,
    patchify,
    sincos_2d,
    unpatchify,
)
from difftk_dit.linear import linear


class DiT(nn.Module):
    """Diffusion transformer with adaLN-Zero blocks (Peebles & Xie 2023, §3, Fig. 3).

    The input x_t [B, C, H, W] — an image, or a latent of any first stage: only (C, H, W) matter —
    is cut into (H/p)² patches of p×p, each linearly embedded to width d, plus a 2-D positional
    embedding (fixed sin-cos as in the paper, or learned). ``depth`` adaLN-Zero blocks follow;
    the final layer is an adaLN-modulated LayerNorm and a linear map back to p·p·C' values per
    token (C' = 2C with a learned variance: the prediction, then the iDDPM interpolation v,
    Nichol & Dhariwal 2021, eq. 15), rearranged into the image.

    The conditioning c is the embedding of the time plus, with ``num_classes`` > 0, a learned
    table of ``num_classes + 1`` rows, row ``num_classes`` the null class used for ``cond=None``
    (classifier-free guidance, Ho & Salimans 2022). The time t ∈ [0, 1] enters as sinusoids of
    1000·t (the core's :func:`~difftk.maths.embedding.timestep_embedding`, as unet-attn) and a
    two-layer MLP. SiLU(c) regresses every block's (β₁, γ₁, α₁, β₂, γ₂, α₂) and the final layer's
    (β, γ) in one Linear, initialised at zero (adaLN-Zero, §3.2), as is the final linear map, so
    the network starts as the identity on the tokens and outputs exactly 0.

    Build it as ``DiT(DiT.Config(...))`` or ``DiT(**options)``.
    """

    Config = DiTConfig

    def __init__(self, config: DiTConfig | None = None, **options) -> None:
        super().__init__()
        if config is not None and options:
            raise TypeError("DiT takes a config or keyword options, not both")
        config = config if config is not None else DiTConfig(**options)
        self.config = config
        self.prediction = config.prediction
        self.learned_variance = config.learned_variance
        self.num_classes = config.num_classes
        c = config
        d, p = c.hidden_size, c.patch_size

        self.x_embedder = nn.Linear(p * p * c.in_channels, d)  # the paper's p×p, stride-p convolution
        pos = sincos_2d(d, c.grid_size).to(torch.float32)[None] if c.pos_embed == "sincos" else None
        if pos is not None:
            self.register_buffer("pos", pos, persistent=False)  # fixed: rebuilt from the options, never stored
            self.pos_param = None
        else:
            self.pos_param = nn.Parameter(
                sincos_2d(d, c.grid_size).to(torch.float32)[None]
                if d % 4 == 0
                else 0.02 * torch.randn(1, c.grid_size**2, d)
            )
        self.t_embedder = nn.Sequential(nn.Linear(FREQUENCY_DIM, d), nn.SiLU(), nn.Linear(d, d))
        self.y_embedder = nn.Embedding(c.num_classes + 1, d) if c.num_classes else None
        self.blocks = nn.ModuleList(DiTBlock(d, c.num_heads, c.mlp_width, c.mlp_norm_eps) for _ in range(c.depth))
        # every block's six modulation vectors, then the final layer's two: one matrix product
        self.adaLN_modulation = nn.Linear(d, (6 * c.depth + 2) * d)
        self.final_linear = nn.Linear(d, p * p * c.out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """The paper's initialisation (its released code): Xavier-uniform linear maps with zero
        biases, N(0, 0.02²) time MLP and class table, zero adaLN regression and final layer."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for layer in (self.t_embedder[0], self.t_embedder[2]):
            nn.init.normal_(layer.weight, std=0.02)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.weight, std=0.02)
        for layer in (self.adaLN_modulation, self.final_linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def extra_repr(self) -> str:
        return (
            f"prediction={self.prediction!r}, learned_variance={self.learned_variance}, num_classes={self.num_classes}"
        )

    @property
    def pos_embed(self) -> torch.Tensor:
        """The positional embedding [1, N, d]."""
        return self.pos if self.pos_param is None else self.pos_param

    def _check(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> None:
        c = self.config
        if x_t.dim() != 4 or x_t.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(
                f"dit expects x_t of shape [B, {c.in_channels}, {c.image_size}, {c.image_size}], "
                f"got {list(x_t.shape)}: set in_channels and image_size to match the data"
            )
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"dit expects t of shape [{x_t.shape[0]}] (one time per image), got {list(t.shape)}")
        if cond is not None and self.y_embedder is not None:
            if cond.shape != (x_t.shape[0],) or cond.dtype.is_floating_point or cond.dtype == torch.bool:
                raise ValueError(
                    f"dit expects cond as integer class indices of shape [{x_t.shape[0]}], "
                    f"got {cond.dtype} {list(cond.shape)}"
                )
            if cond.numel() and (int(cond.min()) < 0 or int(cond.max()) > self.num_classes):
                raise ValueError(
                    f"dit class indices must lie in 0..{self.num_classes - 1} "
                    f"({self.num_classes} = the null class), got {int(cond.min())}..{int(cond.max())}"
                )

    def embed(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The conditioning c [B, d] of time and class."""
        if self.config.time_embedding == "diffusers":
            freq = diffusers_frequency_embedding(t)
        else:
            freq = timestep_embedding(t, FREQUENCY_DIM)
        c = self.t_embedder(freq.to(self.x_embedder.weight.dtype))
        if self.y_embedder is not None:
            if cond is None:
                cond = torch.full((t.shape[0],), self.num_classes, dtype=torch.long, device=t.device)
            c = c + self.y_embedder(cond)
        return c

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        self._check(x_t, t, cond)
        c, d, p = self.config, self.config.hidden_size, self.config.patch_size
        x = torch.add(linear(patchify(x_t, p), self.x_embedder), self.pos_embed)
        mods = linear(F.silu(self.embed(t, cond)), self.adaLN_modulation).split(6 * d, dim=1)
        for block, mod in zip(self.blocks, mods, strict=False):  # the last chunk is the final layer's (β, γ)
            x = block(x, mod)
        shift, scale = mods[-1].split(d, dim=1)
        x = linear(modulate(F.layer_norm(x, (d,), eps=NORM_EPS), shift, scale), self.final_linear)
        return unpatchify(x, c.out_channels, p, c.grid_size)
