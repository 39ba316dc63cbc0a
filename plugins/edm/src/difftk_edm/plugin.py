"""Entry point of the edm plugin."""

import difftk

from difftk_edm.objective import EDMLoss
from difftk_edm.samplers import EDMHeun, EDMStochastic
from difftk_edm.schedule import EDMSchedule


@difftk.hookimpl
def difftk_register_components(register):
    register.add_sampler("heun", EDMHeun)
    register.add_sampler("edm", EDMStochastic)
    register.add_schedule("edm", EDMSchedule)
    register.add_objective("edm", EDMLoss)
