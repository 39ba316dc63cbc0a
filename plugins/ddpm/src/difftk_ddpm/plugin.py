"""Entry point of the ddpm plugin: registers its schedules, objective and sampler."""

import difftk

from difftk_ddpm.objective import SimpleLoss
from difftk_ddpm.sampler import AncestralSampler
from difftk_ddpm.schedules import LinearSchedule, QuadraticSchedule, SigmoidSchedule


@difftk.hookimpl
def difftk_register_components(register):
    register.add_schedule("linear", LinearSchedule)
    register.add_schedule("quadratic", QuadraticSchedule)
    register.add_schedule("sigmoid", SigmoidSchedule)
    register.add_objective("simple", SimpleLoss)
    register.add_sampler("ancestral", AncestralSampler)
