"""The blocks of the U-Net: time embedding, residual block, self-attention, resampling.

Written for speed in eager PyTorch on the CPU, where every extra pass over an activation costs
memory bandwidth: GroupNorm's affine is folded into the time scale-shift, residual sums are
added in place to a convolution's output (which its backward does not need) or accumulated by
the matrix product that computes them (1×1 shortcut, attention output), SiLU is in place when
no graph is recorded, attention reads q, k, v as strided views of one projection, and the
upsampling convolution runs at the low resolution. Layouts stay NCHW: on the CPU, GroupNorm
over channels-last tensors measured several times slower than over NCHW, more than
channels-last saved in the convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from difftk_unet_attn.conv import Conv3x3

#: The GroupNorm ε of the reference implementations.
NORM_EPS = 1e-5


def dropout(h: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, with the keep mask drawn as U[0,1) ≥ p.

    Same distribution as ``F.dropout``; on the CPU ``rand`` draws a mask about twice as fast
    as ``bernoulli_``, which dominated the cost of dropout in the training step.
    """
    if not training or p == 0.0:
        return h
    keep = torch.rand_like(h).ge_(p).mul_(1.0 / (1.0 - p))
    return h * keep


def silu(h: torch.Tensor) -> torch.Tensor:
    """SiLU, in place when no autograd graph is being recorded."""
    return F.silu(h, inplace=not torch.is_grad_enabled())


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv3×3 → (+ time/class embedding) → GroupNorm → SiLU → dropout → conv3×3,
    plus a 1×1 shortcut when the width changes (Ho et al. 2020, App. B, after Zagoruyko &
    Komodakis 2016).

    With ``scale_shift`` the embedding enters as GroupNorm(h)·(1 + s) + b (Dhariwal & Nichol
    2021, §3 "AdaGN"); otherwise it is added to h before the second norm, as in Ho et al. The
    embedding projection itself lives in :class:`~difftk_unet_attn.model.UNetAttn`, which
    computes every block's projection in one matrix product; ``emb_width`` is how many of its
    columns this block reads.
    """

    def __init__(self, in_channels: int, out_channels: int, *, groups: int, dropout: float,
                 scale_shift: bool) -> None:
        super().__init__()
        self.groups, self.p, self.scale_shift = groups, dropout, scale_shift
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=NORM_EPS)
        self.conv1 = Conv3x3(in_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=NORM_EPS)
        self.conv2 = Conv3x3(out_channels, out_channels)
        nn.init.zeros_(self.conv2.weight)  # the block starts as the identity (Ho et al. reference code)
        nn.init.zeros_(self.conv2.bias)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None  # 1×1
        self.emb_width = 2 * out_channels if scale_shift else out_channels

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = silu(F.group_norm(x, self.groups, self.norm1.weight, self.norm1.bias, NORM_EPS))
        h = self.conv1(h)
        if self.scale_shift:
            # γ·norm(h)+β scaled by (1+s) and shifted by b is norm(h)·[γ(1+s)] + [β(1+s)+b]:
            # one pass over h instead of three.
            scale, shift = emb.chunk(2, dim=1)
            scale = scale + 1.0
            gain = (self.norm2.weight * scale)[:, :, None, None]
            offset = torch.addcmul(shift, self.norm2.bias, scale)[:, :, None, None]
            h = torch.addcmul(offset, F.group_norm(h, self.groups, None, None, NORM_EPS), gain)
        else:
            h = F.group_norm(h.add_(emb[:, :, None, None]), self.groups, self.norm2.weight, self.norm2.bias, NORM_EPS)
        if self.shortcut is None:
            return self.conv2(dropout(silu(h), self.p, self.training)).add_(x)
        # The 1×1 shortcut as a batched matrix product accumulated onto conv2's output, its bias
        # folded into conv2's. As a 1×1 convolution, oneDNN's backward (fed the strided gradient
        # slice of the next block's concatenation) measured several times slower on the CPU.
        h = self.conv2(dropout(silu(h), self.p, self.training), bias=self.conv2.bias + self.shortcut.bias)
        B, C, H, W = h.shape
        w = self.shortcut.weight.view(C, -1)
        return torch.baddbmm(h.view(B, C, H * W), w.expand(B, *w.shape), x.reshape(B, -1, H * W)).view(B, C, H, W)


class AttentionBlock(nn.Module):
    """x + proj(MultiHeadSelfAttention(GroupNorm(x))) over the H·W positions (Ho et al. 2020,
    App. B, at 16×16 in their CIFAR-10 model; several heads as in Dhariwal & Nichol 2021, §3).

    q, k, v come from one fused projection and are handed to ``scaled_dot_product_attention``
    as views; the output projection accumulates onto the residual in the same matrix product.
    """

    def __init__(self, channels: int, *, heads: int, groups: int) -> None:
        super().__init__()
        self.groups, self.heads = groups, heads
        self.norm = nn.GroupNorm(groups, channels, eps=NORM_EPS)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)  # starts as the identity (Ho et al. reference code)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        L, d = H * W, C // self.heads
        h = F.group_norm(x, self.groups, self.norm.weight, self.norm.bias, NORM_EPS)
        # [B, L, 3C] = bias + hᵀ·Wᵀ, reading the NCHW activation transposed in place.
        w = self.qkv.weight.t()
        qkv = torch.baddbmm(self.qkv.bias.expand(B, L, 3 * C), h.view(B, C, L).transpose(1, 2), w.expand(B, *w.shape))
        q, k, v = qkv.view(B, L, 3, self.heads, d).permute(2, 0, 3, 1, 4)  # each [B, heads, L, d]
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, C)
        # x + W_o·oᵀ in one batched product, then the bias in place: [B, C, L], NCHW-contiguous.
        out = torch.baddbmm(x.reshape(B, C, L), self.proj.weight.expand(B, C, C), o.transpose(1, 2))
        return out.add_(self.proj.bias[:, None]).view(B, C, H, W)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3×3 convolution (Ho et al. 2020, App. B)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour ×2, then a 3×3 convolution (Ho et al. 2020, App. B),
    computed without forming the upsampled map.

    Output pixel (2i+a, 2j+b) of conv3×3(up(x)) reads only rows i−1, i of x when a = 0 (kernel
    rows 0 | 1+2) and rows i, i+1 when a = 1 (kernel rows 0+1 | 2), likewise for columns. So the
    four output phases are 2×2 convolutions of x with summed kernels — one convolution with 4×
    the output channels on the small map — interleaved into the output: 16·C² multiply-adds per
    input pixel instead of 36·C², the same function and the same parameters.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def phase_weight(self) -> torch.Tensor:
        """The 2×2 kernels of the four phases, [4·C_out, C_in, 2, 2] in (a, b, C_out) order."""
        w = self.conv.weight
        rows = torch.stack([torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], 2),
                            torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], 2)])  # [a, O, I, 2, 3]
        cols = torch.stack([torch.stack([rows[..., 0], rows[..., 1] + rows[..., 2]], -1),
                            torch.stack([rows[..., 0] + rows[..., 1], rows[..., 2]], -1)], 1)  # [a, b, O, I, 2, 2]
        return cols.reshape(-1, *cols.shape[3:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        O = self.conv.out_channels
        # y[a, b][i', j'] combines padded rows i'−1, i' and columns j'−1, j': phase (a, b) is the window at (a, b).
        y = F.conv2d(x, self.phase_weight(), self.conv.bias.repeat(4), padding=1).view(B, 2, 2, O, H + 1, W + 1)
        out = x.new_empty(B, O, H, 2, W, 2)
        for a in (0, 1):
            for b in (0, 1):
                out[:, :, :, a, :, b] = y[:, a, b, :, a:a + H, b:b + W]
        return out.view(B, O, 2 * H, 2 * W)
