"""The diffusion transformer of Peebles & Xie 2023, as the difftk denoiser ``dit``."""

from difftk_dit.config import DiTConfig
from difftk_dit.layers import patchify, unpatchify
from difftk_dit.model import DiT

__all__ = ["DiT", "DiTConfig", "patchify", "unpatchify"]
