"""Entry point of the autoguidance plugin."""

import difftk

from difftk_autoguidance.guidance import Autoguidance


@difftk.hookimpl
def difftk_register_components(register):
    register.add_guidance("autoguidance", Autoguidance)
