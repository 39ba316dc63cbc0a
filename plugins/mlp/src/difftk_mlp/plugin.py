"""Entry point of the mlp plugin: registers the ``mlp`` denoiser."""

import difftk

from difftk_mlp.model import MLPDenoiser


@difftk.hookimpl
def difftk_register_components(register):
    register.add_denoiser("mlp", MLPDenoiser)
