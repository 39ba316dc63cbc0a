"""`difftk sample --format png-folder|npz`, `difftk evaluate --samples`, and both commands with --nproc:
samples out to other evaluators, any generator's images in, and draws split over processes that
equal one process's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import difftk
import numpy as np
import pytest
import torch
from difftk.data.arrays import to_uint8_images
from difftk.data.pipeline_data import load_dataset
from difftk.evaluation.compare import measure
from difftk.evaluation.context import EvalContext
from difftk_cli.testing import one_line_error, run
from PIL import Image

DIFFTK = str(Path(sys.executable).with_name("difftk"))
STEPS = 8
#: every process computes with one thread, whatever the machine's cores (--nproc keeps a given OMP_NUM_THREADS)
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def results(path) -> dict:
    return {r["metric"]: r for r in json.loads(Path(path).read_text())["results"]}


def test_png_folder_and_npz_of_mnist_cfg_are_scored_as_the_tensors_they_came_from(tmp_path):
    """The must-show: 20 PNGs at 28×28 and an npz, each scored by `evaluate --samples`, score what the
    tensors they came from score: metrics see a model's samples at 8 bits, as the files hold them."""
    folder, npz = tmp_path / "digits", tmp_path / "digits.npz"
    made = run("sample", "mnist-cfg", "-n", 20, "--steps", STEPS, "--format", "png-folder", "-o", folder)
    assert made.exit_code == 0 and "20 PNGs of 28×28 grey (each labelled)" in made.stdout
    assert sorted(os.listdir(folder)) == [f"{i:06d}.png" for i in range(20)]
    with Image.open(folder / "000007.png") as image:
        assert image.size == (28, 28) and image.mode == "L" and image.info["label"] == "7"
    assert run("sample", "mnist-cfg", "-n", 20, "--steps", STEPS, "-o", npz).exit_code == 0  # npz from the name
    for source, name in ((folder, "dir.json"), (npz, "npz.json")):
        scored = run("evaluate", "--samples", source, "--metric", "fid", "--metric", "accuracy", "--json", tmp_path / name)
        assert scored.exit_code == 0, scored.output
        assert "20 images of 1×28×28, labelled (10 classes, 0–9); measured against mnist's held-out split" in scored.stdout
    from_dir, from_npz = results(tmp_path / "dir.json"), results(tmp_path / "npz.json")
    # fid draws its reference images in an unseeded order: on singular covariances that moves it by ~1e-8 relative
    same = lambda a, b: abs(a - b) <= 1e-6 * abs(b)  # noqa: E731
    assert same(from_dir["fid"]["value"], from_npz["fid"]["value"]) and from_dir["fid"]["n"] == 20
    assert from_dir["accuracy"] == from_npz["accuracy"]

    model = difftk.load("mnist-cfg")
    data = load_dataset("mnist", split="test")[0]
    tensors = EvalContext(model=model, data=data, steps=STEPS)  # what `difftk evaluate mnist-cfg` measures
    x = model.sample(20, steps=STEPS, seed=0)  # what `difftk sample` drew, as floats
    assert torch.equal(tensors.samples(20, tensors.balanced_labels(20)), to_uint8_images(x) / 127.5 - 1)
    for metric in ("fid", "accuracy"):
        scored = measure(metric, {"n": "20"}, tensors)
        assert same(scored.value, from_dir[metric]["value"]) and same(scored.spread, from_dir[metric]["spread"])


def test_sample_and_evaluate_inputs_and_outputs_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "names an npz: use --format npz" in one_line_error(run("sample", "mnist-cfg", "-o", "a.npz", "--format", "png"))
    Path("photos").mkdir()
    Image.new("L", (28, 28)).save("photos/holiday.png")
    assert "holds holiday.png, which difftk did not write" in one_line_error(
        run("sample", "mnist-cfg", "-n", 2, "--format", "png-folder", "-o", "photos"))
    assert "is the --init this command reads" in one_line_error(
        run("sample", "mnist-cfg", "-n", 1, "-o", "photos/holiday.png", "--init", "photos/holiday.png", "--strength", "0.5"))
    np.savez("floats.npz", np.zeros((2, 28, 28, 1), np.float32))
    assert "arr_0 is float32" in one_line_error(run("evaluate", "--samples", "floats.npz", "--metric", "fid"))
    assert "--steps sets how a model is sampled" in one_line_error(
        run("evaluate", "--samples", "photos", "--metric", "fid", "--steps", 5))
    assert "or --samples DIR_OR_NPZ" in one_line_error(run("evaluate", "--metric", "fid"))
    assert "give one of them" in one_line_error(run("evaluate", "mnist-cfg", "--samples", "photos", "--metric", "fid"))
    assert "photos holds 1 image, too few for metric 'fid' (metric 'fid': option n=1 is out of range" in one_line_error(
        run("evaluate", "--samples", "photos", "--metric", "fid"))
    assert "unconditional (num_classes=0)" in one_line_error(run("evaluate", "--samples", "photos", "--metric", "accuracy"))
    assert "holds images only: evaluate the checkpoint instead" in one_line_error(
        run("evaluate", "--samples", "photos", "--metric", "memorization", "-n", 1))


def test_points_have_no_image_format(toy_pipeline):
    assert run("train", "p.toml", "--data", "toy-points", "--steps", 2, "--out", "run", "--sample-every", 0).exit_code == 0
    assert "this model makes 2-D points: use --format png" in one_line_error(
        run("sample", "run", "-n", 4, "-o", "pts.npz"))


def _cli(*args, env=None):
    result = subprocess.run([DIFFTK, *map(str, args)], capture_output=True, text=True, timeout=240,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_sample_in_two_processes_gives_the_images_of_one(tmp_path):
    """Bit for bit at the same threads per process (CPU kernels round differently with the thread count)."""
    args = ["sample", "mnist-cfg", "-n", 10, "--steps", 4, "--batch-size", 3]
    two = _cli(*args, "-o", tmp_path / "two.npz", "--nproc", 2, env=ONE_THREAD)
    _cli(*args, "-o", tmp_path / "one.npz", env=ONE_THREAD)
    assert two.stdout.count("wrote ") == 1 and "in 2 processes" in two.stdout  # process 0 writes and prints
    with np.load(tmp_path / "one.npz") as one, np.load(tmp_path / "two.npz") as both:
        assert np.array_equal(one["arr_0"], both["arr_0"]) and np.array_equal(one["labels"], both["labels"])
    assert sorted(os.listdir(tmp_path)) == ["one.npz", "two.npz"]
    bad = subprocess.run([DIFFTK, *map(str, [*args, "-o", tmp_path / "bad.npz", "--nproc", 2, "--sampler", "dimm"])],
                         capture_output=True, text=True, timeout=240)
    lines = [line for line in bad.stderr.splitlines() if line.strip()]  # every process met it; it is said once
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: unknown sampler 'dimm'"), bad.stderr


@pytest.mark.slow
def test_evaluate_in_two_processes_scores_what_one_process_scores(tmp_path):
    args = ["evaluate", "mnist-cfg", "--metric", "fid", "--metric", "accuracy", "-n", 12, "--steps", 3, "--batch-size", 4]
    _cli(*args, "--json", tmp_path / "two.json", "--nproc", 2, env=ONE_THREAD)
    _cli(*args, "--json", tmp_path / "one.json", env=ONE_THREAD)
    one, two = results(tmp_path / "one.json"), results(tmp_path / "two.json")
    assert one["accuracy"] == two["accuracy"]
    # fid draws its reference images in an unseeded order: on singular covariances that moves it by ~1e-8 relative
    assert abs(one["fid"]["value"] - two["fid"]["value"]) <= 1e-6 * one["fid"]["value"]
    assert json.loads((tmp_path / "two.json").read_text())["processes"] == 2
    # process 0 alone reads the held-out data: its error stops the serving process quietly, and is said once
    bad = subprocess.run([DIFFTK, *map(str, [*args, "--data", "nosuch", "--nproc", 2])], capture_output=True, text=True,
                         timeout=240)
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: unknown dataset 'nosuch'"), bad.stderr
