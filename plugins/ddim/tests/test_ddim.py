"""DDIM: the step grid, the η identities, determinism and inversion."""

import difftk
import numpy as np
import pytest
import torch
from difftk.maths.diffusion import posterior
from difftk.maths.grids import time_grid
from difftk.sampling.steps import affine_from_x0_form
from difftk.testing import GaussianOracle, ReferenceLinearSchedule
from hypothesis import given
from hypothesis import strategies as st


class ZeroEps(torch.nn.Module):
    """ε̂ = 0: a DDIM η=0 step then scales x by exactly √(ᾱ_s/ᾱ_t), revealing which s was used."""

    prediction = "eps"

    def __init__(self):
        super().__init__()
        self.times = []

    def forward(self, x, t, cond=None):
        self.times.append(float(t[0]))
        return torch.zeros_like(x)


@given(st.integers(21, 1000), st.data(), st.sampled_from(["linspace", "leading", "trailing"]))
def test_every_step_goes_to_the_next_time_of_the_actual_grid(T, data, spacing):
    """The off-by-one family: a step formula disagreeing with the spacing (prev = t − T//K
    while the grid is linspace) shows up as a wrong ratio here."""
    K = data.draw(st.integers(1, min(T, 60)))
    schedule = ReferenceLinearSchedule(T=T)
    grid = time_grid(schedule, K, spacing)
    net = ZeroEps()
    states = []
    x = torch.ones(1, 1, dtype=torch.float64)
    difftk.create("sampler", "ddim", spacing=spacing).sample(net, schedule, x, steps=K, callback=lambda s: states.append(s))
    np.testing.assert_allclose(net.times, grid, rtol=1e-12)  # the model is queried on the grid
    visited = np.append(grid, 0.0)
    ab = schedule.alpha_bar(torch.from_numpy(visited)).numpy()
    prev = 1.0
    for k, step in enumerate(states):
        assert step.t == pytest.approx(visited[k]) and step.t_next == pytest.approx(visited[k + 1])
        ratio = float(step.x) / prev
        assert ratio == pytest.approx(np.sqrt(ab[k + 1] / ab[k]), rel=1e-10)
        prev = float(step.x)


@given(st.integers(21, 500))
def test_eta_one_on_full_grid_has_the_ddpm_posterior_variance(T):
    schedule = ReferenceLinearSchedule(T=T)
    plan = difftk.create("sampler", "ddim", eta=1.0).plan(schedule, T)
    d = schedule.discretize(T)
    np.testing.assert_allclose(plan.sigma**2, d.posterior_variance[::-1], rtol=1e-9, atol=1e-300)
    # and the same mean as the DDPM posterior, so η=1 *is* ancestral sampling with σ² = β̃
    ab = plan.alpha_bars
    p = posterior(ab[1:], ab[:-1])
    a, b = affine_from_x0_form(p.coef_x0, p.coef_xt, 0.0, ab[:-1])
    plan_a, plan_b = plan.eps_form
    np.testing.assert_allclose(plan_a, a, rtol=1e-9)
    np.testing.assert_allclose(plan_b, b, rtol=1e-7, atol=1e-12)


def test_eta_zero_is_deterministic_whatever_the_generator():
    schedule = ReferenceLinearSchedule(T=100)
    oracle = GaussianOracle(schedule, mean=1.0, std=0.5, shape=(3,))
    x_T = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    sampler = difftk.create("sampler", "ddim", eta=0.0)
    a = sampler.sample(oracle, schedule, x_T, steps=20, generator=torch.Generator().manual_seed(1))
    b = sampler.sample(oracle, schedule, x_T, steps=20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = difftk.create("sampler", "ddim", eta=0.5).sample(oracle, schedule, x_T, steps=20, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(a, c)


def test_eta_zero_is_approximately_invertible():
    """Inverting then sampling returns the data, with a first-order error: doubling the
    steps halves it (DDIM is an Euler discretisation of an ODE, Song et al. 2020 §4.3)."""
    schedule = difftk.create("schedule", "linear")
    oracle = GaussianOracle(schedule, mean=torch.tensor([1.0, -0.5]), std=0.5, shape=(2,))
    x0 = oracle.sample(256, generator=torch.Generator().manual_seed(0))
    sampler = difftk.create("sampler", "ddim", eta=0.0)
    errors = {}
    for steps in (100, 200, 1000):
        x_T = sampler.invert(oracle, schedule, x0, steps=steps)
        assert x_T.std() > 0.8  # it really went to noise
        errors[steps] = (sampler.sample(oracle, schedule, x_T, steps=steps) - x0).abs().max().item()
    assert 1.7 < errors[100] / errors[200] < 2.3, errors
    assert errors[1000] < 0.01, errors


def test_eta_out_of_range():
    with pytest.raises(difftk.OptionError, match=r"0 ≤ eta ≤ 1"):
        difftk.create("sampler", "ddim", eta=1.5)
