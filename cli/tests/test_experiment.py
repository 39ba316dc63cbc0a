"""The [training] section of an experiment file: `difftk train exp.toml` alone reruns a run bit for
bit, options given on the command line override it, and a bad key or value is one line."""

import json

import difftk.testing.toys as toys
import pytest
import torch
from click.testing import CliRunner
from difftk.checkpoint.files import read_checkpoint
from difftk_cli.main import cli
from safetensors.torch import load_file

#: every setting away from its default, so that a file whose settings were ignored trains another run
SETTINGS = {"data": "toy-points", "steps": 6, "batch_size": 8, "lr": 3e-3, "warmup": 2, "ema_decay": 0.9, "seed": 7,
            "sample_every": 0, "log_every": 2, "checkpoint_every": 3, "grad_clip": 0.5}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def error_line(result) -> str:
    """The one line a refused command printed (no traceback)."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value) if isinstance(value, str | list) else repr(value)


@pytest.fixture
def experiment(register_plugin, tmp_path, monkeypatch):
    """``write(**settings)``: exp.toml in a fresh working directory, the toy pipeline (linear
    schedule, T = 50, DDIM, the tiny denoiser, L_simple) with those settings under [training]."""
    assert register_plugin(toys, "toys")
    monkeypatch.chdir(tmp_path)
    result = run("compose", "--schedule", "linear", "--sampler", "ddim", "--denoiser", "tiny", "--objective", "simple",
                 "--set", "schedule.T=50", "-o", "p.toml")
    assert result.exit_code == 0, result.output

    def write(**settings):
        lines = ["", "[training]", *(f"{key} = {toml_value(value)}" for key, value in settings.items())]
        (tmp_path / "exp.toml").write_text((tmp_path / "p.toml").read_text() + "\n".join(lines) + "\n")
        return "exp.toml"

    return write


def weights(out: str) -> dict[str, torch.Tensor]:
    return load_file(f"{out}/checkpoint.safetensors")


def losses(out: str) -> list[tuple[int, float]]:
    with open(f"{out}/log.jsonl") as log:
        return [(r["step"], r["loss"]) for r in map(json.loads, log) if "loss" in r]


def test_the_file_alone_trains_the_run_its_flags_would_bit_for_bit(experiment):
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in SETTINGS.items()]
    assert run("train", "p.toml", *flags, "--out", "by-flags").exit_code == 0
    result = run("train", experiment(**SETTINGS, out="by-file"))
    assert result.exit_code == 0, result.output
    a, b = weights("by-flags"), weights("by-file")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses("by-flags") == losses("by-file") and len(losses("by-file")) == 3
    assert read_checkpoint("by-file/checkpoint.safetensors").train_config["lr"] == SETTINGS["lr"]


def test_an_option_on_the_command_line_overrides_the_file(experiment):
    path = experiment(**SETTINGS, out="from-file")
    result = run("train", path, "--steps", "4", "--out", "from-flag")
    assert result.exit_code == 0, result.output
    config = read_checkpoint("from-flag/checkpoint.safetensors").train_config
    assert (config["steps"], config["seed"], config["batch_size"]) == (4, SETTINGS["seed"], SETTINGS["batch_size"])
    assert losses("from-flag")[-1][0] == 4


def test_without_steps_anywhere_the_command_says_where_to_give_them(experiment):
    line = error_line(run("train", experiment(data="toy-points", out="o")))
    assert "--steps N is needed" in line and "[training] section of exp.toml" in line


@pytest.mark.parametrize(("settings", "said"), [
    ({"batchsize": 8}, "unknown option 'batchsize'"),
    ({"lr": -1.0}, "lr = -1.0"),
    ({"lr_schedule": "cosin"}, "lr_schedule = 'cosin'"),
    ({"resume": True}, "--resume continues a run"),
    ({"eval_metric": {"a": 1}}, "must be a value or a list of values"),
])
def test_a_bad_key_or_value_in_the_section_is_one_line_naming_it(experiment, settings, said):
    line = error_line(run("train", experiment(data="toy-points", steps=2, out="o", **settings)))
    assert said in line and "exp.toml [training]" in line


def test_a_section_that_is_not_a_table_is_one_line(experiment, tmp_path):
    (tmp_path / "bad.toml").write_text("training = 3\n" + (tmp_path / "p.toml").read_text())
    assert "must be a table" in error_line(run("train", "bad.toml"))
