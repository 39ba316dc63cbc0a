"""Options of ``dit``, with the checks that make impossible networks one-line errors."""

from __future__ import annotations

import attrs
from difftk.maths.diffusion import PREDICTIONS
from difftk.options import option, option_error

#: how the time t ∈ [0, 1] becomes the frequency embedding (see :func:`difftk_dit.layers.frequency_embedding`)
TIME_EMBEDDINGS: tuple[str, ...] = ("difftk", "diffusers")


@attrs.frozen
class DiTConfig:
    """Options of :class:`~difftk_dit.model.DiT`; the defaults fit MNIST (1×28×28): 4×4 patches
    (49 tokens), width 192, 6 blocks of 6 heads (4.2 M parameters, a third of them the adaLN regressions)."""

    in_channels: int = option(
        1, help="channels of the input: the images' (1 grey, 3 colour) or the latents'", ge=1, le=64
    )
    image_size: int = option(28, help="height and width of the input (of the latents in latent space)", ge=1)
    patch_size: int = option(
        4, help="side p of the square patches; image_size must be a multiple of it (the paper's DiT-*/2 is p = 2)", ge=1
    )
    hidden_size: int = option(192, help="token width d (DiT-S 384, DiT-B 768)", ge=4)
    depth: int = option(6, help="adaLN-Zero transformer blocks N (DiT-S and DiT-B 12)", ge=1)
    num_heads: int = option(6, help="attention heads; must divide hidden_size", ge=1)
    mlp_ratio: float = option(4.0, help="width of each block's MLP as a multiple of hidden_size", gt=0.0)
    pos_embed: str = option(
        "sincos",
        help="2-D positional embedding: sincos (fixed, as in the paper) or learned",
        choices=("sincos", "learned"),
    )
    num_classes: int = option(0, help="classes for conditioning (0 = unconditional)", ge=0)
    learned_variance: bool = option(False, help="also output the iDDPM variance interpolation v (2× channels)")
    prediction: str = option(
        "eps",
        help="what the network predicts: eps, x0, v, flow (u = ε − x₀) or edm (Karras et al. 2022 F)",
        choices=PREDICTIONS,
    )
    time_embedding: str = option(
        "difftk",
        help="difftk: sinusoids of 1000·t (as unet-attn); diffusers: the "
        "DiTTransformer2DModel's, of step k = 1000·t − 1 (weights read by the diffusers bridge)",
        choices=TIME_EMBEDDINGS,
    )
    mlp_norm_eps: float = option(
        1e-6,
        help="ε of the LayerNorm before each MLP (the paper's 1e-6; diffusers' DiT uses its norm_eps, 1e-5 by default)",
        gt=0.0,
        le=1.0,
    )

    def __attrs_post_init__(self) -> None:
        if self.image_size % self.patch_size:
            below = self.image_size - self.image_size % self.patch_size
            raise option_error(
                self,
                f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}: use a patch_size "
                f"that divides it ({', '.join(map(str, _divisors(self.image_size)))}) or an image_size of "
                f"{below or self.patch_size} or {below + self.patch_size}",
            )
        if self.hidden_size % self.num_heads:
            raise option_error(
                self,
                f"num_heads={self.num_heads} does not divide hidden_size={self.hidden_size}: use a divisor, "
                f"e.g. {_divisor_near(self.hidden_size, self.num_heads)}",
            )
        if self.pos_embed == "sincos" and self.hidden_size % 4:
            raise option_error(
                self,
                f"hidden_size={self.hidden_size} must be a multiple of 4 for the 2-D sin-cos embedding (sine and "
                "cosine of each axis): use a multiple of 4 or pos_embed=learned",
            )
        if round(self.hidden_size * self.mlp_ratio) < 1:
            raise option_error(
                self, f"mlp_ratio={self.mlp_ratio} leaves the MLP no width at hidden_size={self.hidden_size}"
            )

    @property
    def grid_size(self) -> int:
        """Patches per side, image_size / patch_size."""
        return self.image_size // self.patch_size

    @property
    def out_channels(self) -> int:
        """Channels of the output: in_channels, twice that with a learned variance."""
        return self.in_channels * (2 if self.learned_variance else 1)

    @property
    def mlp_width(self) -> int:
        return round(self.hidden_size * self.mlp_ratio)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _divisor_near(n: int, k: int) -> int:
    return max(d for d in range(1, min(n, k) + 1) if n % d == 0)
