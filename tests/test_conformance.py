"""Every registered component passes the conformance kit, and the kit catches broken ones."""

import attrs
import difftk
import numpy as np
import pytest
import torch
from difftk.components import plugins
from difftk.maths.schedules import DiscreteSchedule
from difftk.testing import (
    ConformanceError,
    ReferenceLinearSchedule,
    ReferenceVPSchedule,
    check_objective,
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


@attrs.frozen
class IncreasingSchedule(DiscreteSchedule):
    """Wrong on purpose: ᾱ rises in the middle."""

    def paper_betas(self):
        return np.full(self.T, 0.01)

    def alpha_bar(self, t):
        ab = super().alpha_bar(t)
        return torch.where((t > 0.5) & (t < 0.6), ab * 1.5, ab)


def test_kit_flags_a_schedule_whose_alpha_bar_increases():
    with pytest.raises(ConformanceError, match=r"ᾱ must be non-increasing, but ᾱ\(0\.5\) = .* < ᾱ\(0\.5005\)"):
        check_schedule(IncreasingSchedule(T=1000))


@attrs.frozen
class NoisySampler:
    """Wrong on purpose: ignores the generator."""

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        if callback:
            callback(type("S", (), {"t": 1.0})())
        return x_T + torch.randn_like(x_T)


def test_kit_flags_a_nondeterministic_sampler():
    with pytest.raises(ConformanceError, match="deterministic under a seeded generator"):
        check_sampler(NoisySampler())


@attrs.frozen
class DetachedLoss:
    """Wrong on purpose: the loss is computed on a detached prediction, so nothing trains."""

    def loss(self, denoiser, schedule, x0, cond=None, generator=None):
        t = torch.full((x0.shape[0],), 0.5)
        return (denoiser(x0, t, cond=cond).detach() ** 2).flatten(1).mean(1)


def test_kit_flags_an_objective_that_gives_no_gradient():
    with pytest.raises(ConformanceError, match=r"objective DetachedLoss: loss must be differentiable with respect to .*no gradient reached them"):
        check_objective(DetachedLoss())
