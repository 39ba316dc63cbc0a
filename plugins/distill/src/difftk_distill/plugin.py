"""Entry point of the distill plugin."""

import difftk

from difftk_distill.consistency import ConsistencyDistillation
from difftk_distill.reflow import Reflow


@difftk.hookimpl
def difftk_register_components(register):
    register.add_objective("consistency-distillation", ConsistencyDistillation)
    register.add_objective("reflow", Reflow)
