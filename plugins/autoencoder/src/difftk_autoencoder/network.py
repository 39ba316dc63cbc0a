"""``kl``: the KL-regularised convolutional autoencoder of latent diffusion (Rombach et al. 2022, §3, App. G).

The encoder E maps x [C, H, W] to the parameters (mean, log σ²) of a diagonal Gaussian q(z | x) on
[z_channels, H/f, W/f], f = 2^(len(channel_mult) − 1); the decoder D maps z back. Both are stacks of
pre-activation residual blocks (GroupNorm, SiLU, 3×3 convolutions) with a stride-2 convolution per
level down and nearest upsampling then a convolution per level up, as the paper's first stage;
attention in the middle block is left out (small images). The latents' ``scale`` (1/σ̂ over the
data, §4.3.2) and ``shift`` come from the weights file, set when the autoencoder was trained.
"""

from __future__ import annotations

import attrs
import torch
from difftk.components.autoencoding import AutoencoderBase, LatentDistribution
from difftk.components.weights import check_sha256, is_path, locate, sha256_of
from difftk.errors import IncompatibleError, OptionError
from difftk.options import option
from torch import nn

from difftk_autoencoder.weights import load_into


@attrs.frozen
class KLAutoencoderConfig:
    """Options of :class:`KLAutoencoder`; the defaults (≈ 0.6 M parameters) take MNIST's 28×28 to 7×7×3 latents."""

    in_channels: int = option(1, help="channels C of the images", ge=1)
    channels: int = option(32, help="channels of the first level", ge=8)
    channel_mult: tuple[int, ...] = option((1, 2, 2), help="channel multiplier per level; f = 2^(levels − 1)", ge=1)
    num_res_blocks: int = option(1, help="residual blocks per level", ge=1, le=8)
    z_channels: int = option(3, help="channels of the latent z (3 at f = 4, as the paper's kl-f4)", ge=1)
    pad: int = option(
        0,
        help="pixels added on each side before encoding (edge values repeated) and cropped after "
        "decoding, e.g. 2 takes 28×28 to 32×32 and so 8×8 latents at f = 4",
        ge=0,
        le=64,
    )
    groups: int = option(8, help="GroupNorm groups (must divide every level's channels)", ge=1)
    weights: str | None = option(
        None,
        help="a shipped name (e.g. mnist-kl; `difftk plugins` lists them) or a weights file written by "
        "`python -m difftk_autoencoder.train`; none = random (untrained)",
        optional=True,
    )
    weights_sha256: str | None = option(
        None,
        help="the sha256 of the weights file's content, recorded when the autoencoder is first built: a model "
        "refuses weights whose content differs from those it was trained with",
        optional=True,
    )

    def __attrs_post_init__(self) -> None:
        if not self.channel_mult or len(self.channel_mult) > 6:
            raise OptionError(
                f"autoencoder 'kl': channel_mult={list(self.channel_mult)} must be 1 to 6 multipliers, e.g. 1,2,2"
            )
        if self.weights is not None:
            self._fingerprint()
        elif self.weights_sha256 is not None:
            raise OptionError("autoencoder 'kl': weights_sha256 is set without weights: set autoencoder.weights too")
        bad = [self.channels * m for m in self.channel_mult if (self.channels * m) % self.groups]
        if bad:
            raise OptionError(
                f"autoencoder 'kl': groups={self.groups} does not divide {bad[0]} channels: choose groups "
                "dividing channels·m for every m of channel_mult"
            )

    def _fingerprint(self) -> None:
        """A shipped name stays a name (it travels with a spec); a path is stored absolute, where the file
        is rather than where it was named from. Either way the file's sha256 is recorded, or checked
        against the one recorded."""
        assert self.weights is not None
        path = locate("autoencoder", "kl", self.weights)
        shipped = not is_path(self.weights)
        if not shipped:
            object.__setattr__(self, "weights", str(path))
        what = f"shipped autoencoder weights '{self.weights}'" if shipped else f"autoencoder weights {path}"
        fix = (
            "reinstall the plugin that ships them"
            if shipped
            else "put it back, or give the path of another (`python -m difftk_autoencoder.train` writes one) or a "
            "shipped name (`difftk plugins` lists them)"
        )
        actual = sha256_of(path, what="autoencoder weights", fix=fix)
        object.__setattr__(self, "weights_sha256", check_sha256(self.weights_sha256, actual, what=what))

    @property
    def factor(self) -> int:
        """f: how many pixels a latent cell covers along each side."""
        return 2 ** (len(self.channel_mult) - 1)


class _ResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))), with a 1×1 convolution on the skip when the width changes."""

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return self.skip(x) + h


class _Up(nn.Module):
    """Nearest upsampling ×2, then a 3×3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class KLAutoencoder(AutoencoderBase):
    """E(x) → q(z | x) = N(mean, σ²) on [z_channels, H/f, W/f], and D(z) → x (Rombach et al. 2022, §3)."""

    Config = KLAutoencoderConfig

    def __init__(self, config: KLAutoencoderConfig | None = None, **options) -> None:
        super().__init__()
        config = config if config is not None else KLAutoencoderConfig(**options)
        self.config = c = config
        widths = [c.channels * m for m in c.channel_mult]
        # encoder: conv in, per level residual blocks then a stride-2 convolution (not after the last level)
        self.enc_in = nn.Conv2d(c.in_channels, widths[0], 3, padding=1)
        down: list[nn.Module] = []
        width = widths[0]
        for level, w in enumerate(widths):
            for _ in range(c.num_res_blocks):
                down.append(_ResBlock(width, w, c.groups))
                width = w
            if level < len(widths) - 1:
                down.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        down += [
            _ResBlock(width, width, c.groups),
            nn.GroupNorm(c.groups, width),
            nn.SiLU(),
            nn.Conv2d(width, 2 * c.z_channels, 3, padding=1),
        ]
        self.encoder = nn.Sequential(*down)
        self.quant = nn.Conv2d(2 * c.z_channels, 2 * c.z_channels, 1)  # the paper's quant_conv on (mean, log σ²)
        self.post_quant = nn.Conv2d(c.z_channels, c.z_channels, 1)
        # decoder: the mirror image, nearest upsampling then a convolution per level
        up: list[nn.Module] = [
            nn.Conv2d(c.z_channels, widths[-1], 3, padding=1),
            _ResBlock(widths[-1], widths[-1], c.groups),
        ]
        width = widths[-1]
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(c.num_res_blocks):
                up.append(_ResBlock(width, w, c.groups))
                width = w
            if level > 0:
                up.append(_Up(width))
        up += [nn.GroupNorm(c.groups, width), nn.SiLU(), nn.Conv2d(width, c.in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*up)
        if c.weights is not None and torch.get_default_device().type != "meta":  # not when the core counts parameters
            load_into(self, c.weights)

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, f = self.config, self.config.factor
        if len(data_shape) != 3 or data_shape[0] != c.in_channels:
            raise IncompatibleError(
                f"autoencoder 'kl' takes images of {c.in_channels} channel(s) [C, H, W], not examples of "
                f"shape {list(data_shape)}: set autoencoder.in_channels={data_shape[0]} (and train it)"
                if len(data_shape) == 3
                else f"autoencoder 'kl' takes images [C, H, W], not examples of shape {list(data_shape)}"
            )
        H, W = (n + 2 * c.pad for n in data_shape[1:])
        if H % f or W % f:
            raise IncompatibleError(
                f"autoencoder 'kl' halves the size {len(c.channel_mult) - 1} time(s) (f={f}), but the "
                f"images are {H}×{W} (pad={c.pad} included): set autoencoder.pad so that the padded "
                f"size is divisible by {f}, or use fewer levels"
            )
        return (c.z_channels, H // f, W // f)

    def encode(self, x: torch.Tensor) -> LatentDistribution:
        p = self.config.pad
        if p:
            x = nn.functional.pad(x, (p, p, p, p), mode="replicate")
        mean, logvar = self.quant(self.encoder(self.enc_in(x))).chunk(2, dim=1)
        return LatentDistribution(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.decoder(self.post_quant(z))
        p = self.config.pad
        return x[..., p : x.shape[-2] - p, p : x.shape[-1] - p] if p else x
