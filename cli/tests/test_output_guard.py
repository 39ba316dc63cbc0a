"""Every output of every command goes through one guard, before any work (issue 31, items 1–2).

The test enumerates the CLI: each command must be an ``options.Command`` and each option or
argument that names an output must be an ``options.OutputPath``; each such output is then driven
through the guard's cases: under a file, a name too long, a link loop, /proc, a full disk, a file or
folder that difftk did not write for that purpose, and an input of the same command. Every input
is missing ("nope"), so a command that did any work before checking its output would answer about
the input instead; the user's file must come out byte for byte. A new command, or a new output
option, that skips the guard fails here.
"""

import os
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from difftk.runtime import files
from difftk.runtime.files import FOLDERS
from difftk_cli.main import cli
from difftk_cli.options import Command, OutputPath

#: each command with every input missing; the output under test is appended, the others given fresh paths
ARGV = {
    "compare": ["compare", "nope", "--metric", "fid"],
    "compose": ["compose", "--schedule", "linear", "--sampler", "ddim", "--from", "nope.toml"],
    "evaluate": ["evaluate", "nope", "--metric", "fid"],
    "export": ["export", "nope"],
    "new-plugin": ["new-plugin", "my-sampler"],
    "plot": ["plot", "nope"],
    "plugins": ["plugins"],
    "sample": ["sample", "nope", "--init", "nope.png"],
    "schedules": ["schedules"],
    "train": ["train", "nope.toml", "--data", "mnist", "--steps", "1", "--init", "nope"],
    "train-classifier": ["train-classifier", "nope", "--data", "mnist", "--steps", "1"],
}
#: the input of each command that the "an input" case points an output at (its first path argument)
INPUT_AT = {"compare": 1, "compose": 6, "evaluate": 1, "export": 1, "plot": 1, "sample": 1, "train": 1,
            "train-classifier": 1}
#: a suffix each purpose's file names take
SUFFIX = {"picture": ".png", "export": ".safetensors", "classifier": ".safetensors", "pipeline": ".toml",
          "results": ".json", "samples": ".png"}
#: words in an option's help that say it names something the command writes
WRITES = re.compile(r"\b(write|writes|here)\b", re.IGNORECASE)


def outputs(command: click.Command) -> list[click.Parameter]:
    return [p for p in command.params if isinstance(p.type, OutputPath)]


def _flag(param: click.Parameter) -> str | None:
    return None if isinstance(param, click.Argument) else param.opts[0]


def test_every_command_guards_every_output_it_names():
    assert set(ARGV) == set(cli.commands), "add each new command to ARGV, with every input missing"
    for name, command in cli.commands.items():
        assert isinstance(command, Command), f"{name} is not a difftk_cli.options.Command: its outputs go unguarded"
        for param in command.params:
            looks_like_output = isinstance(param.type, click.Path) and WRITES.search(getattr(param, "help", "") or "")
            if looks_like_output or param.name in ("output", "out", "out_dir", "out_file"):
                assert isinstance(param.type, OutputPath), f"{name} {param.opts}: an output without OutputPath"


def _purpose(command, param) -> str:
    return param.type.purpose_for({"fmt": "difftk" if command.name == "export" else None, "output": "x.png"})


CASES = [(name, param.name) for name, command in sorted(cli.commands.items()) for param in outputs(command)]


def _argv(name: str, param_name: str, value: str, tmp: Path) -> list[str]:
    command = cli.commands[name]
    argv = list(ARGV[name])
    for param in outputs(command):  # the other outputs a command requires get paths that are fine
        if param.name != param_name and param.required:
            argv += [_flag(param), str(tmp / f"fresh-{param.name}{SUFFIX.get(_purpose(command, param), '')}")]
    param = command.params[[p.name for p in command.params].index(param_name)]
    if _flag(param) is None:
        argv.insert(1, value)
    else:
        argv += [_flag(param), value]
    return argv


def _run(argv: list[str]):
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, result.output)
    assert "nope" not in lines[0], f"{argv}: the input was read before the output was checked: {lines[0]}"
    return lines[0]


def _foreign(path: Path, folder: bool, purpose: str) -> Path:
    """A user's own work where the output goes: a file, or a folder holding the file difftk would replace."""
    if not folder:
        path.write_bytes(b"the user's own work\n")
        return path
    path.mkdir()
    inside = {"run": "log.jsonl", "compare": "compare.csv", "report": "index.html", "sample-folder": "000000.png"}
    (path / inside.get(purpose, "notes.txt")).write_bytes(b"the user's own work\n")
    return path / inside.get(purpose, "notes.txt")


@pytest.mark.parametrize("name, param_name", CASES)
def test_each_output_is_checked_before_the_work(name, param_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = cli.commands[name]
    param = next(p for p in outputs(command) if p.name == param_name)
    purpose = _purpose(command, param)
    folder = purpose in FOLDERS
    suffix = "" if folder else SUFFIX.get(purpose, "")
    Path("afile").write_text("x")
    os.symlink("loop", "loop")
    said = {
        "under a file": _run(_argv(name, param_name, f"afile/out{suffix}", tmp_path)),
        "too long": _run(_argv(name, param_name, "x" * 300 + suffix, tmp_path)),
        "link loop": _run(_argv(name, param_name, f"loop/out{suffix}", tmp_path)),
        "/proc": _run(_argv(name, param_name, f"/proc/difftk-out{suffix}", tmp_path)),
    }
    assert "afile is a file, not a folder" in said["under a file"]
    assert "bytes, and this file system allows" in said["too long"]
    assert "symbolic links" in said["link loop"]
    assert "cannot write /proc/difftk-out" in said["/proc"] and "(in /proc)" in said["/proc"]
    work = _foreign(tmp_path / f"mine{suffix}", folder, purpose)
    before = work.read_bytes()
    line = _run(_argv(name, param_name, str(tmp_path / f"mine{suffix}"), tmp_path))
    assert "choose another path" in line and work.read_bytes() == before
    with monkeypatch.context() as m:  # a full disk is refused before the work, not after it
        m.setattr(files.os, "statvfs", lambda p: os.statvfs_result((4096, 4096, 100, 0, 0, 10, 0, 0, 0, 255)))
        assert "is full (0 bytes free)" in _run(_argv(name, param_name, f"new{suffix}", tmp_path))
    if name in INPUT_AT and not folder:  # an output that is an input of the same command
        argv = _argv(name, param_name, str(work), tmp_path)
        argv[INPUT_AT[name]] = str(work)
        assert "this command reads: write to another path" in _run(argv)
        assert work.read_bytes() == before


def test_a_folder_output_is_not_left_behind_when_its_writes_fail(tmp_path):
    target = tmp_path / "cmp"
    with pytest.raises(OSError), files.output_folder(target):
        (target / "compare.csv").write_text("checkpoint,\n")
        raise OSError(28, "No space left on device")
    assert not target.exists()
