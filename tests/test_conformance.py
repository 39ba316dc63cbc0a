"""Every registered component passes the conformance kit (the kit's own mutation tests: core/tests/test_conformance_kit.py)."""

import difftk
import pytest
from difftk.components import plugins
from difftk.testing import (
    ReferenceLinearSchedule,
    ReferenceVPSchedule,
    check_sampler,
    check_schedule,
)
from difftk.testing.conformance import CHECKS


def _registered(kind):
    return [info.name for info in plugins.registry() if info.kind == kind]


@pytest.mark.parametrize("name", _registered("schedule"))
def test_schedules(name):
    check_schedule(difftk.create("schedule", name))
    if "T" in plugins.registry().get("schedule", name).option_fields():  # a discrete schedule
        check_schedule(difftk.create("schedule", name, T=250))


@pytest.mark.parametrize("name", _registered("sampler"))
@pytest.mark.parametrize("schedule", [ReferenceLinearSchedule(), ReferenceVPSchedule()], ids=["discrete", "continuous"])
def test_samplers(name, schedule):
    check_sampler(difftk.create("sampler", name), schedule)


@pytest.mark.parametrize("name", _registered("objective"))
def test_objectives(name):
    CHECKS["objective"](difftk.create("objective", name))


def test_every_kind_with_components_is_covered():
    covered = {"schedule", "sampler", "objective"}
    kinds = {info.kind for info in plugins.registry()}
    assert kinds <= covered | {"denoiser", "guidance", "classifier", "dataset", "metric"}
