"""The `difftk` command: plugins, compose, and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import difftk
from click.testing import CliRunner
from difftk_cli.main import cli
from difftk_cli.testing import one_line_error

DIFFTK = str(Path(sys.executable).with_name("difftk"))


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_plugins_table():
    result = run("plugins")
    assert result.exit_code == 0
    for word in ("ddpm", "ddim", "linear", "quadratic", "sigmoid", "ancestral", "simple", difftk.__version__):
        assert word in result.output


def test_plugins_shows_default_steps_beside_samplers_only():
    table = run("plugins").output
    assert "schedule: edm " in table and "schedule: edm (" not in table and "sampler: edm (18 steps)" in table


def test_plugins_name_shows_each_components_options_with_help_and_defaults():
    result = run("plugins", "ddim")
    assert result.exit_code == 0, result.output
    assert "sampler ddim (plugin ddim" in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("│ eta "))
    assert "float" in row and "0.0" in row and "0 ≤ x ≤ 1" in row and "stochasticity" in row
    every = run("plugins", "edm").output  # a name three kinds share: all three
    assert all(f"{kind} edm (plugin edm" in every for kind in ("schedule", "objective", "sampler"))
    assert "did you mean 'ddim'" in one_line_error(run("plugins", "dimd"))


def test_plugins_output_to_a_file_is_not_cut_to_80_columns():
    lines = run("plugins", "ddim").output.splitlines()
    assert max(map(len, lines)) > 100  # help texts on one row, not folded into an 80-column table
    assert any("(σ spaced with ρ = 7) or logsnr (evenly in log-SNR)" in line for line in lines)


def test_plugins_json():
    rows = {r["name"]: r for r in json.loads(run("plugins", "--json").output)}
    assert rows["ddpm"]["components"]["schedule"] == ["linear", "quadratic", "sigmoid"]
    assert rows["ddim"]["components"] == {"sampler": ["ddim"]}
    assert rows["ddpm"]["status"] == "loaded"
    eta = next(o for o in rows["ddim"]["options"]["sampler"]["ddim"] if o["name"] == "eta")
    assert eta == {"name": "eta", "type": "float", "default": 0.0, "required": False, "ge": 0.0, "le": 1.0,
                   "help": "stochasticity: 0 deterministic DDIM, 1 DDPM-like"}


def test_compose_writes_a_file_that_reads_back_the_same(tmp_path):
    out = tmp_path / "p.toml"
    result = run("compose", "--schedule", "linear", "--sampler", "ddim", "--set", "sampler.eta=0.3", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "schedule: linear" in result.output and "eta = 0.3" in result.output
    spec = difftk.PipelineSpec.load(out)
    assert spec == difftk.compose(schedule="linear", sampler={"name": "ddim", "options": {"eta": 0.3}}).spec
    again = run("compose", "--from", str(out))
    assert again.exit_code == 0 and again.output.replace(f" → {out}", "").split("wrote")[0] == result.output.replace(f" → {out}", "").split("wrote")[0]
    over = run("compose", "--from", str(out), "--set", "sampler.spacing=trailing")
    assert "spacing = 'trailing'" in over.output and "eta = 0.3" in over.output


def _stderr_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_mistyped_name_is_one_line_with_a_suggestion():
    result = run("compose", "--schedule", "linaer", "--sampler", "ddim")
    assert result.exit_code == 2
    assert "did you mean 'linear'" in _stderr_line(result)


def test_bad_option_and_set_syntax():
    assert "0 ≤ eta ≤ 1" in _stderr_line(run("compose", "--schedule", "linear", "--sampler", "ddim", "--set", "sampler.eta=7"))
    assert "is not KIND.OPTION=VALUE" in _stderr_line(run("compose", "--schedule", "linear", "--sampler", "ddim", "--set", "eta"))
    assert "needs a sampler" in _stderr_line(run("compose", "--schedule", "linear"))


def test_not_installed_components():
    line = _stderr_line(run("compose", "--schedule", "laplace", "--sampler", "ddim", "--guidance", "nosuch"))
    assert "schedule 'laplace'" in line and "guidance 'nosuch'" in line


def test_real_command_prints_no_traceback(tmp_path):
    proc = subprocess.run([DIFFTK, "compose", "--schedule", "linaer", "--sampler", "ddim"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "did you mean 'linear'" in proc.stderr
    ok = subprocess.run([DIFFTK, "compose", "--schedule", "linear", "--sampler", "ddim", "-o", str(tmp_path / "p.toml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and (tmp_path / "p.toml").exists()


def test_skipped_plugin_is_one_warning_line_and_strict_fails(tmp_path):
    """A broken plugin on the path: reported in one line; the command still works; --strict-plugins fails."""
    pkg = tmp_path / "site"
    (pkg / "brokenplug-0.1.dist-info").mkdir(parents=True)
    (pkg / "brokenplug-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (pkg / "brokenplug-0.1.dist-info" / "entry_points.txt").write_text("[difftk]\nbroken = brokenplug\n")
    (pkg / "brokenplug.py").write_text("raise ImportError('needs a library that is missing')\n")
    env = {**os.environ, "PYTHONPATH": str(pkg)}
    proc = subprocess.run([DIFFTK, "plugins"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    assert 'plugin "broken" skipped: import failed: ImportError: needs a library that is missing' in proc.stderr
    assert "Traceback" not in proc.stderr and "ddim" in proc.stdout
    strict = subprocess.run([DIFFTK, "--strict-plugins", "plugins"], capture_output=True, text=True, env=env)
    assert strict.returncode == 2 and "strict mode" in strict.stderr and "Traceback" not in strict.stderr
