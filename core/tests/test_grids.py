"""Step grids as properties: every spacing on every schedule gives exactly the steps asked, strictly
decreasing from t = 1, with no repeated or zero-length step; explicit times are used as given."""

import difftk
import numpy as np
import pytest
import torch
from difftk.errors import OptionError
from difftk.maths.grids import KARRAS_SIGMA_MIN, SPACINGS, karras_sigmas, time_grid
from difftk.testing.reference import ReferenceLinearSchedule, ReferenceVPSchedule
from hypothesis import example, given, settings
from hypothesis import strategies as st

SCHEDULES = {
    "linear T=1000": lambda: difftk.create("schedule", "linear"),
    "cosine T=1000": lambda: difftk.create("schedule", "cosine"),
    "reference linear T=40": lambda: ReferenceLinearSchedule(T=40),
    "vp (continuous)": lambda: ReferenceVPSchedule(),
}


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(SCHEDULES)), st.sampled_from(SPACINGS), st.integers(1, 40))
@example("cosine T=1000", "karras", 40)
def test_every_grid_has_the_steps_asked_and_no_empty_step(schedule_name, spacing, steps):
    schedule = SCHEDULES[schedule_name]()
    times = time_grid(schedule, steps, spacing)
    assert len(times) == steps
    assert times[0] == 1.0 or spacing == "leading"  # leading (DDIM's) starts below 1 by design
    assert np.all(np.diff(times) < 0) and times[-1] > 0
    T = getattr(schedule, "grid_size", None)
    if T is not None and spacing not in ("karras", "logsnr"):
        assert np.allclose(times * T, np.round(times * T)), "a discrete schedule's grid times are its own"


def test_karras_spacing_is_eq5_in_sigma():
    schedule = difftk.create("schedule", "linear")
    times = time_grid(schedule, 12, "karras")
    ab = schedule.alpha_bar(torch.from_numpy(times)).numpy()
    sigma = np.sqrt((1 - ab) / ab)
    ends = schedule.alpha_bar(torch.tensor([1.0, 1e-3], dtype=torch.float64)).numpy()
    expected = karras_sigmas(float(np.sqrt((1 - ends[1]) / ends[1])), float(np.sqrt((1 - ends[0]) / ends[0])), 12)
    np.testing.assert_allclose(sigma, expected, rtol=1e-6)
    rho = 7.0
    np.testing.assert_allclose(np.diff(expected ** (1 / rho)), np.diff(expected ** (1 / rho))[0], rtol=1e-9)  # even in σ^{1/ρ}
    continuous = time_grid(ReferenceVPSchedule(), 5, "karras")
    last = ReferenceVPSchedule().alpha_bar(torch.tensor([continuous[-1]], dtype=torch.float64)).numpy()[0]
    assert np.isclose(np.sqrt((1 - last) / last), KARRAS_SIGMA_MIN, rtol=1e-5)


def test_explicit_times_are_used_as_given_and_checked():
    schedule = difftk.create("schedule", "linear")
    np.testing.assert_array_equal(time_grid(schedule, None, times=[1.0, 0.42, 0.1]), [1.0, 0.42, 0.1])
    np.testing.assert_array_equal(time_grid(schedule, 3, times=[1.0, 0.42, 0.1]), [1.0, 0.42, 0.1])
    for bad, why in [([1.0, 1.0, 0.5], "strictly decreasing"), ([0.5, 0.7], "strictly decreasing"),
                     ([1.0, 0.0], r"lie in \(0, 1\]"), ([1.5, 0.5], r"lie in \(0, 1\]"), ([], "at least one time")]:
        with pytest.raises(OptionError, match=why):
            time_grid(schedule, None, times=bad)
    with pytest.raises(OptionError, match="steps=4 but times=.* lists 3 times"):
        time_grid(schedule, 4, times=[1.0, 0.5, 0.1])


@pytest.mark.parametrize("name", difftk.available("sampler"))
def test_every_sampler_steps_on_explicit_times(name):
    """`times` reaches every sampler with a fixed grid: the callback reports exactly those times."""
    sampler = difftk.create("sampler", name, **({"method": "euler"} if name == "ode" else {}))
    assert hasattr(sampler, "times"), f"sampler '{name}' does not take the core grid's explicit times"
    sampler = difftk.create("sampler", name, times=(1.0, 0.6, 0.3, 0.05), **({"method": "euler"} if name == "ode" else {}))
    schedule = ReferenceLinearSchedule(T=40)
    oracle = difftk.testing.GaussianOracle(schedule, mean=0.0, std=1.0, shape=(2,))
    seen = []
    sampler.sample(oracle, schedule, torch.randn(3, 2), generator=torch.Generator().manual_seed(0),
                   callback=lambda info: seen.append(round(float(info.t), 6)))
    assert seen[:4] == [1.0, 0.6, 0.3, 0.05], (name, seen)


def test_logsnr_unless_pure_noise_splits_the_schedules_at_sigma_1_of_a_thousand():
    """σ(1) = √((1−ᾱ(1))/ᾱ(1)): the linear reference schedule's 157 and the VP one's 152 keep logsnr; a schedule
    that reaches pure noise (ᾱ(1) = 0, or floored to 2⁻²⁴ for sampling: σ = 4096) gets the fallback."""
    from difftk.maths.grids import PURE_NOISE_SIGMA, logsnr_unless_pure_noise
    from difftk.maths.terminal import ALPHA_BAR_FLOOR

    for schedule in (ReferenceLinearSchedule(), ReferenceVPSchedule()):
        assert logsnr_unless_pure_noise(schedule, "trailing") == "logsnr"

    class Top:  # ᾱ(t) = ᾱ(1)^t, so only ᾱ(1) matters
        def __init__(self, top):
            self.top = top

        def alpha_bar(self, t):
            return torch.as_tensor(self.top, dtype=torch.float64) ** t

    just_below = 1.0 / (1.0 + (0.99 * PURE_NOISE_SIGMA) ** 2)
    assert logsnr_unless_pure_noise(Top(just_below), "linspace") == "logsnr"
    assert logsnr_unless_pure_noise(Top(just_below / 1.1), "linspace") == "linspace"
    assert logsnr_unless_pure_noise(Top(ALPHA_BAR_FLOOR), "trailing") == "trailing"
    assert logsnr_unless_pure_noise(Top(0.0), "linspace") == "linspace"
