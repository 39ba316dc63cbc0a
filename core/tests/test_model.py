"""The trained-model object: `difftk.load(...)` and `Model.sample`, the one way anything draws samples (that every
command, the trainer's grids, evaluate and compare draw through it: cli/tests/test_draw_paths.py)."""

import difftk
import pytest
import torch
from difftk.errors import OptionError
from difftk.model import Model


@pytest.fixture
def model():
    return difftk.load("mnist-cfg")


# --- what the object is ------------------------------------------------------------------------------------------


def test_load_gives_the_pipeline_schedule_and_eval_mode_denoiser(model):
    assert isinstance(model, Model) and model.schedule is model.pipeline.schedule
    assert not model.denoiser.training and model.data_shape == (1, 28, 28) and model.num_classes == 10
    assert model.step == model.checkpoint.step > 0 and model.data_kind == "image"


def test_sample_is_float32_on_the_cpu_seeded_and_batched(model):
    x = model.sample(3, sampler="ddim", steps=4, seed=5)
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.equal(x, model.sample(3, sampler="ddim", steps=4, seed=5, batch_size=3))
    assert not torch.equal(x, model.sample(3, sampler="ddim", steps=4, seed=6))


def test_labels_are_every_class_in_turn_one_class_or_one_per_sample(model):
    assert model.labels(12).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert model.labels(3, 7).tolist() == [7, 7, 7]
    assert model.labels(2, [4, 2]).tolist() == [4, 2]
    with pytest.raises(OptionError, match="labels has 1 entries for 2 samples"):
        model.labels(2, [4])
    with pytest.raises(OptionError, match="label=10 is out of range"):
        model.labels(2, [10, 1])


def test_guidance_none_is_the_pipelines_false_is_none_and_a_scale_builds_one(model):
    assert model.pipeline.guidance is not None  # mnist-cfg is trained for cfg
    denoiser, wrapper = model.guided_denoiser()
    assert wrapper is model.pipeline.guidance and denoiser is not model.denoiser
    assert model.guided_denoiser(False) == (model.denoiser, None)
    _, scaled = model.guided_denoiser(scale=5.0)
    assert scaled.scale == 5.0 and scaled.p_uncond == model.pipeline.guidance.p_uncond
    unguided = model.sample(2, sampler="ddim", steps=3, guidance=False, labels=[1, 1])
    guided = model.sample(2, sampler="ddim", steps=3, scale=5.0, labels=[1, 1])
    assert not torch.equal(unguided, guided)
    with pytest.raises(OptionError, match="guidance=False samples unguided"):
        model.guidance(False, scale=1.0)


def test_sampler_options_go_to_the_sampler(model):
    assert model.sampler("ddim", {"eta": "0.5"}).eta == 0.5
    assert model.sampler() is model.pipeline.sampler
    a = model.sample(2, sampler="ddim", steps=3, eta=1.0, seed=1)
    b = model.sample(2, sampler="ddim", steps=3, eta=0.0, seed=1)
    assert not torch.equal(a, b)
