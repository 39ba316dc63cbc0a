"""Latent diffusion with every registered sampler: a pipeline with the ``kl`` autoencoder (tiny, untrained)
and an exact Gaussian denoiser in its latent space samples decoded images with each sampler, and SDEdit
and inpainting pass through encode and decode."""

import difftk
import pytest
import torch
from difftk.components.autoencoding import from_latent, to_latent
from difftk.model import Model
from difftk.sampling.draw import generate
from difftk.testing.oracles import GaussianOracle

SHAPE = (1, 8, 8)
SMALL = {"channels": 8, "channel_mult": (1, 2), "groups": 4, "z_channels": 2}


def fixed(name):
    return difftk.create("sampler", name, **({"method": "heun"} if name == "ode" else {}))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    pipeline = difftk.compose(
        schedule={"name": "linear", "options": {"T": 200}}, sampler="ddim", autoencoder={"name": "kl", "options": SMALL}
    )
    latent = pipeline.autoencoder.latent_shape(SHAPE)
    oracle = GaussianOracle(pipeline.schedule, mean=0.2, std=0.8, shape=latent, prediction="eps")
    oracle.num_classes = 0
    return Model(pipeline=pipeline, denoiser=oracle, data={"kind": "image", "shape": list(SHAPE)})


@pytest.mark.parametrize("name", difftk.available("sampler"))
def test_every_sampler_samples_a_latent_pipeline(model, name):
    x = model.sample(3, sampler=fixed(name), steps=4, seed=2)
    assert x.shape == (3, *SHAPE) and torch.isfinite(x).all()
    z = generate(model.denoiser, model.schedule, fixed(name), (2, 4, 4), 3, steps=4, seed=2)
    torch.testing.assert_close(x, from_latent(model.pipeline.autoencoder, z))


def test_inpainting_with_nothing_to_generate_gives_the_reconstruction(model):
    init = torch.rand((2, *SHAPE), generator=torch.Generator().manual_seed(1)) * 2 - 1
    ae = model.pipeline.autoencoder
    out = model.sample(2, steps=8, init=init, mask=torch.zeros(1, 1, 8, 8), seed=0)
    reconstruction = from_latent(ae, to_latent(ae, init))
    torch.testing.assert_close(out, reconstruction, rtol=1e-4, atol=1e-4)


def test_sdedit_at_a_small_strength_stays_near_the_reconstruction(model):
    init = torch.rand((2, *SHAPE), generator=torch.Generator().manual_seed(1)) * 2 - 1
    ae = model.pipeline.autoencoder
    reconstruction = from_latent(ae, to_latent(ae, init))
    near = model.sample(2, init=init, strength=0.02, seed=0)
    far = model.sample(2, init=init, strength=1.0, steps=8, seed=0)
    assert float((near - reconstruction).abs().mean()) < 0.5 * float((far - reconstruction).abs().mean())
