"""Entry point: registers the schedule. This is all a plugin needs to be found by difftk."""

import difftk

from difftk_laplace_schedule.schedule import LaplaceSchedule


@difftk.hookimpl
def difftk_register_components(register):
    register.add_schedule("laplace", LaplaceSchedule)
