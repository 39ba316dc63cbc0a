"""Sampling and editing through a first stage (difftk.sampling.latent), against the exact reference
autoencoder: samplers draw latents of the latent shape, Model.sample decodes them, and an edit is
checked in the data's terms, encoded, and its mask pooled to the latent cells."""

import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.model import Model
from difftk.sampling.draw import generate
from difftk.sampling.latent import edit_of, latent_mask
from hypothesis import given, settings
from hypothesis import strategies as st

SHAPE = (1, 8, 8)


@pytest.fixture
def model(register_plugin):
    assert register_plugin(toys, "toys")
    torch.manual_seed(0)
    pipeline = difftk.compose(
        schedule={"name": "linear", "options": {"T": 50}},
        sampler="ddim",
        denoiser={"name": "tiny", "options": {"in_channels": 4}},
        autoencoder={"name": "blocks", "options": {"factor": 2, "scale": 1.5, "shift": 0.1}},
    )
    return Model(pipeline=pipeline, denoiser=pipeline.denoiser.eval(), data={"kind": "image", "shape": list(SHAPE)})


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1, 2, 4]), st.sampled_from([1, 3]))
def test_a_latent_cell_is_kept_only_when_its_whole_block_is_kept(seed, f, channels):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand((2, channels, 8, 8), generator=g) < 0.2).float()
    m = latent_mask(mask, (4, 8 // f, 8 // f))
    assert m.shape == (2, 1, 8 // f, 8 // f)
    blocks = mask.amax(1, keepdim=True).unfold(2, f, f).unfold(3, f, f)  # [2, 1, 8/f, 8/f, f, f]
    assert torch.equal(m, blocks.amax((-1, -2)))


def test_model_sample_draws_latents_and_decodes_them(model):
    ae = model.pipeline.autoencoder
    x = model.sample(3, steps=5, seed=4)
    assert x.shape == (3, *SHAPE)
    z = generate(model.denoiser, model.schedule, model.pipeline.sampler, (4, 4, 4), 3, steps=5, seed=4)
    expected = torch.nn.functional.pixel_shuffle(z / ae.scale + ae.shift, 2)
    torch.testing.assert_close(x, expected)


def test_every_sample_is_its_own_whatever_the_batch(model):
    a = model.sample(4, steps=3, seed=1)
    b = model.sample(4, steps=3, seed=1, batch_size=1)
    torch.testing.assert_close(a, b)


def test_inpainting_keeps_the_known_cells_exactly_through_encode_and_decode(model):
    init = torch.rand((2, *SHAPE), generator=torch.Generator().manual_seed(2)) * 2 - 1
    mask = torch.zeros((1, 1, 8, 8))
    mask[..., :, :3] = 1  # generate columns 0-2: with f = 2 the latent columns 0 and 1 (pixels 0-3) are generated
    out = model.sample(2, steps=5, init=init, mask=mask, seed=0)
    torch.testing.assert_close(out[..., 4:], init[..., 4:], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out[..., :4], init[..., :4], atol=1e-3)


def test_sdedit_starts_from_the_encoded_image(model):
    init = torch.rand((1, *SHAPE), generator=torch.Generator().manual_seed(3)) * 2 - 1
    edit = edit_of(model.pipeline.autoencoder, model.schedule, SHAPE, 2, init, 0.5, None)
    ae = model.pipeline.autoencoder
    torch.testing.assert_close(edit.init, (torch.nn.functional.pixel_unshuffle(init, 2) - ae.shift) * ae.scale)
    out = model.sample(2, steps=5, init=init, strength=0.5, seed=0)
    assert out.shape == (2, *SHAPE) and torch.isfinite(out).all()


def test_an_edit_is_checked_in_the_datas_terms(model):
    with pytest.raises(difftk.OptionError, match=r"does not fit the model's examples \[1, 8, 8\]"):
        model.sample(1, init=torch.zeros(1, 4, 4, 4), strength=0.5)
