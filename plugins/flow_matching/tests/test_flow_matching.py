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


@settings(max_examples=12, deadline=None)
@given(st.sampled_from([0.1, 0.3, 0.6, 1.0]), st.floats(-1.0, 1.0), st.floats(0.1, 0.9))
def test_the_uniform_share_mixes_the_two_laws(fraction, loc, tau0):
    """P(τ ≤ τ₀) = f·τ₀ + (1 − f)·Φ((logit τ₀ − m)/s): the mixture's CDF, within four standard errors."""
    n = 40000
    objective = difftk.create("objective", "flow-matching", loc=loc, uniform_fraction=fraction)
    tau = objective.flow_times(n, torch.Generator().manual_seed(1), "cpu")
    assert float(tau.min()) > 0.0 and float(tau.max()) <= 1.0
    logit = torch.logit(torch.tensor(tau0, dtype=torch.float64))
    expected = fraction * tau0 + (1 - fraction) * float(torch.distributions.Normal(loc, 1.0).cdf(logit))
    se = (expected * (1 - expected) / n) ** 0.5
    assert float((tau <= tau0).double().mean()) == pytest.approx(expected, abs=4 * se + 1e-9)


def test_no_uniform_share_leaves_the_logit_normal_draws_as_they_were():
    """uniform_fraction = 0 takes nothing more from the generator: runs trained before it exist resume exactly."""
    plain = difftk.create("objective", "flow-matching", loc=0.5).flow_times(64, torch.Generator().manual_seed(2), "cpu")
    zero = difftk.create("objective", "flow-matching", loc=0.5, uniform_fraction=0.0)
    used, reference = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    torch.testing.assert_close(zero.flow_times(64, used, "cpu"), plain, rtol=0, atol=0)
    torch.randn((64,), generator=reference, dtype=torch.float64)  # the logit-normal's own draw, and no more
    assert torch.equal(used.get_state(), reference.get_state())
    mixed = difftk.create("objective", "flow-matching", loc=0.5, uniform_fraction=0.3)
    assert not torch.equal(mixed.flow_times(64, torch.Generator().manual_seed(2), "cpu"), plain)


def test_flow_euler_samples_a_ddpm_trained_model():
    """An ε-model on the linear schedule, through flow-euler: the data's moments."""
    schedule = difftk.create("schedule", "linear")
    oracle = GaussianOracle(schedule, mean=-0.4, std=0.6, shape=(2,), prediction="eps")
    x_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(3))
    x = difftk.create("sampler", "flow-euler").sample(oracle, schedule, x_T, steps=100)
    assert float(x.mean()) == pytest.approx(-0.4, abs=0.03) and float(x.std()) == pytest.approx(0.6, abs=0.03)
