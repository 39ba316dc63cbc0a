"""`difftk plot RUN … -o curves.png`: the loss and the logged metrics of several runs, runs that
differ only by seed pooled (the pieces it reads runs with: core/tests/training/test_history.py)."""

import pytest
from difftk.training.history import read_run, replicate_groups
from difftk_cli.plots import curve_quantities, draw_curves
from difftk_cli.testing import one_line_error, run
from PIL import Image


@pytest.fixture
def runs(toy_pipeline):
    """Three runs of toy points: seeds 0 and 1 of one experiment, and seed 0 at another learning rate."""
    tmp_path = toy_pipeline
    for out, extra in (("a0", ()), ("a1", ("--seed", 1)), ("b0", ("--lr", 1e-3))):
        result = run("train", "p.toml", "--data", "toy-points", "--steps", 6, "--out", out, "--sample-every", 0,
                     "--sample-steps", 3, "--log-every", 1, "--eval-every", 3, "--eval-metric", "sliced-wasserstein",
                     "--eval-n", 20, *extra)
        assert result.exit_code == 0, result.output
    return tmp_path


def test_plot_draws_one_panel_per_quantity_and_pools_the_seeds(runs):
    result = run("plot", "a0", "a1", "b0", "-o", "curves.png")
    assert result.exit_code == 0, result.output
    assert "wrote curves.png: 2 panel(s) (loss, sliced-wasserstein) for 3 run(s); 1 group(s)" in result.stdout
    with Image.open("curves.png") as image:
        assert image.format == "PNG" and image.size[0] > 600
    logs = [read_run(r) for r in ("a0", "a1", "b0")]
    groups = replicate_groups(logs)
    assert [[r.root.name for r in g] for g in groups] == [["a0", "a1"], ["b0"]]
    fig = draw_curves(groups)
    assert len(fig.axes) == len(curve_quantities(groups)) == 2
    loss_axes = fig.axes[0]
    # a0 and a1: raw and smoothed each, and their mean; b0: raw and smoothed
    assert len(loss_axes.lines) == 2 * 2 + 1 + 2
    assert [t.get_text() for t in loss_axes.get_legend().get_texts()] == ["a0, a1 (seeds 0, 1), mean", "b0"]


def test_plot_of_one_run_reads_its_log_file_too(runs):
    result = run("plot", "b0/log.jsonl", "-o", "one.png", "--smooth", 0)
    assert result.exit_code == 0, result.output
    assert "2 panel(s)" in result.stdout and "group" not in result.stdout


def test_plot_errors_are_one_line(runs, tmp_path):
    assert "nowhere: no such run directory" in one_line_error(run("plot", "nowhere", "-o", "c.png"))
    (tmp_path / "empty").mkdir()
    assert "empty has no log.jsonl" in one_line_error(run("plot", "a0", "empty", "-o", "c.png"))
    assert "is a file: give a run directory" in one_line_error(run("plot", "p.toml", "-o", "c.png"))
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "log.jsonl").write_text("{half a line\n")
    assert "holds no loss or metric records yet" in one_line_error(run("plot", "blank", "-o", "c.png"))
    assert not (tmp_path / "c.png").exists()


def test_a_run_without_a_checkpoint_stands_alone(runs, tmp_path):
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "log.jsonl").write_text((tmp_path / "a0" / "log.jsonl").read_text())
    groups = replicate_groups([read_run("a0"), read_run("copy")])
    assert len(groups) == 2 and read_run("copy").seed is None


def test_a_copy_of_a_run_is_not_a_replicate(runs, tmp_path):
    import shutil

    shutil.copytree(tmp_path / "a0", tmp_path / "a0-copy")
    groups = replicate_groups([read_run(r) for r in ("a0", "a1", "a0-copy")])
    assert [[r.root.name for r in g] for g in groups] == [["a0", "a1"], ["a0-copy"]]
