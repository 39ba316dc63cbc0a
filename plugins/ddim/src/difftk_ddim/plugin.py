"""Entry point of the ddim plugin."""

import difftk

from difftk_ddim.sampler import DDIMSampler


@difftk.hookimpl
def difftk_register_components(register):
    register.add_sampler("ddim", DDIMSampler)
