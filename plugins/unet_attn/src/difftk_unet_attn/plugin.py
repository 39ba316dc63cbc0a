"""Entry point of the unet_attn plugin: registers the ``unet-attn`` denoiser."""

import difftk

from difftk_unet_attn.model import UNetAttn


@difftk.hookimpl
def difftk_register_components(register):
    register.add_denoiser("unet-attn", UNetAttn)
