"""difftk's own models as a Hub-style folder: export, load back, and refuse what does not belong together."""

import json
import shutil

import difftk
import pytest
import torch
from click.testing import CliRunner
from difftk.errors import CheckpointError
from difftk.pipeline.spec import PipelineSpec
from difftk_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / "mnist-cfg"
    result = run("export", "mnist-cfg", "--format", "folder", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: config.json, model.safetensors" in " ".join(result.stdout.split())
    return out


def test_the_folder_holds_config_weights_and_pipeline_and_samples_as_the_model(folder):
    # and difftk's mark of a folder it exported, which lets a later export replace it (and nothing else)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "difftk-export.json", "model.safetensors",
                                                        "pipeline.toml"]
    original, again = difftk.load("mnist-cfg"), difftk.load(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["_class_name"] == "DifftkModel" and config["format"] == 1 and config["step"] == original.step
    assert config["data"]["shape"] == list(original.data_shape)
    assert PipelineSpec.load(folder / "pipeline.toml").to_dict() == original.checkpoint.spec.to_dict() == config["pipeline"]
    assert torch.equal(again.sample(2, steps=3, seed=4), original.sample(2, steps=3, seed=4))


def test_a_config_that_disagrees_with_the_weights_is_one_line(folder, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["pipeline"]["sampler"] = {"name": "ddim", "options": {"eta": 0.5}}
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="its pipeline differs from the one stored in model.safetensors"):
        difftk.load(bad)
    config["format"] = 99
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="folder format 99 is newer than this difftk reads"):
        difftk.load(bad)
    (bad / "model.safetensors").unlink()
    config["format"] = 1
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        difftk.load(bad)


def test_export_into_a_folder_of_other_files_is_refused_and_into_its_own_is_redone(folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = run("export", "mnist-cfg", "--format", "folder", "-o", other)
    assert result.exit_code == 2 and "it holds notes.txt and is not a model difftk exported" in result.stderr
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    assert run("export", "mnist-cfg", "--format", "folder", "-o", folder).exit_code == 0  # its own folder, redone
    again = run("export", folder, "--format", "folder", "-o", folder)  # but never over the command's own input
    assert again.exit_code == 2 and "Traceback" not in again.output and len(again.stderr.strip().splitlines()) == 1


def test_a_hub_id_is_one_line_saying_to_download_it_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as err:
        difftk.load("google/ddpm-cifar10-32")
    text = str(err.value)
    assert "\n" not in text and "Hugging Face Hub id" in text
    assert "huggingface-cli download google/ddpm-cifar10-32 --local-dir ddpm-cifar10-32" in text
    result = run("sample", "google/ddpm-cifar10-32", "-n", 1, "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "download the folder first" in result.stderr and "Traceback" not in result.output
    (tmp_path / "runs").mkdir()  # beside an existing folder it is a local path: difftk's own error stands
    with pytest.raises(CheckpointError, match="no such checkpoint file, run directory or shipped model"):
        difftk.load("runs/mnist")
