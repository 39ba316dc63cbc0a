"""The flow plugin's own maths: the path is the straight line written VP, its closed forms agree
with the generic ones, and the objective draws the times it says."""

import difftk
import pytest
import torch
from difftk.maths.schedules import ScheduleBase, _beta_by_autograd
from difftk.testing.conformance import check_objective, check_sampler, check_schedule
from difftk.testing.oracles import GaussianOracle
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-4, 1.0), st.floats(0.3, 5.0))
def test_the_vp_state_is_the_straight_path_scaled(t, shift):
    """α/(α+σ) = 1 − τ and σ/(α+σ) = τ (below t = 1e-4, 1 − ᾱ ≈ 2t² falls under float64's resolution at 1)."""
    schedule = difftk.create("schedule", "flow", shift=shift)
    tau = shift * t / (1 + (shift - 1) * t)
    ab = float(schedule.alpha_bar(torch.tensor([t], dtype=torch.float64))[0])
    a, s = ab**0.5, (1 - ab) ** 0.5
    assert a / (a + s) == pytest.approx(1 - tau, abs=1e-9) and s / (a + s) == pytest.approx(tau, abs=1e-9)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_closed_forms_agree_with_the_generic_inverse_and_rate(shift):
    schedule = difftk.create("schedule", "flow", shift=shift)
    t = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
    ab = schedule.alpha_bar(t)
    torch.testing.assert_close(schedule.time_of(ab), ScheduleBase.time_of(schedule, ab), atol=1e-12, rtol=0)
    torch.testing.assert_close(schedule.beta(t), _beta_by_autograd(schedule.alpha_bar, t), rtol=1e-9, atol=0)


def test_the_components_pass_the_conformance_kit():
    check_schedule(difftk.create("schedule", "flow"))
    check_schedule(difftk.create("schedule", "flow", shift=3.0))
    check_objective(difftk.create("objective", "flow-matching"))
    check_sampler(difftk.create("sampler", "flow-euler"))


def test_logit_normal_times_have_the_stated_median_and_spread():
    objective = difftk.create("objective", "flow-matching", loc=0.5, scale=0.8)
    tau = objective.flow_times(20000, torch.Generator().manual_seed(0), "cpu")
    logit = torch.log(tau / (1 - tau))
    assert float(logit.mean()) == pytest.approx(0.5, abs=0.02) and float(logit.std()) == pytest.approx(0.8, abs=0.02)
    uniform = difftk.create("objective", "flow-matching", time_sampling="uniform").flow_times(20000, None, "cpu")
    assert 0.0 < float(uniform.min()) and float(uniform.max()) <= 1.0 and float(uniform.mean()) == pytest.approx(0.5, abs=0.01)


def test_flow_euler_samples_a_ddpm_trained_model():
    """An ε-model on the linear schedule, through flow-euler: the data's moments."""
    schedule = difftk.create("schedule", "linear")
    oracle = GaussianOracle(schedule, mean=-0.4, std=0.6, shape=(2,), prediction="eps")
    x_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(3))
    x = difftk.create("sampler", "flow-euler").sample(oracle, schedule, x_T, steps=100)
    assert float(x.mean()) == pytest.approx(-0.4, abs=0.03) and float(x.std()) == pytest.approx(0.6, abs=0.03)
