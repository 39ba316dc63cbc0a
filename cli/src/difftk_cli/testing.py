"""What tests of the `difftk` command share, wherever they live (cli/tests/, tests/): running it in-process,
reading its one-line errors, and a small pipeline file to run it on.

The fixtures are a pytest plugin: the repository's root conftest.py names this module in
``pytest_plugins``, as :mod:`difftk.testing.pytest_plugin` serves the core's fixtures.
"""

import difftk.testing.toys as toys
import pytest
from click.testing import CliRunner, Result

from difftk_cli.main import cli


def run(*args) -> Result:
    """`difftk ARGS…` in this process (arguments may be paths or numbers)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result: Result, code: int = 2) -> str:
    """The result failed with ``code`` and said why on exactly one stderr line, with no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


@pytest.fixture
def toy_pipeline(register_plugin, tmp_path, monkeypatch):
    """The toy plugins registered, the working directory a fresh tmp_path, and there ``p.toml``:
    linear schedule (T = 50), DDIM, the tiny denoiser and L_simple. Returns tmp_path."""
    assert register_plugin(toys, "toys")
    monkeypatch.chdir(tmp_path)
    result = run("compose", "--schedule", "linear", "--sampler", "ddim", "--denoiser", "tiny", "--objective", "simple",
                 "--set", "schedule.T=50", "-o", "p.toml")
    assert result.exit_code == 0, result.output
    return tmp_path
