"""What a newcomer meets first: messages that say what happened and what to do."""

import os
import subprocess
import sys

import difftk
from difftk_cli.testing import one_line_error, run

DIFFTK = os.path.join(os.path.dirname(sys.executable), "difftk")


def test_click_errors_and_ours_share_one_style():
    for argv in (["nosuch"], ["--bogus"], ["sample"]):
        result = subprocess.run([DIFFTK, *argv], capture_output=True, text=True, timeout=120)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "Error:" not in result.stderr and "Usage:" not in result.stderr


def test_a_missing_checkpoint_says_what_would_do(tmp_path):
    line = one_line_error(run("export", tmp_path / "runs" / "mnist", "-o", tmp_path / "m.safetensors"))
    assert "no such checkpoint file, run directory or shipped model" in line
    assert "`difftk train --out`" in line and "`difftk plugins` lists the shipped models" in line


def test_the_summary_names_the_classes_the_grid_shows(tmp_path):
    result = run("sample", "mnist-cfg", "-n", 16, "--steps", 2, "--guidance", "cfg", "-o", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    assert "classes 0–3 one per row" in result.stdout  # a 4×4 grid: rows 0, 1, 2, 3
    result = run("sample", "mnist-cfg", "-n", 4, "--steps", 2, "--label", 7, "-o", tmp_path / "s.png")
    assert "class 7" in result.stdout and "classes" not in result.stdout


def test_every_sampler_states_its_default_steps_and_none_is_all_of_T():
    for name in difftk.available("sampler"):
        steps = getattr(type(difftk.create("sampler", name)), "default_steps", None)
        assert isinstance(steps, int) and 1 <= steps <= 250, name  # documented, and not all 1,000 grid steps
    result = run("plugins")
    assert "ddim (50 steps)" in result.stdout and "ode (adaptive)" in result.stdout


def test_the_default_denoiser_is_the_shipped_models_size():
    """The defaults a newcomer gets are the size of the shipped model's network (read from its checkpoint,
    not a number written here): what the docs' timings of "the default unet-attn" measure."""
    net = difftk.create("denoiser", "unet-attn", num_classes=10)
    shipped = difftk.load("mnist-cfg").denoiser
    assert type(net) is type(shipped) and net.config.base_channels == shipped.config.base_channels
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in shipped.parameters())
