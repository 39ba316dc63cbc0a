"""The ``kl`` autoencoder's weights named portably: a shipped name found through the plugins (and kept as
the name in a spec), or a path whose content fingerprint (sha256) is recorded, so that a latent model
refuses in one line a first stage other than the one it was trained with, or one that is gone."""

import hashlib

import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.data.pipeline_data import load_dataset
from difftk.errors import CheckpointError, OptionError, UnknownComponentError
from difftk.training.config import TrainConfig
from difftk.training.job import train
from difftk_autoencoder import load
from difftk_autoencoder.weights import save

SMALL = {"channels": 8, "channel_mult": (1, 2), "groups": 4, "z_channels": 2}


def weights_file(path, seed=1, scale=0.5):
    torch.manual_seed(seed)
    return save(path, difftk.create("autoencoder", "kl", **SMALL), scale=scale, shift=0.0)


def shipping(path, name="toy-kl", component="kl"):
    """A plugin that ships ``path`` as the kl autoencoder's weights ``name``."""

    class Shipper:
        @difftk.hookimpl
        def difftk_register_components(self, register):
            register.add_weights("autoencoder", component, name, path, "a toy first stage")

    return Shipper()


@pytest.fixture
def toy(register_plugin):
    assert register_plugin(toys, "toys")


def test_a_shipped_name_is_found_through_the_plugins_and_kept_as_the_name(register_plugin, tmp_path, monkeypatch):
    path = weights_file(tmp_path / "shipped.safetensors")
    assert register_plugin(shipping(path), "shipper")
    monkeypatch.chdir(tmp_path.parent)  # the name, not the working directory, finds it
    ae = difftk.create("autoencoder", "kl", **SMALL, weights="toy-kl")
    assert ae.config.weights == "toy-kl" and ae.scale == 0.5
    assert ae.config.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load("toy-kl").config.channel_mult == (1, 2)  # the architecture the file records
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(ae.decode(ae.encode(x).mean), load(str(path)).decode(ae.encode(x).mean), rtol=0, atol=0)
    with pytest.raises(UnknownComponentError, match=r"shipped autoencoder 'kl' weights 'toy-k'.*did you mean 'toy-kl'"):
        difftk.create("autoencoder", "kl", **SMALL, weights="toy-k")


def test_weights_shipped_for_another_component_or_twice_are_not_taken(register_plugin, tmp_path):
    path = weights_file(tmp_path / "a.safetensors")
    assert register_plugin(shipping(path, component="vq"), "other-kind")
    with pytest.raises(UnknownComponentError, match="no weights file or shipped autoencoder 'kl' weights 'toy-kl'"):
        difftk.create("autoencoder", "kl", **SMALL, weights="toy-kl")
    assert register_plugin(shipping(path), "one") and register_plugin(shipping(path), "two")
    with pytest.raises(UnknownComponentError, match="shipped by two plugins, 'one' and 'two'"):
        difftk.create("autoencoder", "kl", **SMALL, weights="toy-kl")


def test_a_path_records_the_files_sha256_and_refuses_other_content(tmp_path):
    path = weights_file(tmp_path / "ae.safetensors")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    ae = difftk.create("autoencoder", "kl", **SMALL, weights=str(path))
    assert ae.config.weights_sha256 == digest
    again = difftk.create("autoencoder", "kl", **SMALL, weights=str(path), weights_sha256=digest)
    assert again.config.weights_sha256 == digest
    weights_file(path, seed=2)  # the same name, other weights
    with pytest.raises(OptionError) as err:
        difftk.create("autoencoder", "kl", **SMALL, weights=str(path), weights_sha256=digest)
    message = str(err.value)
    assert message.startswith(f"autoencoder weights {path} are not the ones this model was trained with (sha256 {digest[:16]}")
    assert "\n" not in message
    path.unlink()
    with pytest.raises(OptionError, match=f"no such autoencoder weights file {path}: put it back, or give the path of another"):
        difftk.create("autoencoder", "kl", **SMALL, weights=str(path), weights_sha256=digest)
    with pytest.raises(OptionError, match="weights_sha256 is set without weights"):
        difftk.create("autoencoder", "kl", **SMALL, weights_sha256=digest)


def latent_run(weights, out):
    pipeline = difftk.compose(
        schedule={"name": "linear", "options": {"T": 50}},
        sampler="ddim",
        denoiser="tiny",
        objective="simple",
        autoencoder={"name": "kl", "options": {**SMALL, "weights": weights}},
    )
    config = TrainConfig(steps=2, batch_size=4, checkpoint_every=100, sample_every=0, log_every=1, seed=0)
    train(pipeline.spec, load_dataset("toy-images")[0], config, out=out)
    return out


def test_a_latent_checkpoint_refuses_a_changed_or_missing_first_stage_in_one_line(toy, tmp_path):
    path = weights_file(tmp_path / "ae.safetensors")
    run = latent_run(str(path), tmp_path / "run")
    model = difftk.load(run)
    options = model.pipeline.spec["autoencoder"].options_dict
    assert options["weights"] == str(path.resolve())
    assert options["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    weights_file(path, seed=3)  # retrained in place: a model on it would decode latents it never saw
    with pytest.raises(CheckpointError, match=r"are not the ones this model was trained with \(sha256"):
        difftk.load(run)
    path.unlink()
    with pytest.raises(CheckpointError, match="no such autoencoder weights file"):
        difftk.load(run)


def test_a_latent_checkpoint_on_a_shipped_name_records_the_name(toy, register_plugin, tmp_path):
    path = weights_file(tmp_path / "shipped.safetensors")
    assert register_plugin(shipping(path), "shipper")
    run = latent_run("toy-kl", tmp_path / "run")
    assert difftk.load(run).pipeline.spec["autoencoder"].options_dict["weights"] == "toy-kl"
    weights_file(path, seed=4)  # the plugin now ships other weights under the name
    with pytest.raises(CheckpointError, match="shipped autoencoder weights 'toy-kl' are not the ones"):
        difftk.load(run)
