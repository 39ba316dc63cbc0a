"""Train on your own images: a fresh folder of PNGs, composed and trained with no --set, resumed
with no --data, sampled; other data refused on resume; a live run refused first
(docs/own-images.md). The whole path: cli, the datasets plugin, unet-attn and the core."""

import json

import numpy as np
import pytest
from difftk.checkpoint.files import read_checkpoint
from difftk.training.rundir import RunPaths
from difftk_cli.testing import one_line_error, run
from PIL import Image


def png_folder(root, size, classes=("cat", "dog"), n=4, seed=0, sizes=None):
    """``n`` random RGB PNGs per class, size×size (or cycling through ``sizes``)."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            h = w = size if sizes is None else sizes[i % len(sizes)]
            Image.fromarray(rng.integers(0, 256, (h, w + (i % 2) * (sizes is not None), 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("compose", "--schedule", "cosine", "--sampler", "ddim", "--denoiser", "unet-attn", "--objective", "simple",
                 "-o", "p.toml")
    assert result.exit_code == 0, result.output
    return tmp_path


#: small batches and no sample grid keep 5 steps of the default unet-attn cheap (flags, not --set)
CHEAP = ("--batch-size", "2", "--sample-every", "0")


@pytest.mark.parametrize("size", [16, 32, 64])
def test_compose_train_resume_sample_with_no_set_and_no_data_on_resume(here, size):
    png_folder(here / "imgs", size)
    first = run("train", "p.toml", "--data", "image-folder:imgs", "--steps", 3, "--out", "r", *CHEAP)
    assert first.exit_code == 0, first.output
    attention = {16: [8], 32: [16], 64: [16]}[size]
    assert f"image_size={size}" in first.stdout and f"attention_resolutions=({attention[0]},)" in first.stdout
    again = run("train", "p.toml", "--steps", 5, "--out", "r", "--resume")
    assert again.exit_code == 0, again.output
    assert "changed settings" not in again.stdout and "done: step 5" in again.stdout
    ckpt = read_checkpoint("r/checkpoint.safetensors")
    assert ckpt.spec["denoiser"].options_dict["attention_resolutions"] == attention  # written out, not "none"
    assert ckpt.dataset["options"]["path"] == "imgs" and ckpt.dataset["class_names"] == ["cat", "dog"]
    sampled = run("sample", "r", "-n", 4, "-o", "x.png")
    assert sampled.exit_code == 0, sampled.output
    assert Image.open("x.png").size[0] >= 2 * size


def test_a_mixed_size_folder_needs_image_size_once(here):
    png_folder(here / "mixed", 0, sizes=(24, 40, 32))
    line = one_line_error(run("train", "p.toml", "--data", "image-folder:mixed", "--steps", 3, "--out", "r", *CHEAP))
    assert "give --data-option image_size=N" in line
    ok = run("train", "p.toml", "--data", "image-folder:mixed", "--data-option", "image_size=32", "--steps", 3,
             "--out", "r2", *CHEAP)
    assert ok.exit_code == 0, ok.output
    again = run("train", "p.toml", "--steps", 4, "--out", "r2", "--resume")
    assert again.exit_code == 0, again.output
    assert json.loads(read_checkpoint("r2/checkpoint.safetensors").metadata["dataset"])["options"]["image_size"] == 32
    line = one_line_error(run("train", "p.toml", "--steps", 5, "--out", "r2", "--resume", "--data-option", "image_size=16"))
    assert "trained with the data option image_size=32" in line


def test_resume_on_another_folder_of_the_same_shape_is_refused(here):
    png_folder(here / "pets", 16)
    png_folder(here / "vehicles", 16, classes=("car", "plane"), seed=1)
    png_folder(here / "pets-again", 16, seed=2)  # same names and classes, other pictures (and file sizes)
    assert run("train", "p.toml", "--data", "image-folder:pets", "--steps", 2, "--out", "r", *CHEAP).exit_code == 0
    line = one_line_error(run("train", "p.toml", "--data", "image-folder:vehicles", "--steps", 3, "--out", "r", "--resume"))
    assert "trained on other image-folder data" in line and "cat, dog → car, plane" in line
    line = one_line_error(run("train", "p.toml", "--data", "image-folder:pets-again", "--steps", 3, "--out", "r", "--resume"))
    assert "trained on other image-folder data" in line
    line = one_line_error(run("train", "p.toml", "--data", "mnist", "--steps", 3, "--out", "r", "--resume"))
    assert "trained on image-folder" in line
    assert read_checkpoint("r/checkpoint.safetensors").dataset["class_names"] == ["cat", "dog"]  # unchanged
    (here / "pets").rename(here / "moved")
    moved = run("train", "p.toml", "--data", "image-folder:moved", "--steps", 3, "--out", "r", "--resume")
    assert moved.exit_code == 0, moved.output  # the same content elsewhere is the same data


def test_a_live_run_is_refused_with_its_pid_before_its_first_checkpoint(here):
    png_folder(here / "imgs", 16)
    with RunPaths(here / "r").lock():  # a run that has started and written nothing yet
        line = one_line_error(run("train", "p.toml", "--steps", 3, "--out", "r", "--resume"))
    assert "being written by another difftk train (pid " in line


def test_an_explicit_value_that_cannot_fit_names_the_one_that_would(here):
    png_folder(here / "imgs", 32)
    assert run("compose", "--from", "p.toml", "--set", "denoiser.attention_resolutions=14", "-o", "p14.toml").exit_code == 0
    line = one_line_error(run("train", "p14.toml", "--data", "image-folder:imgs", "--steps", 1, "--out", "r", *CHEAP))
    assert "attention_resolutions has 14, but the feature maps are 32, 16, 8: use attention_resolutions=16" in line


def test_compose_with_data_writes_the_fitted_options(here):
    png_folder(here / "imgs", 32)
    result = run("compose", "--from", "p.toml", "--data", "image-folder:imgs", "-o", "fitted.toml")
    assert result.exit_code == 0, result.output
    text = (here / "fitted.toml").read_text()
    for line in ("in_channels = 3", "image_size = 32", "num_classes = 2", "attention_resolutions = [16]"):
        assert line.replace(" ", "") in text.replace(" ", ""), text
    assert run("train", "fitted.toml", "--data", "image-folder:imgs", "--steps", 1, "--out", "r", *CHEAP).exit_code == 0


def test_compose_with_data_builds_options_that_need_the_data(here):
    """A fourth level needs a side divisible by 8: the data's 32 px are filled before the build
    (without --data, the default image_size=28 cannot take it)."""
    png_folder(here / "imgs", 32)
    deeper = ("compose", "--from", "p.toml", "--set", "denoiser.channel_mult=1,2,2,2")
    assert "image_size=28 must be divisible by" in one_line_error(run(*deeper, "-o", "bad.toml"))
    result = run(*deeper, "--data", "image-folder:imgs", "-o", "deep.toml")
    assert result.exit_code == 0, result.output
    assert "image_size = 32" in (here / "deep.toml").read_text()


def test_a_run_is_measured_by_a_classifier_of_its_own_pictures(here):
    """Section 5: a classifier trained on the run's training split labels its samples (accuracy) and gives
    KID and FID their features, against the pictures the run held out; without one, accuracy is one line."""
    png_folder(here / "imgs", 16, n=6)
    data = ("--data", "image-folder:imgs", "--data-option", "holdout=0.5")
    assert run("train", "p.toml", *data, "--steps", 2, "--out", "r", *CHEAP).exit_code == 0
    trained = run("train-classifier", "r", *data, "--steps", 2, "--batch-size", 4, "--out", "judge.safetensors")
    assert trained.exit_code == 0, trained.output
    measured = run("evaluate", "r", "--metric", "accuracy", "--metric", "kid", "--metric", "fid", "-n", 10,
                   "--steps", 2, "--set", "metric.features=classifier:judge.safetensors", "--set", "metric.subsets=2",
                   "--set", "metric.bootstrap=2", "--json", "m.json")
    assert measured.exit_code == 0, measured.output
    results = {r["metric"]: r for r in json.loads((here / "m.json").read_text())["results"]}
    assert set(results) == {"accuracy", "kid", "fid"} and 0 <= results["accuracy"]["value"] <= 1
    assert "judge.safetensors" in results["accuracy"]["details"]["classifier"]
    assert "judge.safetensors" in results["fid"]["details"]["features"] and "6 images" in results["fid"]["details"]["reference"]
    line = one_line_error(run("evaluate", "r", "--metric", "accuracy", "-n", 6, "--steps", 2))
    assert "needs a classifier of this model's 2 classes and has no classifier built in, but this model makes 3×16×16" in line
