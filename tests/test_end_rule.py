"""The one end rule (difftk.maths.grids.with_end): every registered sampler, on every registered schedule,
returns the data x₀ at σ = 0, ᾱ = 1 — not the state at the schedule's t = 0, which on ``edm`` is σ_min."""

import difftk
import pytest
import torch
from difftk.maths.terminal import for_sampling
from difftk.testing.oracles import GaussianMixtureOracle

SAMPLERS = difftk.available("sampler")
SCHEDULES = difftk.available("schedule")
MU = torch.tensor([[0.7, -0.3]], dtype=torch.float64)


def point_mass(schedule):
    """The exact denoiser of data δ_μ (a Gaussian of std 0): x̂₀ = μ at every noise level."""
    oracle = GaussianMixtureOracle(schedule, MU, stds=0.0, prediction="x0")
    oracle.num_classes = 0
    return oracle


@pytest.fixture(scope="module", params=SCHEDULES)
def schedule(request):
    return for_sampling(difftk.create("schedule", request.param))


def test_the_schedules_include_one_whose_t_0_is_not_data():
    """The rule is only tested where it matters if some schedule has ᾱ(0) < 1 (edm: σ(0) = σ_min)."""
    zero = torch.zeros(1, dtype=torch.float64)
    assert any(float(difftk.create("schedule", name).alpha_bar(zero)[0]) < 1.0 for name in SCHEDULES)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_ends_at_sigma_0_on_every_schedule(schedule, name):
    """From any x_T, the sample of δ_μ data is μ itself (to round-off): a sampler that stopped at the
    schedule's t = 0 would return √ᾱ(0)·μ + √(1−ᾱ(0))·ε̂, or EDM's x = μ + σ_min·n, off by ~σ_min."""
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = difftk.create("sampler", name).sample(point_mass(schedule), schedule, x_T, steps=4,
                                                  generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, MU.expand_as(out), atol=1e-9, rtol=0)
