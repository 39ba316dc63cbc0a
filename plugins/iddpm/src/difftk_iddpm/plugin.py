"""Entry point of the iddpm plugin: registers its schedule, objectives, sampler and metric."""

import difftk

from difftk_iddpm.metric import BitsPerDimVLB
from difftk_iddpm.objectives import HybridLoss, VLBLoss
from difftk_iddpm.sampler import RespacedSampler
from difftk_iddpm.schedules import CosineSchedule


@difftk.hookimpl
def difftk_register_components(register):
    register.add_schedule("cosine", CosineSchedule)
    register.add_objective("hybrid", HybridLoss)
    register.add_objective("vlb", VLBLoss)
    register.add_sampler("respaced", RespacedSampler)
    register.add_metric("bpd-vlb", BitsPerDimVLB)
