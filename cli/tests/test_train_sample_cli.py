"""`difftk train` and `difftk sample`: a run end to end, resume, Ctrl-C, NaN, and bad input."""

import subprocess
import sys
from pathlib import Path

import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.checkpoint.files import read_checkpoint
from difftk.testing import plugin_host
from difftk_cli.testing import one_line_error, run
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

DIFFTK = str(Path(sys.executable).with_name("difftk"))




@pytest.fixture
def toy(register_plugin, tmp_path, monkeypatch):
    assert register_plugin(toys, "toys")
    monkeypatch.chdir(tmp_path)


def compose(path="p.toml", denoiser="tiny", *sets):
    args = ["compose", "--schedule", "linear", "--sampler", "ddim", "--denoiser", denoiser, "--objective", "simple",
            "--set", "schedule.T=50", *[a for s in sets for a in ("--set", s)], "-o", path]
    assert run(*args).exit_code == 0
    return path


def train(*extra, data="toy-images", steps=6, out="run", pipeline="p.toml"):
    return run("train", pipeline, "--data", data, "--steps", steps, "--out", out, "--sample-steps", 5, *extra)


def test_train_then_sample_images(toy, tmp_path):
    compose()
    result = train("--sample-every", 3, "--checkpoint-every", 4)
    assert result.exit_code == 0, result.output
    assert "denoiser 'tiny': in_channels=1, num_classes=2 (filled from the data)" in result.stdout
    assert "step 4: checkpoint → run/checkpoint.safetensors" in result.stdout
    assert "done: step 6" in result.stdout and "difftk sample run/checkpoint.safetensors" in result.stdout
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["step_000003.png", "step_000006.png"]
    assert read_checkpoint("run/checkpoint.safetensors").step == 6
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 1  # log_every 50: the last step only

    result = run("sample", "run/checkpoint.safetensors", "-n", 10, "-o", "grid.png", "--steps", 5,
                 "--label", "vertical", "--trajectory", "traj.png")
    assert result.exit_code == 0, result.output
    assert "wrote grid.png: 10 samples (3×4 grid) from step 6; sampler ddim (spacing=linspace, times=None, clip_x0=None" in result.stdout
    assert png_size("grid.png") == (2 + 4 * 10, 2 + 3 * 10)
    assert "wrote traj.png: predicted x₀ at t = 1.00" in result.stdout
    assert png_size("traj.png")[0] == 5 * 48  # 5 steps, each column enlarged to 48 px

    result = run("sample", "run", "-n", 4, "-o", "anc.png", "--sampler", "ancestral", "--steps", 5,
                 "--set", "sampler.variance=beta_tilde", "--set", "sampler.clip_x0=none")
    assert result.exit_code == 0, result.output
    assert "sampler ancestral (spacing=linspace, times=None, clip_x0=None, variance=beta_tilde)" in result.stdout


def test_train_then_sample_points(toy):
    compose()
    assert train(data="toy-points", steps=3).exit_code == 0
    result = run("sample", "run", "-n", 50, "-o", "pts.png", "--steps", 4, "--trajectory", "t.png")
    assert result.exit_code == 0, result.output
    assert "(scatter plot)" in result.stdout and png_size("pts.png") == (256, 256)


def test_resume_continues_and_keeps_the_runs_options(toy):
    compose()
    assert train("--batch-size", 4, steps=3).exit_code == 0
    result = train("--resume", steps=5)
    assert result.exit_code == 0, result.output
    assert "resuming at step 3 of 5" in result.stdout
    ckpt = read_checkpoint("run/checkpoint.safetensors")
    assert ckpt.step == 5 and ckpt.train_config["batch_size"] == 4
    result = train("--resume", steps=5)
    assert result.exit_code == 0 and "already at step 5" in result.stdout


def test_existing_run_is_not_overwritten(toy, tmp_path):
    compose()
    assert train(steps=2).exit_code == 0
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    line = one_line_error(train(steps=4))
    assert "run already holds a training run (checkpoint.safetensors, log.jsonl, samples/): continue it with --resume" in line
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


def test_nan_loss_stops_with_one_line_and_keeps_the_checkpoint(toy):
    compose("nan.toml", "faulty", "denoiser.fault=nan", "denoiser.fault_at=5")
    line = one_line_error(train("--checkpoint-every", 2, "--sample-every", 0, pipeline="nan.toml", steps=10))
    assert "the loss is nan at step 5: training stopped; run/checkpoint.safetensors (step 4) is kept" in line
    assert read_checkpoint("run/checkpoint.safetensors").step == 4


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_continue(toy):
    compose("int.toml", "faulty", "denoiser.fault=sigint", "denoiser.fault_at=3")
    result = train("--sample-every", 0, pipeline="int.toml", steps=10)
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert "stopped by SIGINT at step 3: checkpoint → run/checkpoint.safetensors" in result.stdout
    assert "continue with: difftk train int.toml --steps 10 --out run --resume" in result.stdout  # the run keeps its data
    assert read_checkpoint("run/checkpoint.safetensors").step == 3


def png_size(path):
    with Image.open(path) as img:
        return img.size


def _array_file(path, data, labels=None):
    save_file({"data": data} | ({"labels": labels} if labels is not None else {}), path)
    return f"array-file:{path}"


@pytest.mark.parametrize("args, expect", [
    (["--data", "toy-imgs"], "unknown dataset 'toy-imgs'; did you mean 'toy-images'?"),
    (["--data", "array-file:missing.safetensors"], "missing.safetensors does not exist"),
    (["--data", "toy-points:/data"], "dataset 'toy-points' does not read from a path: use --data toy-points"),
    (["--data", ":x"], "--data ':x' names no dataset"),
    (["--steps", "0"], "Invalid value for '--steps': 0 is not in the range x>=1."),
    (["--lr", "2"], "Invalid value for '--lr': 2.0 is not in the range 0<x<=1."),
    (["--ema-decay", "1"], "Invalid value for '--ema-decay': 1.0 is not in the range 0<=x<1."),
    (["--resume"], "run has no checkpoint.safetensors to resume from: drop --resume"),
    (["--device", "gpu7"], "--device 'gpu7' is not a device"),
])
def test_bad_train_input_is_one_line(toy, args, expect):
    compose()
    flags = [a for a in args if a == "--resume"]
    pairs = [a for a in args if a != "--resume"]
    options = {"--data": "toy-images", "--steps": "2"} | dict(zip(pairs[::2], pairs[1::2], strict=True))
    line = one_line_error(run("train", "p.toml", *[x for kv in options.items() for x in kv], *flags, "--out", "run"))
    assert expect in line, line
    assert not Path("run").exists()


def test_image_size_the_model_cannot_take(toy):
    compose("sized.toml", "sized")
    data = _array_file("ten.safetensors", torch.zeros((4, 1, 10, 10), dtype=torch.uint8))
    line = one_line_error(run("train", "sized.toml", "--data", data, "--steps", 2, "--out", "run"))
    assert "ten gives in_channels=1, image_size=10, num_classes=0, which denoiser 'sized' cannot take: " \
           "image_size=10 must be a multiple of 4" in line
    assert not Path("run").exists()


def test_pipeline_problems_are_one_line(toy):
    assert "no such pipeline file" in one_line_error(run("train", "nope.toml", "--data", "toy-images", "--steps", 1, "--out", "r"))
    assert run("compose", "--schedule", "linear", "--sampler", "ddim", "-o", "bare.toml").exit_code == 0
    line = one_line_error(run("train", "bare.toml", "--data", "toy-images", "--steps", 1, "--out", "r"))
    assert "bare.toml has no denoiser, so it cannot be trained: compose it with --denoiser NAME" in line


@pytest.fixture
def trained(toy):
    compose()
    assert train("--batch-size", 4, steps=2,
                 data=_array_file("plain.safetensors", torch.zeros((4, 1, 8, 8), dtype=torch.uint8))).exit_code == 0
    assert train(steps=2, out="labelled").exit_code == 0
    return Path("run/checkpoint.safetensors")


@pytest.mark.parametrize("args, expect", [
    (["--label", "3"], "--label 3: the model is unconditional"),
    (["--steps", "51"], "--steps 51 is more than the model's schedule has (T=50): use --steps 1..50"),
    (["--sampler", "ddimm"], "unknown sampler 'ddimm'; did you mean 'ddim'?"),
    (["--set", "denoiser.hidden=3"], "only sampler and guidance options can be set here (the rest is fixed by the checkpoint)"),
    (["--set", "sampler.eta=3"], "sampler 'ddim': option eta=3.0 is out of range: expected 0 ≤ eta ≤ 1"),
    (["-n", "0"], "Invalid value for '-n' / '--num': 0 is not in the range 1<=x<=1000000."),
])
def test_bad_sample_input_is_one_line(trained, args, expect):
    line = one_line_error(run("sample", trained, "-o", "out.png", *args))
    assert expect in line, line
    assert not Path("out.png").exists()


def test_label_out_of_range(trained):
    line = one_line_error(run("sample", "labelled", "-o", "out.png", "--label", "2"))
    assert "--label 2 is out of range: the model has classes 0..1" in line


def test_broken_checkpoints_are_one_line(trained):
    data = trained.read_bytes()
    Path("cut.safetensors").write_bytes(data[: len(data) // 2])
    assert "cut.safetensors is not a difftk checkpoint (corrupt or truncated)" in one_line_error(
        run("sample", "cut.safetensors", "-o", "x.png"))
    Path("junk.safetensors").write_bytes(b"\x00" * 3)
    assert "corrupt or truncated): the file is only 3 bytes long" in one_line_error(run("sample", "junk.safetensors", "-o", "x.png"))
    assert "no such checkpoint file" in one_line_error(run("sample", "absent.safetensors", "-o", "x.png"))
    assert not Path("x.png").exists()


def test_checkpoint_needing_a_plugin_that_is_not_installed(trained):
    with plugin_host():  # installed plugins only: "toys" is gone
        line = one_line_error(run("sample", trained, "-o", "x.png"))
    assert line == f"error: {trained} needs denoiser 'tiny' from plugin 'toys', which is not installed"


@pytest.mark.skipif(not Path(DIFFTK).exists(), reason="the difftk script is not installed next to this Python")
def test_errors_from_the_real_command_are_one_line(tmp_path):
    Path(tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    pipeline = tmp_path / "p.toml"
    subprocess.run([DIFFTK, "compose", "--schedule", "linear", "--sampler", "ddim", "-o", pipeline], check=True,
                   capture_output=True)
    cases = [
        (["sample", tmp_path / "junk.safetensors", "-o", tmp_path / "x.png"], "is not a difftk checkpoint (corrupt or truncated)"),
        (["train", pipeline, "--data", "no-such-data", "--steps", "1", "--out", tmp_path / "r"], "unknown dataset 'no-such-data'"),
        (["train", pipeline, "--data", "x", "--steps", "-1", "--out", tmp_path / "r"], "Invalid value for '--steps'"),
    ]
    for args, expect in cases:
        proc = subprocess.run([DIFFTK, *map(str, args)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert expect in proc.stderr
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "r").exists()


def test_an_export_may_carry_another_default_sampler(toy):
    """`difftk export --set sampler.OPTION=VALUE` (or --sampler NAME) writes the run's weights unchanged with that
    sampler in the exported pipeline, so `difftk sample` and `difftk.load` use it by default; an option the sampler
    lacks is one line, and no file is written."""
    compose()
    assert train("--sample-every", 0).exit_code == 0
    assert run("export", "run", "-o", "plain.safetensors").exit_code == 0
    result = run("export", "run", "--set", "sampler.spacing=trailing", "-o", "trailing.safetensors")
    assert result.exit_code == 0, result.output
    plain, trailing = safe_open("plain.safetensors", "pt"), safe_open("trailing.safetensors", "pt")
    names = sorted(plain.keys())
    assert names == sorted(trailing.keys())
    assert all(torch.equal(plain.get_tensor(k), trailing.get_tensor(k)) for k in names)
    assert difftk.load("plain.safetensors").sampler().spacing == "linspace"
    assert difftk.load("trailing.safetensors").sampler().spacing == "trailing"
    assert "sampler ddim (spacing=trailing" in run("sample", "trailing.safetensors", "-n", 2, "--steps", 3,
                                                   "-o", "t.png").stdout
    result = run("export", "run", "--sampler", "ancestral", "-o", "ancestral.safetensors")
    assert result.exit_code == 0 and difftk.load("ancestral.safetensors").pipeline.spec["sampler"].name == "ancestral"
    line = one_line_error(run("export", "run", "--set", "sampler.no_such_option=1", "-o", "bad.safetensors"))
    assert "no_such_option" in line
    assert not Path("bad.safetensors").exists()
