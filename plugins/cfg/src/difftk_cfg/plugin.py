"""Entry point of the cfg plugin: classifier-free guidance and the guidance rules built on its two
predictions (CFG++, APG, CFG-Zero*)."""

import difftk

from difftk_cfg.apg import AdaptiveProjectedGuidance
from difftk_cfg.cfgpp import CFGPlusPlus
from difftk_cfg.guidance import ClassifierFreeGuidance
from difftk_cfg.zero_star import CFGZeroStar


@difftk.hookimpl
def difftk_register_components(register):
    register.add_guidance("cfg", ClassifierFreeGuidance)
    register.add_guidance("cfg++", CFGPlusPlus)
    register.add_guidance("apg", AdaptiveProjectedGuidance)
    register.add_guidance("cfg-zero-star", CFGZeroStar)
