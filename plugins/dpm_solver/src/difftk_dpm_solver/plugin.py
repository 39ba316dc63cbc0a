"""Entry point of the dpm_solver plugin."""

import difftk

from difftk_dpm_solver.samplers import DPMSolverPP2M, DPMSolverPP3M, SDEDPMSolverPP2M


@difftk.hookimpl
def difftk_register_components(register):
    register.add_sampler("dpm-solver-2m", DPMSolverPP2M)
    register.add_sampler("dpm-solver-3m", DPMSolverPP3M)
    register.add_sampler("dpm-solver-2m-sde", SDEDPMSolverPP2M)
