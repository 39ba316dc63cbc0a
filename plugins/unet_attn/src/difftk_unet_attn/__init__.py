"""The U-Net with self-attention of DDPM and improved DDPM, as the difftk denoiser ``unet-attn``."""

from difftk_unet_attn.config import UNetAttnConfig
from difftk_unet_attn.conv import fast_cpu_conv, force_conv3x3
from difftk_unet_attn.model import UNetAttn

__all__ = ["UNetAttn", "UNetAttnConfig", "fast_cpu_conv", "force_conv3x3"]
