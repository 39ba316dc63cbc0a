"""Checkpoints: what they hold, how they load, and one-line errors for every broken file."""

import json
import struct

import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.checkpoint.files import (
    CheckpointError,
    flatten_optimizer,
    read_checkpoint,
    save_checkpoint,
    unflatten_optimizer,
)
from difftk.data.pipeline_data import load_dataset
from difftk.errors import UnknownComponentError
from difftk.model import load
from difftk.pipeline.spec import PipelineSpec
from difftk.testing import plugin_host
from difftk.training.config import TrainConfig
from safetensors.torch import save as st_save


@pytest.fixture
def run(register_plugin, tmp_path):
    """A 4-step run on toy images; returns its checkpoint path."""
    assert register_plugin(toys, "toys")
    return toys.train_toy(tmp_path / "run", steps=4, batch_size=4, sample_every=0, seed=1)[3].checkpoint


def test_checkpoint_records_how_it_was_made(run):
    ckpt = read_checkpoint(run)
    assert ckpt.step == 4
    assert ckpt.spec["denoiser"].options_dict == {"in_channels": 1, "num_classes": 2, "hidden": 16, "prediction": "eps"}
    assert ckpt.spec == PipelineSpec.from_json(ckpt.metadata["pipeline"])
    assert ckpt.spec["denoiser"].plugin == "toys" and ckpt.plugins["ddpm"] == "0.1.0"
    assert TrainConfig(**ckpt.train_config) == TrainConfig(steps=4, batch_size=4, sample_every=0, seed=1)
    assert ckpt.dataset | {"options": None} == {
        "name": "toy-images", "kind": "image", "shape": [1, 8, 8], "size": 64, "num_classes": 2,
        "class_names": ["horizontal", "vertical"], "plugin": "toys", "options": None,
        "fingerprint": load_dataset("toy-images")[0].fingerprint()}  # the content, for a resume to check
    assert ckpt.metadata["difftk_version"] == difftk.__version__
    prefixes = {name.split("/")[0] for name in ckpt.tensors}
    assert prefixes == {"model", "ema", "optim", "rng"}
    assert ckpt.section("rng")["torch"].dtype == torch.uint8
    assert run.read_bytes()[8:].lstrip().startswith(b"{")  # a safetensors header, not a pickle


def test_load_for_sampling_gives_the_ema_weights_in_eval_mode(run):
    model = load(run)
    ema = read_checkpoint(run).section("ema")
    assert not model.denoiser.training
    assert not any(p.requires_grad for p in model.denoiser.parameters())
    for name, value in model.denoiser.state_dict().items():
        assert torch.equal(value, ema[name]), name
    assert model.data_shape == (1, 8, 8) and model.num_classes == 2 and model.data_kind == "image"
    model_weights = read_checkpoint(run).section("model")
    assert any(not torch.equal(model_weights[n], ema[n]) for n in ema)  # the EMA lags the weights


def test_a_run_directory_loads_as_its_checkpoint(run):
    assert read_checkpoint(run.parent).path == run


def _one_line_error(path, match):
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message and match in message, message
    return message


@pytest.mark.parametrize("keep", [0, 5, 8, 100, -1])
def test_truncated_checkpoints_are_reported(run, tmp_path, keep):
    data = run.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    _one_line_error(cut, f"{cut} is not a difftk checkpoint (corrupt or truncated)")


def test_corrupt_header_and_foreign_files_are_reported(run, tmp_path):
    data = bytearray(run.read_bytes())
    data[8] = ord("#")  # the opening brace of the JSON header
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    _one_line_error(bad, "corrupt or truncated): the header is not JSON")
    other = tmp_path / "other.safetensors"
    other.write_bytes(st_save({"w": torch.zeros(2)}))
    _one_line_error(other, "is a safetensors file but not a difftk checkpoint")
    _one_line_error(tmp_path / "absent.safetensors", "no such checkpoint file")
    (tmp_path / "emptydir").mkdir()
    _one_line_error(tmp_path / "emptydir", "is a directory without a checkpoint.safetensors")


def test_missing_metadata_is_named(run, tmp_path):
    ckpt = read_checkpoint(run)
    meta = {k: v for k, v in ckpt.metadata.items() if k not in ("pipeline", "format", "format_version")}
    path = save_checkpoint(tmp_path / "partial.safetensors", ckpt.tensors, meta)
    _one_line_error(path, "its metadata lacks pipeline")


def test_newer_format_is_refused(run, tmp_path):
    ckpt = read_checkpoint(run)
    data = st_save(ckpt.tensors, metadata={**ckpt.metadata, "format_version": "99"})
    path = tmp_path / "future.safetensors"
    path.write_bytes(data)
    _one_line_error(path, "checkpoint format 99")


def test_a_checkpoint_needing_a_missing_plugin_names_it(run):
    with plugin_host() as host:  # the installed plugins only: no "toys"
        assert "toys" not in host.records
        with pytest.raises(UnknownComponentError) as err:
            load(run)
    assert str(err.value) == f"{run} needs denoiser 'tiny' from plugin 'toys', which is not installed"


def test_weights_that_do_not_fit_are_one_line(run, tmp_path):
    ckpt = read_checkpoint(run)
    tensors = {k: v for k, v in ckpt.tensors.items() if k != "ema/net.0.weight"}
    path = save_checkpoint(tmp_path / "holed.safetensors", tensors, ckpt.metadata)
    with pytest.raises(CheckpointError, match=r"the EMA weights do not fit denoiser 'tiny' \(missing net.0.weight\)"):
        load(path)
    tensors = {**ckpt.tensors, "ema/net.0.weight": torch.zeros(3, 3)}
    path = save_checkpoint(tmp_path / "shaped.safetensors", tensors, ckpt.metadata)
    with pytest.raises(CheckpointError, match="the EMA weights do not fit denoiser 'tiny': size mismatch for net.0.weight"):
        load(path)


def test_checkpoint_files_are_replaced_atomically(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.safetensors", {"a": torch.ones(2)}, {"k": "v"})
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken)
    with pytest.raises(CheckpointError, match="disk full .the previous checkpoint, if any, is unchanged.$"):
        save_checkpoint(path, {"a": torch.zeros(2)}, {"k": "w"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary file left


def test_tied_tensors_are_stored_separately(tmp_path):
    w = torch.randn(3, 3)
    path = save_checkpoint(tmp_path / "t.safetensors", {"a": w, "b": w}, {})
    header = json.loads(path.read_bytes()[8:8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])
    assert header["a"]["data_offsets"] != header["b"]["data_offsets"]


def test_optimizer_state_round_trips_through_tensors_and_json():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.8, 0.95), weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        sum((p**2).sum() for p in params).backward()
        opt.step()
    tensors, rest = flatten_optimizer(opt.state_dict())
    assert set(tensors) == {f"{i}/{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")}
    restored = unflatten_optimizer(tensors, json.loads(json.dumps(rest)))
    original = opt.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for i, state in original["state"].items():
        for key, value in state.items():
            assert torch.equal(restored["state"][i][key], value)
