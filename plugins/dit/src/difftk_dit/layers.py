"""The parts of DiT (Peebles & Xie 2023): patches, embeddings, the adaLN-Zero block.

Written for few passes over the tokens in eager PyTorch: the LayerNorms carry no affine (the
modulation is the affine), the modulation h·(1 + γ) + β and the gated residual x + α·h are one
``addcmul`` each, q, k and v come from one projection and meet in
``scaled_dot_product_attention``, and at inference on the CPU the linear maps add their bias and
GELU inside the matrix product where that is measured faster (:mod:`difftk_dit.linear`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from difftk_dit.linear import linear

#: the LayerNorm ε of the paper's blocks and final layer
NORM_EPS = 1e-6
#: width of the sinusoidal frequency embedding of the time (Peebles & Xie 2023, App.; Nichol & Dhariwal's 256)
FREQUENCY_DIM = 256


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] → the tokens [B, (H/p)·(W/p), p·p·C]: patches in row-major order, each patch
    flattened as (row, column, channel) (Peebles & Xie 2023, §3.1, Fig. 4)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(tokens: torch.Tensor, channels: int, p: int, grid: int) -> torch.Tensor:
    """The inverse of :func:`patchify`: tokens [B, grid², p·p·C] → [B, C, grid·p, grid·p]."""
    B = tokens.shape[0]
    x = tokens.reshape(B, grid, grid, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, channels, grid * p, grid * p)


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """[sin(pos·ω_i), cos(pos·ω_i)] with ω_i = 10000^(−2i/dim), i < dim/2 (Vaswani et al. 2017, §3.5), float64."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = torch.outer(pos.to(torch.float64).reshape(-1), omega)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """The fixed 2-D positional embedding [grid², dim] of DiT (Peebles & Xie 2023, §3.1, after
    MAE): the first dim/2 channels embed a token's column, the last dim/2 its row."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)


def diffusers_frequency_embedding(t: torch.Tensor, dim: int = FREQUENCY_DIM) -> torch.Tensor:
    """The frequency embedding of diffusers' ``DiTTransformer2DModel`` (its ``Timesteps(256,
    flip_sin_to_cos=True, downscale_freq_shift=1)``) of the step k = 1000·t − 1:
    [cos(k·ω_i), sin(k·ω_i)], ω_i = 10000^(−i/(dim/2 − 1)). The order of operations is diffusers'
    own, so equal steps give equal embeddings bit for bit."""
    half = dim // 2
    k = t.to(torch.float32) * 1000.0 - 1.0
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1)
    args = k[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """h·(1 + γ) + β per example (Peebles & Xie 2023, §3.2 "adaLN"); shift, scale [B, d], h [B, N, d]."""
    # β expanded to h's shape first: addcmul with a broadcast first operand takes a CPU path tens of times slower
    return torch.addcmul(shift[:, None].expand_as(h), h, scale[:, None] + 1.0)


class DiTBlock(nn.Module):
    """One adaLN-Zero block (Peebles & Xie 2023, §3.2, Fig. 3):

        x ← x + α₁ · Attn(LN(x)·(1 + γ₁) + β₁)
        x ← x + α₂ · MLP(LN(x)·(1 + γ₂) + β₂)

    with (β₁, γ₁, α₁, β₂, γ₂, α₂) regressed from the conditioning c; the regression lives in
    :class:`~difftk_dit.model.DiT`, which computes every block's in one matrix product, and starts
    at zero, so each block starts as the identity. Attention is multi-head self-attention with
    one q/k/v projection; the MLP is Linear → GELU (tanh) → Linear.
    """

    def __init__(self, d: int, heads: int, mlp_width: int, mlp_norm_eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.mlp_norm_eps = mlp_norm_eps
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc1 = nn.Linear(d, mlp_width)
        self.fc2 = nn.Linear(mlp_width, d)

    def attention(self, h: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention of the tokens h [B, N, d] (Vaswani et al. 2017, §3.2.2)."""
        B, N, d = h.shape
        q, k, v = linear(h, self.qkv).view(B, N, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        o = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, d/heads]
        return linear(o.transpose(1, 2).reshape(B, N, d), self.proj)

    def forward(self, x: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """x [B, N, d], mod [B, 6d] = (β₁, γ₁, α₁, β₂, γ₂, α₂)."""
        d = x.shape[-1]
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.split(d, dim=1)
        h = modulate(F.layer_norm(x, (d,), eps=NORM_EPS), shift1, scale1)
        x = torch.addcmul(x, gate1[:, None], self.attention(h))
        h = modulate(F.layer_norm(x, (d,), eps=self.mlp_norm_eps), shift2, scale2)
        h = linear(linear(h, self.fc1, gelu=True), self.fc2)
        return torch.addcmul(x, gate2[:, None], h)
