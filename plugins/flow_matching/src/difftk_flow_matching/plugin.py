"""Entry point of the flow_matching plugin."""

import difftk

from difftk_flow_matching.objective import FlowMatching
from difftk_flow_matching.sampler import FlowEuler
from difftk_flow_matching.schedule import FlowSchedule


@difftk.hookimpl
def difftk_register_components(register):
    register.add_schedule("flow", FlowSchedule)
    register.add_objective("flow-matching", FlowMatching)
    register.add_sampler("flow-euler", FlowEuler)
