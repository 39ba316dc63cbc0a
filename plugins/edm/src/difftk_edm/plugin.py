"""Entry point of the edm plugin."""

import difftk

from difftk_edm.samplers import EDMHeun, EDMStochastic


@difftk.hookimpl
def difftk_register_components(register):
    register.add_sampler("heun", EDMHeun)
    register.add_sampler("edm", EDMStochastic)
