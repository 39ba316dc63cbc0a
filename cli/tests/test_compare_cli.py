"""`difftk evaluate` with several metrics, `difftk compare` and `difftk schedules`."""

import csv
import json

import difftk
from difftk_cli.testing import one_line_error, run
from PIL import Image


def test_evaluate_several_metrics_sampled_a_given_way_with_json(tmp_path):
    result = run("evaluate", "mnist-cfg", "--metric", "fid", "--metric", "accuracy", "-n", 10, "--steps", 2,
                 "--scale", 1, "--sampler", "ancestral", "--set", "metric.bootstrap=3", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["sampler"] == "ancestral" and record["steps"] == 2 and record["scale"] == 1.0
    assert [r["metric"] for r in record["results"]] == ["fid", "accuracy"]
    assert all(r["n"] == 10 and r["spread"] >= 0 for r in record["results"])
    assert "fid = " in result.stdout and "accuracy = " in result.stdout


def test_evaluate_refuses_an_option_no_metric_has_and_an_unknown_metric():
    assert "no metric among fid, accuracy has option bootstrp" in one_line_error(
        run("evaluate", "mnist-cfg", "--metric", "fid", "--metric", "accuracy", "--set", "metric.bootstrp=3"))
    assert "unknown metric 'fdi'; did you mean 'fid'" in one_line_error(run("evaluate", "mnist-cfg", "--metric", "fdi"))


def test_compare_writes_one_csv_row_per_cell_and_a_plot(tmp_path):
    result = run("compare", "mnist-cfg", "--metric", "fid", "--metric", "accuracy", "--steps", "2,3",
                 "--guidance", "cfg", "--scale", "0,1", "-n", 10, "--set", "metric.bootstrap=3", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "compare.csv").open()))
    assert len(rows) == 1 * 2 * 2 * 2  # checkpoints × steps × scales × metrics
    assert {(r["steps"], r["scale"], r["metric"]) for r in rows} == {
        (k, w, m) for k in ("2", "3") for w in ("0.0", "1.0") for m in ("fid", "accuracy")}
    assert all(r["schedule"] == "cosine" and r["sampler"] == "ddim" for r in rows)
    assert Image.open(tmp_path / "compare.png").size[0] > 400
    assert "difftk compare" in result.stdout


def test_compare_errors_are_one_line(tmp_path):
    assert "--scale needs --guidance" in one_line_error(
        run("compare", "mnist-cfg", "--metric", "fid", "--scale", "0,1", "-o", tmp_path))
    assert "give step counts" in one_line_error(
        run("compare", "mnist-cfg", "--metric", "fid", "--steps", "0,5", "-o", tmp_path))
    assert "comma list" in one_line_error(run("compare", "mnist-cfg", "--metric", "fid", "--steps", "a", "-o", tmp_path))


def test_schedules_lists_every_schedule_and_plots_them(tmp_path):
    result = run("schedules", "--plot", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    for name in difftk.available("schedule"):
        assert name in result.stdout
    assert Image.open(tmp_path / "s.png").size[0] > 400


def test_compare_sets_a_sampler_option_on_every_cell(tmp_path):
    def kid(*sets):
        result = run("compare", "mnist-cfg", "--metric", "kid", "--steps", 2, "-n", 20, *sets, "-o", tmp_path)
        assert result.exit_code == 0, result.output
        return float(next(csv.DictReader((tmp_path / "compare.csv").open()))["value"])

    # the same seed, so only the sampler's option can move the value: η = 1 draws fresh noise at each step
    assert kid() == kid("--set", "sampler.eta=0") != kid("--set", "sampler.eta=1")
    assert "eta" in one_line_error(
        run("compare", "mnist-cfg", "--metric", "kid", "--sampler", "ddim", "--set", "sampler.eta=x", "-o", tmp_path))
    assert "only metric, sampler, guidance options" in one_line_error(
        run("compare", "mnist-cfg", "--metric", "kid", "--set", "schedule.T=2", "-o", tmp_path))


def test_compare_sets_a_guidance_option_with_every_scale(tmp_path):
    def kid(*sets):
        result = run("compare", "mnist-cfg", "--metric", "kid", "--steps", 1, "-n", 4, "--guidance", "apg",
                     "--scale", 2, *sets, "-o", tmp_path)
        assert result.exit_code == 0, result.output
        return float(next(csv.DictReader((tmp_path / "compare.csv").open()))["value"])

    # the same seed, so only the option can move the value: η = 1 is cfg, η = 0 (the default) drops Δ∥
    assert kid() != kid("--set", "guidance.eta=1")
    assert "eta" in one_line_error(run("compare", "mnist-cfg", "--metric", "kid", "--guidance", "apg", "--scale", 1,
                                       "--set", "guidance.eta=2", "-o", tmp_path))
    assert "applies with each --scale" in one_line_error(
        run("compare", "mnist-cfg", "--metric", "kid", "--set", "guidance.eta=0", "-o", tmp_path))


def test_compare_reports_the_nfe_of_each_cell(tmp_path):
    """Heun makes two evaluations per step but one on the last, DDIM one per step: the NFE column says so."""
    result = run("compare", "mnist-cfg", "--metric", "accuracy", "--sampler", "ddim,heun", "--steps", 3, "-n", 10,
                 "-o", tmp_path)
    assert result.exit_code == 0, result.output
    rows = {r["sampler"]: r for r in csv.DictReader((tmp_path / "compare.csv").open())}
    assert (rows["ddim"]["nfe"], rows["heun"]["nfe"]) == ("3", "5")
    assert "NFE" in result.stdout


def test_the_nfe_is_asked_of_the_schedule_samplers_are_handed():
    """mnist-flow's schedule reaches pure noise; samplers get it with ᾱ(1) raised to a floor, and so does nfe_of."""
    from difftk.components.protocols import nfe_of

    assert nfe_of(difftk.create("sampler", "heun"), 10, difftk.load("mnist-flow").schedule) == 19
