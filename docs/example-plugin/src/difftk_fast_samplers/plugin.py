"""Entry point: registers the two samplers. This is all a plugin needs to be found by difftk."""

import difftk

from difftk_fast_samplers.samplers import DPMSolverPP2M, EDMHeun


@difftk.hookimpl
def difftk_register_components(register):
    register.add_sampler("dpm-solver-2m", DPMSolverPP2M)
    register.add_sampler("heun", EDMHeun)
