"""What the CLI tests share: running `difftk` in-process and reading its one-line errors."""

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
