"""Entry point of the dit plugin: registers the ``dit`` denoiser."""

import difftk

from difftk_dit.model import DiT


@difftk.hookimpl
def difftk_register_components(register):
    register.add_denoiser("dit", DiT)
