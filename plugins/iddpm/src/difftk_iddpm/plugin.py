"""Entry point of the iddpm plugin: registers its schedule, objectives, sampler and metric."""

import difftk

from difftk_iddpm.schedules import CosineSchedule


@difftk.hookimpl
def difftk_register_components(register):
    register.add_schedule("cosine", CosineSchedule)
