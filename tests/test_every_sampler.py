"""What every registered sampler owes, on exact oracles: per-example reproducibility, the NFE it states,
and edits (SDEdit, inpainting) through the model object."""

import difftk
import pytest
import torch
from difftk.model import Model
from difftk.sampling.draw import generate
from difftk.testing.oracles import GaussianMixtureOracle, GaussianOracle

SAMPLERS = difftk.available("sampler")


def fixed(name: str):
    """The sampler with the options that give it a fixed grid (the ODE: Heun instead of adaptive rk45)."""
    return difftk.create("sampler", name, **({"method": "heun"} if name == "ode" else {}))


class Counting(torch.nn.Module):
    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0
        self.prediction, self.num_classes = inner.prediction, 0

    def forward(self, x, t, cond=None):
        self.calls += 1
        return self.inner(x, t, cond=cond)


@pytest.fixture(scope="module")
def mixture():
    schedule = difftk.create("schedule", "linear", T=200)
    oracle = GaussianMixtureOracle(schedule, torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), stds=0.3)
    oracle.num_classes = 0
    return schedule, oracle


@pytest.mark.parametrize("name", SAMPLERS)
def test_sample_i_is_the_same_whatever_the_batch(mixture, name):
    """The same seed gives the same sample i in one batch of 6, in batches of 4 + 2, and as the last
    three of a draw of 3 + 3: every sampler draws its noise from per-example streams."""
    schedule, oracle = mixture
    sampler = difftk.create("sampler", name)
    one = generate(oracle, schedule, sampler, (2,), 6, steps=8, seed=11, batch_size=6)
    split = generate(oracle, schedule, sampler, (2,), 6, steps=8, seed=11, batch_size=4)
    tolerance = 1e-3 if getattr(type(sampler), "adaptive", False) and getattr(sampler, "method", "") == "rk45" else 1e-5
    # an adaptive solver shares its step sizes over the batch: the same ODE solution, to its tolerance
    torch.testing.assert_close(split, one, atol=tolerance, rtol=0)
    assert not torch.equal(one, generate(oracle, schedule, sampler, (2,), 6, steps=8, seed=12, batch_size=6))


@pytest.mark.parametrize("name", SAMPLERS)
def test_the_denoiser_is_called_as_often_as_the_sampler_says(mixture, name):
    schedule, oracle = mixture
    sampler = fixed(name)
    if not hasattr(sampler, "nfe"):
        pytest.fail(f"sampler '{name}' does not state its NFE (nfe(steps, schedule))")
    for steps in (1, 3, 7):
        counted = Counting(oracle)
        x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
        sampler.sample(counted, schedule, x_T, steps=steps, generator=torch.Generator().manual_seed(1))
        assert counted.calls == sampler.nfe(steps, schedule), (name, steps)


def image_model(schedule, sampler):
    oracle = GaussianOracle(schedule, mean=0.2, std=0.5, shape=(1, 4, 4))
    oracle.num_classes = 0
    return Model(difftk.compose(schedule=schedule, sampler=sampler), oracle, {"kind": "image", "shape": [1, 4, 4]})


@pytest.mark.parametrize("name", SAMPLERS)
def test_sdedit_from_data_keeps_the_data_distribution(name):
    """Images drawn from the oracle's data distribution, noised to s = 0.5 and sampled back with any
    sampler in 50 steps, are again distributed as the data (mean 0.2, std 0.5, to the sampler's own
    discretization error: ancestral's β̃ is 0.03 narrow from pure noise too): SDEdit needs nothing
    of a sampler."""
    schedule = difftk.create("schedule", "linear", T=200)
    model = image_model(schedule, fixed(name))
    init = 0.2 + 0.5 * torch.randn(600, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    x = model.sample(600, steps=50, init=init, strength=0.5, seed=4)
    assert abs(float(x.mean()) - 0.2) < 0.03 and abs(float(x.std()) - 0.5) < 0.04, (float(x.mean()), float(x.std()))
    near = model.sample(64, init=init[:64], strength=0.02, seed=4)  # the 4 grid steps below t = 0.02
    sigma = float((1 - schedule.alpha_bar(torch.tensor([0.02], dtype=torch.float64))) ** 0.5)  # 0.071
    # barely noised, barely changed: a stochastic sampler returns a draw of p(x₀ | x_s), whose distance to
    # the init (another such draw) is E|√2·σ·z| ≈ 1.13σ; a deterministic one less. Both a tenth of the data's spread
    assert float((near - init[:64]).abs().mean()) < 1.5 * sigma


@pytest.mark.parametrize("name", SAMPLERS)
def test_inpainting_keeps_the_known_pixels_with_every_sampler(name):
    schedule = difftk.create("schedule", "linear", T=200)
    model = image_model(schedule, fixed(name))
    init = torch.full((1, 1, 4, 4), 0.9)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:] = 1  # generate the right half
    x = model.sample(16, steps=10, init=init, mask=mask, seed=5)
    assert float((x[..., :2] - 0.9).abs().max()) < 1e-4
    assert float((x[..., 2:] - 0.9).abs().mean()) > 0.05  # the hole is generated, not copied
