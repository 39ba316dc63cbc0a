"""Every registered sampler on each shipped model, x̂₀ clipping off: samples stay in the data's
range and are the class asked for; DDIM and the probability-flow ODE agree.

The cheap form of the sampler table in docs/pretrained.md (benchmarks/shipped_samplers.py):
one sample per digit (two per emoji class, eight for the latent emoji model), about 20 denoiser evaluations each
(the adaptive ODE more: 57–75 on the digit models), so that a change that breaks a sampler on a real model (not
only on the exact oracles) fails here.
"""

from pathlib import Path

import difftk
import pytest
import torch
from difftk.checkpoint.classifier_file import load_classifier
from difftk.model import load
from difftk.sampling import latent
from difftk.sampling.draw import class_labels
from difftk_metrics.network import embed
from difftk_pretrained.plugin import EMOJI_JUDGE

#: 20 steps, except the SDE solvers at their defaults (first order and stochastic, they need more:
#: docs/pretrained.md shows where each breaks) and the ODE, which chooses its own
CHEAP = {"pc": dict(steps=None), "ode": dict(steps=None), "euler-maruyama": dict(steps=None)}
#: the adaptive ODE's tolerances, looser than its default 1e-4 to keep it cheap, but not so loose that the solver's
#: own error is what the range bar reads. 10 samples, pixels beyond ±1.05 at 1e-2 / 1e-3 / 1e-4 (evaluations):
#: mnist-flow seed 0 1.91 / 0.56 / 0.57 % (27 / 69 / 129), seed 1 1.39 / 0.48 / 0.57 %; the straighter student
#: mnist-flow-2step seed 0 7.54 / 0.96 / 0.78 % (27 / 57 / 99), seed 1 0.78 / 0.48 / 0.47 %. At 1e-2 a few long
#: steps decide and one seed swings by 7 points; at 1e-3 each is within 0.2 points of its figure at 1e-4
ODE_TOL = 1e-3
N = 10  # one sample per digit, two per emoji class
#: emoji-latent samples 8×8×4 latents, a fraction of a pixel model's cost, so it draws 8 per class: at 2 per class a
#: sampler reading 0.8 of its samples right misses 0.7 one time in eight (binomial), at 8 about one in twenty-five
N_OF = {"emoji-latent": 40}
#: at least 7 of the 10 digits right: a working sampler (0.93–0.98 right over 100 samples on either
#: model) falls below with a binomial chance under 0.4 %, while a broken one (the ε-model's
#: unclipped samplers drew 0.10–0.31 right) reaches it with 1.3 % at most. 9 of 10 failed a working
#: sampler at 0.96 with 5.8 %, and the draws share x_T across samplers, so one unlucky seed failed
#: several at once (mnist-flow: 0.96 right over 200, three of its eight misses among the first ten)
MIN_RIGHT = 0.7
#: the student was distilled from the teacher's solutions from seed 0's noise (its pair i starts at sample i's x_T):
#: it is read on noise it was not trained on
SEED_OF = {"mnist-flow-2step": 1}


@pytest.fixture(scope="module", params=["mnist-cfg", "mnist-flow", "mnist-flow-2step", "emoji-flow", "mnist-latent",
                                        "emoji-latent"])
def model(request):
    """A v-prediction model on the cosine schedule, flow-matching models on the straight path in
    grey and in colour, the few-step student reflowed from one of them, and a latent v-model whose
    samples are decoded by its first stage."""
    return load(request.param)


def out_of_range(x: torch.Tensor) -> float:
    return float((x.abs() > 1.05).double().mean())


def accuracy(model, x: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction read as the class asked for: by the digit classifier, or the emoji judge at t = 0."""
    if model.checkpoint.dataset["name"] == "emoji":
        logits = load_classifier(EMOJI_JUDGE)(x.clamp(-1, 1), torch.zeros(len(x)))
    else:
        _, logits = embed(x.clamp(-1, 1))
    return float((logits.argmax(dim=1) == labels).double().mean())


@pytest.mark.parametrize("name", difftk.available("sampler"))
def test_every_sampler_draws_in_range_classes_without_clipping(model, name):
    sampler = difftk.create("sampler", name)
    assert getattr(sampler, "clip_x0", None) is None  # off by default: nothing hides a broken sampler
    options = CHEAP.get(name, dict(steps=20))
    if name == "ode":
        sampler = difftk.create("sampler", "ode", rtol=ODE_TOL, atol=ODE_TOL)
    stem = Path(model.checkpoint.path).stem
    n = N_OF.get(stem, N)
    labels = class_labels(n, model.num_classes)
    x = model.sample(n, sampler=sampler, guidance=False, labels=labels, seed=SEED_OF.get(stem, 0), **options)
    assert torch.isfinite(x).all()
    assert out_of_range(x) <= 0.02, f"{name}: {100 * out_of_range(x):.2f}% of pixels beyond ±1.05"
    right = accuracy(model, x, labels)
    assert right >= MIN_RIGHT, f"{name}: accuracy {right:.2f} on the requested classes"


def test_ddim_and_the_ode_agree_from_the_same_noise(model):
    """DDIM (η = 0) is a first-order discretization of the probability-flow ODE (Song et al.
    2020, §4.3): with enough steps both map x_T to the same image (for a latent model, the same
    latents: the ODE is the one in the first stage's space)."""
    labels = class_labels(4, model.num_classes)
    shape = latent.shape_of(model.pipeline.autoencoder, model.data_shape)
    x_T = torch.randn((4, *shape), generator=torch.Generator().manual_seed(5))
    schedule = model.pipeline.schedule
    with torch.inference_mode():
        ddim = difftk.create("sampler", "ddim").sample(model.denoiser, schedule, x_T, steps=100, cond=labels)
        ode = difftk.create("sampler", "ode").sample(model.denoiser, schedule, x_T, cond=labels)
    rel = (ddim - ode).flatten(1).norm(dim=1) / ode.flatten(1).norm(dim=1)
    assert float(rel.median()) <= 0.1, rel
