"""Error lines say what was given, once (issue 31, item 14): no markup, no emoji codes, no repeats."""

import errno

import pytest
import torch
from click.testing import CliRunner
from difftk.data.images import picture, save_png
from difftk.errors import OutputError
from difftk.runtime import files
from difftk_cli.main import cli


def error_line(*argv: str) -> str:
    result = CliRunner().invoke(cli, list(argv), catch_exceptions=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("given", [":-1:", ":smile:", "[bold]x[/]", "[red]"])
def test_what_the_user_typed_is_printed_as_typed(given):
    line = error_line("compose", "--schedule", given, "--sampler", "ddim")
    assert f"unknown schedule '{given}'" in line
    assert "👎" not in line and "😄" not in line


def test_an_empty_sampler_list_names_the_samplers():
    assert "--sampler '' names no sampler: give names, comma-separated" in error_line(
        "compare", "nope", "--metric", "fid", "--sampler", "", "-o", "out")


def test_a_plugin_name_too_long_for_a_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "is 329 characters: give at most 64" in error_line("new-plugin", "a" * 329)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_names_its_file_once(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.tempfile, "mkstemp", full)
    with pytest.raises(OutputError) as err:
        save_png(picture(torch.zeros(1, 1, 4, 4), "image", None), tmp_path / "x.png")
    assert str(err.value) == f"cannot write {tmp_path / 'x.png'}: No space left on device"
