"""`difftk plot RUN … -o curves.png`: the loss and the logged metrics of several runs, runs that
differ only by seed pooled; and the pieces it is made of (difftk.training.history)."""

import json

import pytest
from cli_runner import one_line_error, run
from difftk.training.history import experiment, mean_curve, read_run, replicate_groups, smoothed
from difftk_cli.plots import curve_quantities, draw_curves
from hypothesis import given
from hypothesis import strategies as st
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


def test_the_experiment_is_everything_but_the_seed_and_what_is_written_when():
    pipeline = {"difftk": {"format": 1}, "schedule": {"name": "linear", "plugin": "ddpm", "options": {"T": 50}}}
    data = {"name": "mnist", "shape": [1, 28, 28], "options": {}}
    base = experiment(pipeline, {"seed": 0, "lr": 1e-4, "log_every": 50}, data)
    assert experiment(pipeline, {"seed": 7, "lr": 1e-4, "log_every": 10}, data) == base
    assert experiment(pipeline, {"seed": 0, "lr": 2e-4, "log_every": 50}, data) != base
    assert experiment({**pipeline, "schedule": {"name": "linear", "options": {"T": 60}}}, {"seed": 0, "lr": 1e-4}, data) \
        != experiment(pipeline, {"seed": 0, "lr": 1e-4}, data)
    assert json.loads(base)["pipeline"] == {"schedule": {"name": "linear", "options": {"T": 50}}}  # not the versions


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=40), st.floats(0.0, 0.99))
def test_smoothing_keeps_a_constant_and_stays_within_the_values(values, weight):
    out = smoothed(values, weight)
    assert len(out) == len(values)
    assert min(values) - 1e-6 <= min(out) and max(out) <= max(values) + 1e-6
    assert smoothed([3.5] * len(values), weight) == pytest.approx([3.5] * len(values))  # no pull toward 0
    assert smoothed(values, 0.0) == pytest.approx(values)


def test_the_mean_curve_is_taken_where_every_run_has_a_point():
    steps, mean = mean_curve([[(1, 1.0), (2, 2.0), (3, 3.0)], [(2, 4.0), (3, 5.0), (4, 0.0)]])
    assert steps == [2, 3] and mean == [3.0, 4.0]


def test_a_copy_of_a_run_is_not_a_replicate(runs, tmp_path):
    import shutil

    shutil.copytree(tmp_path / "a0", tmp_path / "a0-copy")
    groups = replicate_groups([read_run(r) for r in ("a0", "a1", "a0-copy")])
    assert [[r.root.name for r in g] for g in groups] == [["a0", "a1"], ["a0-copy"]]
