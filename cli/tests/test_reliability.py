"""Nothing lost, nothing overwritten, no traceback: output paths, signals, the run-directory lock,
runs that died early, changed settings on resume, and checkpoints as untrusted input."""

import json
import os
import struct
from pathlib import Path

import difftk.testing.toys as toys
import pytest
from difftk.checkpoint.files import read_checkpoint
from difftk.training.rundir import RunPaths
from difftk_cli.testing import one_line_error, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture
def toy(register_plugin, tmp_path, monkeypatch):
    assert register_plugin(toys, "toys")
    monkeypatch.chdir(tmp_path)


def compose(path="p.toml", denoiser="tiny", *sets, guidance=None):
    args = ["compose", "--schedule", "linear", "--sampler", "ddim", "--denoiser", denoiser, "--objective", "simple",
            "--set", "schedule.T=50", *[a for s in sets for a in ("--set", s)], "-o", path]
    if guidance:
        args[args.index("-o"):args.index("-o")] = ["--guidance", guidance]
    assert run(*args).exit_code == 0
    return path


def train(*extra, steps=4, out="run", pipeline="p.toml"):
    return run("train", pipeline, "--data", "toy-images", "--steps", steps, "--out", out, "--sample-every", 0, *extra)


def files(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- output paths ---------------------------------------------------------------------------------


def test_no_output_command_replaces_a_training_checkpoint(toy, tmp_path):
    compose()
    assert train().exit_code == 0
    before = files(tmp_path / "run")
    target = "run/checkpoint.safetensors"
    for args in (["export", "run", "-o", target],
                 ["sample", "run", "-n", 2, "--steps", 2, "-o", target],
                 ["sample", "run", "-n", 2, "--steps", 2, "-o", "ok.png", "--trajectory", target],
                 ["compose", "--schedule", "linear", "--sampler", "ddim", "-o", target],
                 ["schedules", "--plot", target]):
        line = one_line_error(run(*args))
        assert "run/checkpoint.safetensors exists and is a training checkpoint; writing" in line
        assert "there would replace it: choose another path" in line
    assert files(tmp_path / "run") == before  # byte for byte
    assert run("train", "p.toml", "--data", "toy-images", "--steps", 5, "--out", "run", "--resume").exit_code == 0


def test_an_export_may_replace_an_export_but_a_picture_may_not(toy):
    compose()
    assert train().exit_code == 0
    assert run("export", "run", "-o", "m.safetensors").exit_code == 0
    assert run("export", "run", "-o", "m.safetensors").exit_code == 0
    line = one_line_error(run("sample", "m.safetensors", "-n", 2, "--steps", 2, "-o", "m.safetensors"))
    assert "m.safetensors is the CHECKPOINT this command reads: write to another path" in line
    line = one_line_error(run("sample", "run", "-n", 2, "--steps", 2, "-o", "m.safetensors"))
    assert "m.safetensors exists and is a difftk checkpoint export; writing a PNG picture there would replace it" in line


@pytest.mark.parametrize("args, expect", [
    (["compose", "--schedule", "linear", "--sampler", "ddim", "-o", "afile/x.toml"], "afile is a file, not a folder"),
    (["compose", "--schedule", "linear", "--sampler", "ddim", "-o", "adir"], "adir is a folder: give a file name for a pipeline file"),
    (["schedules", "--plot", "x" * 300 + "/s.png"], "is 300 bytes, and this file system allows 255"),
    (["new-plugin", "ddim"], "the distribution difftk-ddim is already installed"),
    (["new-plugin", "ancestral", "-o", "fresh"], "a sampler of that name is already registered"),
    (["new-plugin", "mine", "-o", "afile"], "afile is a file: a folder for a new package is written to a folder"),
    (["export", "mnist-cfg", "-o", "afile"], "afile exists and was not written by difftk"),
    (["sample", "mnist-cfg", "--sampler", "", "-o", "x.png"], "an empty sampler name"),
])
def test_bad_output_paths_are_one_line(toy, tmp_path, args, expect):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    assert expect in one_line_error(run(*args))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]  # nothing half-written left


def test_a_run_directory_name_too_long_is_one_line(toy):
    compose()
    assert "is 5000 bytes, and this file system allows 255" in one_line_error(train(out="x" * 5000))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_one_line(toy, tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    assert "cannot write ro/x.toml: Permission denied" in one_line_error(
        run("compose", "--schedule", "linear", "--sampler", "ddim", "-o", "ro/x.toml"))


# --- signals, the lock, runs that died early ------------------------------------------------------


@pytest.mark.parametrize("name, code", [("sigterm", 143), ("sighup", 129), ("sigint", 130)])
def test_stop_signals_leave_a_checkpoint_and_resume_exactly(toy, name, code):
    """SIGTERM (a scheduler, `timeout`) and SIGHUP (a closed terminal) stop a run like Ctrl-C: the
    step finishes, the checkpoint is written, and resuming gives the uninterrupted run's weights."""
    compose("stop.toml", "faulty", f"denoiser.fault={name}", "denoiser.fault_at=3")
    compose("calm.toml", "faulty")
    stopped = train(pipeline="stop.toml", steps=4)
    assert stopped.exit_code == code and "Traceback" not in stopped.output
    assert f"stopped by {name.upper()} at step 3" in stopped.stdout
    assert read_checkpoint("run").step == 3
    assert run("train", "stop.toml", "--data", "toy-images", "--steps", 4, "--out", "run", "--resume").exit_code == 0
    assert train(pipeline="calm.toml", out="calm").exit_code == 0
    a, b = read_checkpoint("run"), read_checkpoint("calm")
    assert a.step == b.step == 4
    assert all((a.tensors[k] == b.tensors[k]).all() for k in b.tensors if k.startswith(("model/", "ema/")))


def test_a_second_writer_on_a_live_run_is_refused(toy):
    compose()
    assert train(steps=2).exit_code == 0
    with RunPaths(__import__("pathlib").Path("run")).lock():  # a run writing it right now
        line = one_line_error(run("train", "p.toml", "--data", "toy-images", "--steps", 4, "--out", "run", "--resume"))
        assert "run is being written by another difftk train (pid " in line
        line = one_line_error(train(out="run"))
        assert "already holds a training run" in line or "being written by another difftk train" in line
    assert read_checkpoint("run").step == 2


def test_a_killed_writers_temporary_files_are_cleared(toy, tmp_path):
    compose()
    assert train(steps=2).exit_code == 0
    stray = tmp_path / "run" / ".checkpoint.safetensors.abc123.tmp"
    stray.write_bytes(b"x" * 100)
    assert run("train", "p.toml", "--data", "toy-images", "--steps", 3, "--out", "run", "--resume").exit_code == 0
    assert not stray.exists()


def test_a_run_that_died_before_its_first_checkpoint_starts_over(toy):
    compose()
    compose("nan.toml", "faulty", "denoiser.fault=nan", "denoiser.fault_at=1")
    one_line_error(train(pipeline="nan.toml"))
    assert not os.path.exists("run/checkpoint.safetensors")
    line = one_line_error(train("--resume"))
    assert "has no checkpoint.safetensors to resume from" in line and "drop --resume to start it over" in line
    result = train()
    assert result.exit_code == 0, result.output
    assert "stopped before its first checkpoint: starting it over" in result.stdout
    assert read_checkpoint("run").step == 4


# --- resume with changed settings -----------------------------------------------------------------


def test_resume_refuses_a_new_seed_and_says_what_else_changed(toy):
    compose()
    assert train(steps=2).exit_code == 0
    resume = ("train", "p.toml", "--data", "toy-images", "--steps", 3, "--out", "run", "--resume")
    line = one_line_error(run(*resume, "--seed", 7))
    assert "trained with --seed 0 and a resumed run keeps it" in line
    result = run(*resume, "--lr", "1e-4", "--batch-size", 16)
    assert result.exit_code == 0, result.output
    assert "resuming with changed settings: batch_size 64 → 16; lr 0.0002 → 0.0001" in result.stdout


def test_resume_refuses_guidance_that_was_not_trained(toy):
    compose()
    assert train(steps=2).exit_code == 0
    compose("cfg.toml", guidance="cfg")
    line = one_line_error(run("train", "cfg.toml", "--data", "toy-images", "--steps", 3, "--out", "run", "--resume"))
    assert "was trained with no guidance; the pipeline now has guidance 'cfg'" in line


# --- checkpoints are untrusted input --------------------------------------------------------------


def rewrite_metadata(path, change):
    """The safetensors file at ``path`` with its header metadata passed through ``change``."""
    raw = Path(path).read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    change(header["__metadata__"])
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + size:]


junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=True), st.text(max_size=4),
                 st.lists(st.one_of(st.integers(-2, 40), st.text(max_size=2)), max_size=5))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["shape", "kind", "num_classes", "class_names", "size", "name", "bounds", "options"]),
       value=junk)
def test_edited_dataset_metadata_is_one_line_or_works(toy, tmp_path, field, value):
    if not (tmp_path / "run" / "checkpoint.safetensors").exists():
        compose()
        assert train(steps=1).exit_code == 0
        assert run("export", "run", "-o", "clean.safetensors").exit_code == 0

    def change(meta):
        dataset = json.loads(meta["dataset"])
        dataset[field] = value
        meta["dataset"] = json.dumps(dataset)

    (tmp_path / "edited.safetensors").write_bytes(rewrite_metadata(tmp_path / "clean.safetensors", change))
    result = run("sample", "edited.safetensors", "-n", 2, "--steps", 2, "-o", "e.png")
    if result.exit_code != 0:
        assert "edited.safetensors" in one_line_error(result)


def test_a_shape_the_network_cannot_take_is_named(toy, tmp_path):
    compose()
    assert train(steps=1).exit_code == 0
    assert run("export", "run", "-o", "clean.safetensors").exit_code == 0

    def change(meta):
        dataset = json.loads(meta["dataset"])
        dataset["shape"] = [3, 8, 8]
        meta["dataset"] = json.dumps(dataset)

    (tmp_path / "e.safetensors").write_bytes(rewrite_metadata(tmp_path / "clean.safetensors", change))
    line = one_line_error(run("sample", "e.safetensors", "-n", 2, "--steps", 2, "-o", "e.png"))
    assert "metadata dataset.shape [3, 8, 8] does not fit the stored network" in line



def test_nan_weights_are_refused_with_one_line(toy, tmp_path):
    from safetensors.torch import load_file, safe_open, save_file

    compose()
    assert train(steps=1).exit_code == 0
    assert run("export", "run", "-o", "clean.safetensors").exit_code == 0
    tensors = load_file("clean.safetensors")
    with safe_open("clean.safetensors", "pt") as f:
        meta = f.metadata()
    first = next(k for k in tensors if k.startswith("ema/") and tensors[k].is_floating_point())
    tensors[first].view(-1)[0] = float("nan")
    save_file(tensors, "nan.safetensors", metadata=meta)
    line = one_line_error(run("sample", "nan.safetensors", "-n", 2, "--steps", 2, "-o", "n.png"))
    assert "1 of its" in line and "EMA weights are NaN or infinite" in line


def test_a_batch_larger_than_the_data_is_one_line(toy):
    compose()
    line = one_line_error(train("--batch-size", 100000, steps=1))
    assert "--batch-size 100000 is more than the" in line and "examples of the data: use at most" in line


def test_a_classifier_for_other_data_is_one_line():
    import difftk
    import torch
    from difftk.errors import IncompatibleError
    from difftk.testing import GaussianOracle

    schedule = difftk.create("schedule", "linear", T=50)
    oracle = GaussianOracle(schedule, shape=(1, 4, 4))
    points = torch.nn.Linear(2, 3)  # logits for 2-D points, not 1×4×4 images
    guided = difftk.create("guidance", "classifier", scale=1.0).wrap(oracle, schedule, classifier=lambda x, t: points(x))
    x, t, y = torch.zeros(2, 1, 4, 4), torch.full((2,), 0.5), torch.zeros(2, dtype=torch.long)
    with pytest.raises(IncompatibleError, match=r"cannot read this model's samples of shape \[1, 4, 4\]"):
        guided(x, t, cond=y)
    few = difftk.create("guidance", "classifier", scale=1.0).wrap(
        oracle, schedule, classifier=lambda x, t: x.flatten(1)[:, :2])
    with pytest.raises(IncompatibleError, match=r"gives \[2\] logits per sample, but guidance asks for class 5"):
        few(x, t, cond=torch.full((2,), 5))


def test_dataset_options_can_be_given_where_errors_send_the_user(toy, tmp_path):
    """image-folder's image_size and holdout are set with --data-option, as its errors say."""
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i, size in enumerate((8, 9, 8, 8, 8, 8)):
            Image.new("RGB", (size, size), (40 * i, 0, 0)).save(tmp_path / "imgs" / label / f"{i}.png")
    compose()
    line = one_line_error(run("train", "p.toml", "--data", "image-folder:imgs", "--steps", 1, "--out", "r0"))
    assert "give --data-option image_size=N" in line
    ok = run("train", "p.toml", "--data", "image-folder:imgs", "--data-option", "image_size=8", "--data-option",
             "holdout=0.2", "--steps", 1, "--batch-size", 4, "--out", "r1", "--sample-every", 0)
    assert ok.exit_code == 0, ok.output
    assert "did you mean 'image_size'" in one_line_error(run("train", "p.toml", "--data", "image-folder:imgs",
                                                             "--data-option", "image_sise=8", "--steps", 1, "--out", "r2"))
    assert "must be KEY=VALUE" in one_line_error(run("train", "p.toml", "--data", "mnist", "--data-option", "8",
                                                     "--steps", 1, "--out", "r3"))
    line = one_line_error(run("evaluate", "r1", "--metric", "sliced-wasserstein", "--data", "image-folder:imgs",
                              "--data-option", "image_size=8", "--data-option", "holdout=0.2"))
    assert "image-folder holds" in line or "measures" in line  # the data given was loaded, and is images
    assert "--data-option sets an option of --data" in one_line_error(
        run("evaluate", "r1", "--metric", "fid", "--data-option", "image_size=8"))
