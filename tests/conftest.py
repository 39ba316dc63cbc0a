"""Fixtures shared by the CLI tests."""

import difftk.testing.toys as toys
import pytest
from cli_runner import run


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
