"""`difftk compare` over several seeds: mean ± 95 % CI per cell, Welch's test against the best cell
or a --reference, and the one-line errors of --seed and --reference (before anything is measured)."""

import csv

import difftk
import pytest
from difftk_cli.testing import one_line_error, run


def test_several_seeds_give_each_cell_a_mean_and_a_test_against_a_reference(tmp_path):
    result = run("compare", "mnist-cfg", "--metric", "accuracy", "--steps", "2,3", "--seed", "0,1", "-n", 10,
                 "--reference", "steps=3", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "comparing 4 measurements (2 seeds each)" in result.stdout
    assert "vs reference" in result.stdout and "Welch's unequal-variance t-test" in result.stdout
    summary = {r["steps"]: r for r in csv.DictReader((tmp_path / "summary.csv").open())}
    assert summary["3"]["role"] == "reference" and summary["2"]["k"] == "2" and summary["2"]["p"] != ""
    assert len(list(csv.DictReader((tmp_path / "compare.csv").open()))) == 4


def test_one_seed_says_that_nothing_is_tested(tmp_path):
    result = run("compare", "mnist-cfg", "--metric", "accuracy", "--steps", "2,3", "-n", 10, "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "Differences are not tested: give several seeds" in result.stdout
    summary = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["k"] for r in summary] == ["1", "1"] and all(r["p"] == "" for r in summary)


@pytest.mark.parametrize("args, expect", [
    (["--seed", "1,1"], "--seed '1,1': give a seed ≥ 0 or distinct seeds"),
    (["--seed", "a"], "--seed 'a': give a seed ≥ 0"),
    (["--reference", "steps"], "--reference 'steps': give KEY=VALUE pairs with keys checkpoint, sampler, steps, scale"),
    (["--reference", "step=2"], "give KEY=VALUE pairs with keys checkpoint, sampler, steps, scale"),
    (["--reference", "steps=7"], "--reference steps=7 is not in the grid (it has 2, 3)"),
    (["--reference", "sampler=ddim"], "--reference 'sampler=ddim' names no single cell: add steps=…"),
])
def test_seed_and_reference_errors_are_one_line(tmp_path, args, expect):
    line = one_line_error(run("compare", "mnist-cfg", "--metric", "fid", "--steps", "2,3", *args, "-o", tmp_path / "o"))
    assert expect in line, line
    assert not (tmp_path / "o").exists()


def test_a_report_path_under_a_file_is_refused_before_measuring(tmp_path):
    (tmp_path / "file").write_text("")
    line = one_line_error(run("compare", "mnist-cfg", "--metric", "fid", "-o", tmp_path / "o", "--report", tmp_path / "file"))
    assert "file" in line and not (tmp_path / "o").exists()


def test_every_shipped_metric_declares_which_values_are_better():
    from difftk.evaluation.summary import better_of

    declared = {name: better_of(name) for name in difftk.available("metric")}
    assert all(b in ("lower", "higher") for b in declared.values()), declared
    assert declared["fid"] == declared["kid"] == "lower" and declared["accuracy"] == "higher"
    assert better_of("no-such-metric") is None
