"""Training through a first stage: the denoiser's data options come from the latent shape, every batch
is encoded on the fly from the checkpointed generator (a resume ends bit for bit as a whole run), the
autoencoder is part of what a resume must keep, and a checkpoint samples decoded images."""

import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.checkpoint.files import read_checkpoint
from difftk.data.pipeline_data import load_dataset, size_to_data
from difftk.training.config import TrainConfig, TrainingError
from difftk.training.job import resume_state, train


@pytest.fixture
def toy(register_plugin):
    assert register_plugin(toys, "toys")


def spec(denoiser="tiny", factor=2, scale=2.0, **options):
    return difftk.compose(
        schedule={"name": "linear", "options": {"T": 50}},
        sampler="ddim",
        denoiser={"name": denoiser, "options": options},
        objective="simple",
        autoencoder={"name": "blocks", "options": {"factor": factor, "scale": scale}},
    ).spec


def config(**overrides):
    return TrainConfig(
        **{
            **dict(steps=6, batch_size=8, warmup=2, checkpoint_every=100, sample_every=0, log_every=2, seed=5),
            **overrides,
        }
    )


def images():
    return load_dataset("toy-images")[0]


def test_the_denoiser_is_fitted_to_the_latent_shape(toy):
    live, filled = size_to_data(spec("sized", factor=2), images())
    assert filled == {"in_channels": 4, "image_size": 4, "num_classes": 2}  # 8×8×1 → 4×4×4
    assert live.autoencoder is not None and live.spec["denoiser"].options_dict["image_size"] == 4


def test_a_resumed_latent_run_ends_bit_identical(toy, tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    train(spec(), images(), config(), out=whole)
    train(spec(), images(), config(steps=3), out=part)
    ckpt, cfg = resume_state(part, steps=6)
    train(spec(), images(), cfg, out=part, resume=True, checkpoint=ckpt)
    a, b = read_checkpoint(whole / "checkpoint.safetensors"), read_checkpoint(part / "checkpoint.safetensors")
    assert a.tensors.keys() == b.tensors.keys()
    for name in a.tensors:
        assert torch.equal(a.tensors[name], b.tensors[name]), name


def test_the_run_trains_on_draws_of_the_latents(toy, tmp_path, monkeypatch):
    """The trainer hands the objective z ~ q(z | x) of each batch: scaled latents of the latent shape."""
    seen = []
    import difftk.training.trainer as trainer

    original = trainer.to_latent

    def spy(ae, x, generator=None, *, sample=False):
        z = original(ae, x, generator, sample=sample)
        seen.append((x.shape, z.shape, sample))
        return z

    monkeypatch.setattr(trainer, "to_latent", spy)
    train(spec(), images(), config(steps=2), out=tmp_path / "run")
    assert seen == [((8, 1, 8, 8), (8, 4, 4, 4), True)] * 2


def test_a_resume_keeps_the_autoencoder(toy, tmp_path):
    out = tmp_path / "run"
    train(spec(), images(), config(steps=2), out=out)
    ckpt, cfg = resume_state(out, steps=4)
    with pytest.raises(TrainingError, match="autoencoder.scale=2.0; the pipeline now sets 3.0"):
        train(spec(scale=3.0), images(), cfg, out=out, resume=True, checkpoint=ckpt)


def test_a_latent_checkpoint_samples_decoded_images(toy, tmp_path):
    out = tmp_path / "run"
    train(spec(), images(), config(steps=2), out=out)
    model = difftk.load(out)
    assert model.pipeline.autoencoder is not None and model.data_shape == (1, 8, 8)
    x = model.sample(3, steps=4, seed=0)
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()
