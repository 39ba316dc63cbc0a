"""``unet-attn``: the U-Net with self-attention of DDPM and improved DDPM, as a difftk Denoiser."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from difftk.maths.embedding import timestep_embedding
from torch import nn

from difftk_unet_attn.config import UNetAttnConfig
from difftk_unet_attn.conv import Conv3x3
from difftk_unet_attn.layers import NORM_EPS, AttentionBlock, Downsample, ResBlock, Upsample, silu


class _Level(nn.Module):
    """One resolution of one path: residual blocks, each followed by attention where configured."""

    def __init__(self, blocks: list[ResBlock], attend: bool, heads: int, groups: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(
            [AttentionBlock(b.conv2.out_channels, heads=heads, groups=groups) for b in blocks] if attend else [])


class UNetAttn(nn.Module):
    """U-Net with self-attention: the DDPM network (Ho et al. 2020, App. B) with multi-head
    attention and AdaGN scale-shift of the embedding (Dhariwal & Nichol 2021, §3).

    Down path: a 3×3 input convolution, then for each level ``num_res_blocks`` residual blocks
    (self-attention after each at ``attention_resolutions``) and a stride-2 convolution between
    levels. Middle: residual block, attention, residual block. Up path: per level
    ``num_res_blocks + 1`` residual blocks, each fed the concatenation with the matching
    down-path activation, attention as on the way down, nearest ×2 + 3×3 convolution between
    levels. Out: GroupNorm, SiLU, a 3×3 convolution. As in the reference code of Ho et al., the
    last convolution of every residual block, every attention output projection and the output
    convolution start at zero, so the network starts as a chain of identities giving 0.

    The time t ∈ [0, 1] enters through a sinusoidal embedding of 1000·t (so frequencies match
    the discrete-step convention of Ho et al.) and a two-layer MLP. With ``num_classes`` > 0 a
    learned table of ``num_classes + 1`` rows is added to it; row ``num_classes`` is the learned
    null class, used for ``cond=None`` (classifier-free guidance, Ho & Salimans 2022). An
    unconditional network ignores ``cond``.

    Build it as ``UNetAttn(UNetAttn.Config(...))`` or ``UNetAttn(**options)``. On the CPU each of
    its 3×3 convolution shapes runs with the algorithm (oneDNN or NNPACK's Winograd kernels) timed
    fastest on the running machine (:mod:`difftk_unet_attn.conv`); the blocks are written to make few passes over activations
    (:mod:`difftk_unet_attn.layers`).
    """

    Config = UNetAttnConfig

    def __init__(self, config: UNetAttnConfig | None = None, **options) -> None:
        super().__init__()
        if config is not None and options:
            raise TypeError("UNetAttn takes a config or keyword options, not both")
        config = config if config is not None else UNetAttnConfig(**options)
        self.config = config
        self.prediction = config.prediction
        self.learned_variance = config.learned_variance
        self.num_classes = config.num_classes
        c = config
        base, groups, heads = c.base_channels, c.norm_groups, c.num_heads
        emb_dim = 4 * base

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, groups=groups, dropout=c.dropout, scale_shift=c.scale_shift)

        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(c.num_classes + 1, emb_dim) if c.num_classes else None

        self.conv_in = Conv3x3(c.in_channels, base)
        widths = [base]  # the width of every activation kept for the up path
        ch = base
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, (mult, size) in enumerate(zip(c.channel_mult, c.resolutions, strict=True)):
            blocks = []
            for _ in range(c.num_res_blocks):
                blocks.append(res(ch, base * mult))
                ch = base * mult
                widths.append(ch)
            self.down.append(_Level(blocks, size in c.attention, heads, groups))
            if i < len(c.channel_mult) - 1:
                self.downsample.append(Downsample(ch))
                widths.append(ch)

        self.mid_block1 = res(ch, ch)
        self.mid_attn = AttentionBlock(ch, heads=heads, groups=groups)
        self.mid_block2 = res(ch, ch)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(c.channel_mult))):
            blocks = []
            for _ in range(c.num_res_blocks + 1):
                blocks.append(res(ch + widths.pop(), base * c.channel_mult[i]))
                ch = base * c.channel_mult[i]
            self.up.append(_Level(blocks, c.resolutions[i] in c.attention, heads, groups))
            if i > 0:
                self.upsample.append(Upsample(ch))

        self.norm_out = nn.GroupNorm(groups, ch, eps=NORM_EPS)
        self.conv_out = Conv3x3(ch, c.in_channels * (2 if c.learned_variance else 1))
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

        # Every residual block's embedding projection SiLU(emb)·W_i + b_i, stacked into one Linear:
        # the same parameters as one Linear per block, computed in a single matrix product.
        # modules() lists the blocks in the order forward() uses them.
        self._emb_widths = [m.emb_width for m in self.modules() if isinstance(m, ResBlock)]
        self.emb_proj = nn.Linear(emb_dim, sum(self._emb_widths))

    def extra_repr(self) -> str:
        return f"prediction={self.prediction!r}, learned_variance={self.learned_variance}, num_classes={self.num_classes}"

    def _check(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> None:
        c = self.config
        if x_t.dim() != 4 or x_t.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"unet-attn expects x_t of shape [B, {c.in_channels}, {c.image_size}, {c.image_size}], "
                             f"got {list(x_t.shape)}: set in_channels and image_size to match the data")
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"unet-attn expects t of shape [{x_t.shape[0]}] (one time per image), got {list(t.shape)}")
        if cond is not None and self.label_emb is not None:
            if cond.shape != (x_t.shape[0],) or cond.dtype.is_floating_point or cond.dtype == torch.bool:
                raise ValueError(f"unet-attn expects cond as integer class indices of shape [{x_t.shape[0]}], "
                                 f"got {cond.dtype} {list(cond.shape)}")
            if cond.numel() and (int(cond.min()) < 0 or int(cond.max()) > self.num_classes):
                raise ValueError(f"unet-attn class indices must lie in 0..{self.num_classes - 1} "
                                 f"({self.num_classes} = the null class), got {int(cond.min())}..{int(cond.max())}")

    def embed(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The embedding [B, 4·base_channels] of time and class."""
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels).to(self.conv_in.weight.dtype))
        if self.label_emb is not None:
            if cond is None:
                cond = torch.full((t.shape[0],), self.num_classes, dtype=torch.long, device=t.device)
            emb = emb + self.label_emb(cond)
        return emb

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        self._check(x_t, t, cond)
        emb = iter(self.emb_proj(F.silu(self.embed(t, cond))).split(self._emb_widths, dim=1))

        h = self.conv_in(x_t)
        skips = [h]
        for i, level in enumerate(self.down):
            for j, block in enumerate(level.blocks):
                h = block(h, next(emb))
                if level.attn:
                    h = level.attn[j](h)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)

        h = self.mid_attn(self.mid_block1(h, next(emb)))
        h = self.mid_block2(h, next(emb))

        for i, level in enumerate(self.up):
            for j, block in enumerate(level.blocks):
                h = block(torch.cat([h, skips.pop()], dim=1), next(emb))
                if level.attn:
                    h = level.attn[j](h)
            if i < len(self.upsample):
                h = self.upsample[i](h)

        h = silu(F.group_norm(h, self.config.norm_groups, self.norm_out.weight, self.norm_out.bias, NORM_EPS))
        return self.conv_out(h)
