"""Samplers against the truth: with the exact denoiser of Gaussian data N(μ, s²I) the samples
must have mean μ and standard deviation s, within sampling error."""

import math

import difftk
import pytest
import torch
from difftk.testing import GaussianOracle

N = 4000
MU = torch.tensor([1.0, -0.5, 0.25, 0.0])
S = 0.5


def _moments(sampler, schedule, steps, prediction="eps", seed=0):
    oracle = GaussianOracle(schedule, mean=MU, std=S, prediction=prediction)
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(N, 4, generator=g, dtype=torch.float64)
    x = sampler.sample(oracle, schedule, x_T, steps=steps, generator=g)
    return x.mean(0), x.std(0)


def _assert_gaussian(mean, std, *, bias_std=0.0):
    se_mean = S / math.sqrt(N)
    se_std = S / math.sqrt(2 * N)
    assert torch.all((mean - MU).abs() < 4.5 * se_mean), (mean, MU)
    assert torch.all((std - S).abs() < 4.5 * se_std + bias_std), (std, S)


@pytest.mark.parametrize("schedule_name", ["linear", "quadratic", "sigmoid"])
@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ddpm_ancestral_1000_steps(schedule_name, variance):
    schedule = difftk.create("schedule", schedule_name)
    mean, std = _moments(difftk.create("sampler", "ancestral", variance=variance), schedule, 1000)
    _assert_gaussian(mean, std)


@pytest.mark.parametrize("schedule_name", ["linear", "quadratic", "sigmoid"])
@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_ddim_eta0_50_steps(schedule_name, spacing):
    schedule = difftk.create("schedule", schedule_name)
    mean, std = _moments(difftk.create("sampler", "ddim", eta=0.0, spacing=spacing), schedule, 50)
    # 50 Euler steps of the probability-flow ODE: allow 1% discretisation bias on s
    _assert_gaussian(mean, std, bias_std=0.01 * S)


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_parameterisations_give_the_same_samples(prediction):
    schedule = difftk.create("schedule", "linear")
    sampler = difftk.create("sampler", "ddim")
    ref = _moments(sampler, schedule, 50, "eps")
    other = _moments(sampler, schedule, 50, prediction)
    torch.testing.assert_close(other[0], ref[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(other[1], ref[1], rtol=1e-6, atol=1e-6)


def test_the_oracle_really_is_tested():
    """A denoiser assuming the wrong s must fail the same check: the tolerance has teeth."""
    schedule = difftk.create("schedule", "linear")
    wrong = GaussianOracle(schedule, mean=MU, std=S * 1.1)
    g = torch.Generator().manual_seed(0)
    x = difftk.create("sampler", "ddim").sample(wrong, schedule, torch.randn(N, 4, generator=g, dtype=torch.float64), steps=50)
    with pytest.raises(AssertionError):
        _assert_gaussian(x.mean(0), x.std(0), bias_std=0.01 * S)


def test_continuous_schedule_samplable_by_discrete_samplers():
    """Both samplers also run on a continuous schedule (ᾱ in closed form), the reverse case."""
    from difftk.testing import ReferenceVPSchedule

    schedule = ReferenceVPSchedule()
    mean, std = _moments(difftk.create("sampler", "ancestral"), schedule, 1000)
    _assert_gaussian(mean, std)
