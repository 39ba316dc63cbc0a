"""The example plugin's own tests: conformance, exactness on Gaussian data, and the NFE claim."""

import math

import difftk
import pytest
import torch
from difftk.maths.distances import sliced_wasserstein
from difftk.testing import GaussianMixtureOracle, GaussianOracle, check_sampler


@pytest.mark.parametrize("name", ["dpm-solver-2m", "heun"])
def test_registered_through_the_entry_point_and_conforming(name):
    assert name in difftk.available("sampler")
    check_sampler(difftk.create("sampler", name))


@pytest.mark.parametrize("name,steps", [("dpm-solver-2m", 20), ("heun", 20)])
def test_gaussian_data_comes_out_with_its_mean_and_std(name, steps):
    schedule = difftk.create("schedule", "cosine")
    mu, s, n = torch.tensor([1.0, -0.5]), 0.5, 4000
    oracle = GaussianOracle(schedule, mean=mu, std=s)
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = difftk.create("sampler", name).sample(oracle, schedule, x_T, steps=steps)
    assert torch.all((x.mean(0) - mu).abs() < 4.5 * s / math.sqrt(n))
    assert torch.all((x.std(0) - s).abs() < 4.5 * s / math.sqrt(2 * n) + 0.01 * s)


def test_dpm_solver_in_20_calls_matches_ddim_in_100_on_a_mixture():
    schedule = difftk.create("schedule", "linear")
    oracle = GaussianMixtureOracle(schedule, torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]]), stds=0.3)
    oracle.num_classes = 0
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    exact = oracle.sample(4000, generator=g)
    ddim10, ddim100 = (sliced_wasserstein(difftk.create("sampler", "ddim").sample(oracle, schedule, x_T, steps=k), exact)
                       for k in (10, 100))
    dpm20 = sliced_wasserstein(difftk.create("sampler", "dpm-solver-2m").sample(oracle, schedule, x_T, steps=20), exact)
    assert dpm20 < 1.25 * ddim100 and dpm20 < 0.5 * ddim10, (dpm20, ddim100, ddim10)
