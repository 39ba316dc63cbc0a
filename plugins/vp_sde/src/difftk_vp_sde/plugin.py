"""Entry point of the vp_sde plugin: the vp schedule, the dsm objective, three samplers and a metric."""

import difftk

from difftk_vp_sde.metric import BitsPerDimODE
from difftk_vp_sde.objective import DenoisingScoreMatching
from difftk_vp_sde.samplers import EulerMaruyama, PredictorCorrector, ProbabilityFlowODE
from difftk_vp_sde.schedule import VPSchedule


@difftk.hookimpl
def difftk_register_components(register):
    register.add_schedule("vp", VPSchedule)
    register.add_objective("dsm", DenoisingScoreMatching)
    register.add_sampler("euler-maruyama", EulerMaruyama)
    register.add_sampler("pc", PredictorCorrector)
    register.add_sampler("ode", ProbabilityFlowODE)
    register.add_metric("bpd-ode", BitsPerDimODE)
