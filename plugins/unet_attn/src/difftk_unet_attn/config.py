"""Options of ``unet-attn``, with the checks that make impossible networks one-line errors."""

from __future__ import annotations

import attrs
from difftk.maths.diffusion import PREDICTIONS
from difftk.options import option, option_error


@attrs.frozen
class UNetAttnConfig:
    """Options of :class:`UNetAttn`; the defaults fit MNIST (1×28×28) at the shipped model's size
    (1.2 M parameters with 10 classes, ≈ 1.2 s per step of batch 64 on 2 CPU cores)."""

    in_channels: int = option(1, help="channels of the input: the images' (1 grey, 3 colour) or the latents' "
                              "(4 for a first stage with z_channels=4)", ge=1, le=64)
    image_size: int = option(28, help="height and width of the images", ge=1)
    base_channels: int = option(32, help="width of the first level", ge=1)
    channel_mult: tuple[int, ...] = option(
        (1, 2, 2), help="width of each level as a multiple of base_channels; the resolution halves between levels", ge=1)
    num_res_blocks: int = option(1, help="residual blocks per level on the way down", ge=1)
    attention_resolutions: tuple[int, ...] | None = option(
        None, help="feature-map sizes that get self-attention (the middle always has it); none = derived from "
        "image_size: 16 (Ho et al. 2020, App. B), or half the image at 32 px and below", ge=1, optional=True)
    num_heads: int = option(4, help="attention heads", ge=1)
    dropout: float = option(0.1, help="dropout rate inside residual blocks", ge=0.0, lt=1.0)
    num_classes: int = option(0, help="classes for conditioning (0 = unconditional)", ge=0)
    learned_variance: bool = option(False, help="also output the iDDPM variance interpolation v (2× channels)")
    prediction: str = option("eps", help="what the network predicts: eps, x0, v, flow (u = ε − x₀) or edm (Karras et al. 2022 F)",
                             choices=PREDICTIONS)
    scale_shift: bool = option(True, help="embedding as GroupNorm scale-shift (Dhariwal & Nichol) instead of a sum")
    norm_groups: int = option(8, help="GroupNorm groups; must divide every level's width", ge=1)

    def __attrs_post_init__(self) -> None:
        if not self.channel_mult:
            raise option_error(self, "channel_mult is empty: give one multiplier per level, e.g. 1,2,2")
        levels = len(self.channel_mult)
        step = 2 ** (levels - 1)
        if self.image_size % step:
            raise option_error(
                self, f"image_size={self.image_size} must be divisible by 2**(len(channel_mult)-1)={step} to halve "
                f"{levels - 1} times: use a multiple of {step} or fewer channel_mult entries")
        sizes = self.resolutions
        bad = [r for r in self.attention if r not in sizes]
        if bad:
            fit = ",".join(map(str, derived_attention(sizes))) or "none"
            raise option_error(
                self, f"attention_resolutions has {', '.join(map(str, bad))}, but the feature maps are "
                f"{', '.join(map(str, sizes))}: use attention_resolutions={fit} (what none derives for "
                f"image_size={self.image_size}), or choose among those")
        widths = sorted({self.base_channels} | {self.base_channels * m for m in self.channel_mult})
        odd = [w for w in widths if w % self.norm_groups]
        if odd:
            raise option_error(
                self, f"width {odd[0]} (base_channels={self.base_channels} or a multiple from channel_mult) is not "
                f"divisible by norm_groups={self.norm_groups}: use base_channels a multiple of {self.norm_groups} or a "
                "smaller norm_groups")
        for i, r in enumerate(sizes):
            # a level's first block reads the previous level's width (the input layer's at the top)
            narrowest = self.base_channels * min(self.channel_mult[i], self.channel_mult[i - 1] if i else 1)
            if (narrowest // self.norm_groups) * r * r < 2:
                raise option_error(
                    self, f"GroupNorm needs more than one value per group, but the {r}×{r} level has {narrowest} "
                    f"channels in norm_groups={self.norm_groups} groups: use fewer norm_groups, a larger image_size "
                    "or fewer channel_mult entries")
        attended = {self.base_channels * m for m, r in zip(self.channel_mult, sizes, strict=True)
                    if r in self.attention} | {self.base_channels * self.channel_mult[-1]}
        split = [w for w in sorted(attended) if w % self.num_heads]
        if split:
            raise option_error(
                self, f"num_heads={self.num_heads} does not divide the attention width {split[0]}: "
                f"use a divisor of {split[0]}, e.g. {_divisor_near(split[0], self.num_heads)}")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The feature-map size of each level, from the input down."""
        return tuple(self.image_size // 2**i for i in range(len(self.channel_mult)))

    @property
    def attention(self) -> tuple[int, ...]:
        """The feature-map sizes that get attention: ``attention_resolutions``, or the derived ones."""
        return self.attention_resolutions if self.attention_resolutions is not None else derived_attention(self.resolutions)

    def derived_options(self) -> dict[str, tuple[int, ...]]:
        """The options left unset (none) with the values they take for this image_size."""
        return {} if self.attention_resolutions is not None else {"attention_resolutions": self.attention}


def derived_attention(resolutions: tuple[int, ...]) -> tuple[int, ...]:
    """Attention at one level below the input: the largest feature map of at most 16 (Ho et al.
    2020, App. B: 16×16 from 32×32 up to 256×256) and at most half the image (14 for MNIST's 28)."""
    image = resolutions[0]
    below = [r for r in resolutions[1:] if r <= min(16, image // 2)]
    return (max(below),) if below else ()


def _divisor_near(n: int, k: int) -> int:
    return max(d for d in range(1, min(n, k) + 1) if n % d == 0)
