"""DDPM: the schedules against the paper's definitions, L_simple against its exact value."""

import math

import difftk
import numpy as np
import pytest
import torch
from difftk.errors import OptionError
from difftk.maths.diffusion import posterior
from difftk.testing import GaussianOracle
from hypothesis import given
from hypothesis import strategies as st


def test_linear_T1000_is_exactly_the_paper_linspace():
    betas = difftk.create("schedule", "linear").discretize(1000).betas
    assert betas.dtype == np.float64
    assert np.array_equal(betas, np.linspace(1e-4, 0.02, 1000, dtype=np.float64))


def test_linear_alpha_bar_T_reference_value():
    # ᾱ_T = ∏(1 − β_i) for the paper's schedule; independently: exp(Σ log1p(−β)).
    ab = difftk.create("schedule", "linear").discretize(1000).alphas_cumprod
    expected = math.exp(sum(math.log1p(-(1e-4 + (0.02 - 1e-4) * i / 999)) for i in range(1000)))
    assert ab[-1] == pytest.approx(expected, rel=1e-10)
    assert ab[-1] == pytest.approx(4.0358e-05, rel=1e-3)  # ᾱ_1000 ≈ 4.04e-5 (Ho et al.'s linear schedule)


@given(st.integers(25, 4000))
def test_linear_rescaled_by_1000_over_T(T):
    betas = difftk.create("schedule", "linear", T=T).discretize(T).betas
    scale = 1000 / T
    assert betas[0] == pytest.approx(1e-4 * scale, rel=1e-12)
    assert betas[-1] == pytest.approx(0.02 * scale, rel=1e-12)
    assert np.allclose(np.diff(betas), np.diff(betas)[0], rtol=1e-9)


def test_quadratic_is_linear_in_sqrt_beta():
    betas = difftk.create("schedule", "quadratic").discretize(1000).betas
    root = np.sqrt(betas)
    assert root[0] == pytest.approx(0.01) and root[-1] == pytest.approx(math.sqrt(0.02))
    assert np.allclose(np.diff(root), (math.sqrt(0.02) - 0.01) / 999, rtol=1e-9)


def test_sigmoid_values():
    betas = difftk.create("schedule", "sigmoid").discretize(1000).betas
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    for i in (0, 1, 499, 999):
        x = -6 + 12 * i / 999
        assert betas[i] == pytest.approx(sig(x) * (0.02 - 1e-4) + 1e-4, rel=1e-12)
    assert np.all(np.diff(betas) > 0)


@pytest.mark.parametrize("name", ["linear", "quadratic", "sigmoid"])
def test_continuous_view_equals_discrete_on_grid(name):
    s = difftk.create("schedule", name, T=200)
    d = s.discretize(200)
    np.testing.assert_allclose(s.alpha_bar(torch.from_numpy(d.times)).numpy(), d.alphas_cumprod, rtol=1e-12)


def test_bad_options_are_one_line():
    with pytest.raises(OptionError, match=r"beta_end=.* must not be below beta_start"):
        difftk.create("schedule", "linear", beta_start=0.1, beta_end=0.01)
    with pytest.raises(OptionError, match="use T > 20"):
        difftk.create("schedule", "linear", T=10)
    with pytest.raises(OptionError, match="choose from beta_tilde, beta"):
        difftk.create("sampler", "ancestral", variance="betta")


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ancestral_plan_is_the_posterior(variance):
    schedule = difftk.create("schedule", "linear", T=100)
    plan = difftk.create("sampler", "ancestral", variance=variance).plan(schedule, None)
    d = schedule.discretize(100)
    ab_t = d.alphas_cumprod[::-1]
    ab_s = np.append(d.alphas_cumprod_prev[::-1][:-1], 1.0)
    var = (d.posterior_variance if variance == "beta_tilde" else d.betas)[::-1].copy()
    var[-1] = 0.0
    np.testing.assert_allclose(plan.sigma**2, var, rtol=1e-10, atol=1e-300)
    # mean = a·x_t + b·ε equals Ho et al. eq. 11: (x_t − β/√(1−ᾱ)·ε)/√α
    alpha = d.alphas[::-1]
    a, b = plan.eps_form
    np.testing.assert_allclose(a, 1 / np.sqrt(alpha), rtol=1e-10)
    np.testing.assert_allclose(b, -(1 - alpha) / np.sqrt(1 - ab_t) / np.sqrt(alpha), rtol=1e-9)
    p = posterior(ab_s, ab_t)
    np.testing.assert_allclose(p.beta, d.betas[::-1], rtol=1e-9)


def test_simple_loss_of_the_exact_denoiser_is_alpha_bar():
    """For data N(0, I), E[ε|x_t] = √(1−ᾱ)x_t and E‖ε − E[ε|x_t]‖²/D = ᾱ(t); averaged over
    uniform t the loss of the optimal denoiser is mean(ᾱ_i) — an exact oracle for L_simple."""
    schedule = difftk.create("schedule", "linear", T=1000)
    oracle = GaussianOracle(schedule, mean=0.0, std=1.0, shape=(16,))
    x0 = torch.randn(20000, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = difftk.create("objective", "simple").loss(oracle, schedule, x0, generator=torch.Generator().manual_seed(1))
    expected = schedule.discretize(1000).alphas_cumprod.mean()
    se = loss.std().item() / math.sqrt(len(loss))
    assert abs(loss.mean().item() - expected) < 4 * se


def test_simple_loss_trains_the_parameters():
    from difftk.testing import TinyDenoiser

    torch.manual_seed(0)
    net = TinyDenoiser(in_channels=2)
    schedule = difftk.create("schedule", "linear", T=100)
    objective = difftk.create("objective", "simple")
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0)) * 0.1 + 1.0
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    first = objective.loss(net, schedule, x0, generator=torch.Generator().manual_seed(2)).mean().item()
    for _ in range(150):
        opt.zero_grad()
        objective.loss(net, schedule, x0, generator=g).mean().backward()
        opt.step()
    last = objective.loss(net, schedule, x0, generator=torch.Generator().manual_seed(2)).mean().item()
    assert last < 0.7 * first
