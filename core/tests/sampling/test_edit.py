"""SDEdit and inpainting (difftk.sampling.edit): the truncated clock is the schedule's own on [0, s], and the
strength is checked and snapped to the grid. tests/test_editing_digits.py edits real digits with the shipped model."""

import difftk
import numpy as np
import pytest
import torch
from difftk.errors import OptionError
from difftk.maths.grids import time_grid
from difftk.maths.schedules import beta_of
from difftk.sampling.edit import TruncatedSchedule, snap_strength
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 999), st.sampled_from(["linear", "cosine"]))
def test_a_truncated_discrete_schedule_is_the_originals_first_steps(k, name):
    base = difftk.create("schedule", name)
    truncated = TruncatedSchedule(base, k / 1000)
    assert truncated.grid_size == k
    i = torch.arange(1, k + 1, dtype=torch.float64)
    torch.testing.assert_close(truncated.alpha_bar(i / k), base.alpha_bar(i / 1000), rtol=1e-12, atol=0)
    steps = min(k, 7)
    np.testing.assert_allclose(time_grid(truncated, steps) * k / 1000, time_grid(base, None, times=time_grid(truncated, steps) * k / 1000))


def test_the_truncated_clock_has_the_chain_rule_beta_and_inverse():
    base = difftk.create("schedule", "vp")
    truncated = TruncatedSchedule(base, 0.4)
    t = torch.linspace(0.05, 1.0, 20, dtype=torch.float64)

    class AlphaBarOnly:  # beta_of differentiates ᾱ' itself
        alpha_bar = staticmethod(truncated.alpha_bar)

    torch.testing.assert_close(truncated.beta(t), beta_of(AlphaBarOnly(), t), rtol=1e-9, atol=0)
    torch.testing.assert_close(truncated.time_of(truncated.alpha_bar(t)), t, rtol=1e-7, atol=1e-9)


def test_strength_is_checked_and_snapped_to_the_grid():
    linear = difftk.create("schedule", "linear")
    assert snap_strength(linear, 0.3004) == 0.3 and snap_strength(linear, 1e-6) == 0.001
    assert snap_strength(difftk.create("schedule", "vp"), 0.3004) == 0.3004
    for bad in (0.0, 1.5):
        with pytest.raises(OptionError, match=r"strength=.* must lie in \(0, 1\]"):
            snap_strength(linear, bad)
