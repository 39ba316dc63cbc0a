"""Entry point of the cfg plugin."""

import difftk

from difftk_cfg.guidance import ClassifierFreeGuidance


@difftk.hookimpl
def difftk_register_components(register):
    register.add_guidance("cfg", ClassifierFreeGuidance)
