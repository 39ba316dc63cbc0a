"""Entry point of the unipc plugin."""

import difftk

from difftk_unipc.sampler import UniPCSampler


@difftk.hookimpl
def difftk_register_components(register):
    register.add_sampler("unipc", UniPCSampler)
