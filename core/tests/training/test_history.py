"""Runs read back (difftk.training.history). log.jsonl is read with care: a damaged line (not UTF-8, not JSON, a number that is not finite or
is out of any loss's range, a record without its fields) is skipped and named, in plot and in a
resumed run alike; what is left reads as curves."""

import json
import math

import pytest
from difftk.errors import DifftkError
from difftk.training.history import MAX_LOG_VALUE, experiment, mean_curve, read_log, read_run, smoothed
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

GOOD = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25, "lr": 1e-3},
        {"step": 2, "metric": "fid", "value": 12.5, "spread": 0.5, "unit": ""}]


def write(tmp_path, *lines: bytes):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "log.jsonl").write_bytes(b"".join(lines))
    return run


def good_lines():
    return [json.dumps(r).encode() + b"\n" for r in GOOD]


@pytest.mark.parametrize("line, said", [
    (b"\xff\xfe loss\n", "not UTF-8"), (b'{"step": Infinity, "loss": 1}\n', "Infinity is not a number"),
    (b'{"step": 3, "loss": 1e308}\n', "loss = 1e+308, beyond the range"),
    (b'{"step": 3, "metric": "fid", "value": -1e308}\n', "value = -1e+308, beyond the range"),
    (b'{"step": 3, "loss": 1e999}\n', "beyond the range of a float"), (b'{"step": -3, "loss": 1}\n', "has step '-3'"),
    (b'{"step": 3, "loss": "low"}\n', "has loss 'low'"), (b"[1, 2]\n", "is list, not an object"),
    (b'{"step": 3, "metric": 7, "value": 1}\n', "names its metric with no string"),
    (b"[" * 30_000 + b"\n", "nested more than 4 levels"), (b"[" * 70_000 + b"\n", "at most 65,536 are read"),
    (b'{"step": 3, "lo', "a write cut short"),
])
def test_a_damaged_line_is_skipped_and_named(tmp_path, line, said):
    lines = good_lines()
    run = write(tmp_path, *lines[:2], line, *lines[2:]) if line.endswith(b"\n") else write(tmp_path, *lines, line)
    log = read_run(run)
    assert log.loss == ((1, 0.5), (2, 0.25)) and log.metrics == {"fid": ((2, 12.5, 0.5),)}
    number = 3 if line.endswith(b"\n") else 4
    assert len(log.skipped) == 1 and f"log.jsonl line {number} " in log.skipped[0] and said in log.skipped[0]
    assert log.skipped[0].endswith(": skipped") and "\n" not in log.skipped[0]


def test_a_log_with_nothing_readable_is_one_line(tmp_path):
    with pytest.raises(DifftkError, match="holds no loss or metric records"):
        read_run(write(tmp_path, b"\xff\n", b"{}\n"))


records = st.fixed_dictionaries({"step": st.integers(-2, 10) | st.floats() | st.text(max_size=2)},
                                optional={"loss": st.floats() | st.integers(), "metric": st.text(max_size=3),
                                          "value": st.floats(), "spread": st.floats() | st.none()})
lines = records.map(lambda r: json.dumps(r).encode()) | st.binary(max_size=20) | st.sampled_from(
    [b"{", b"\xc3", b"NaN", b'{"step": 1, "loss": 1e400}'])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, max_size=6))
@example([b'{"step": 1, "loss": 1e308}', b'{"step": 1, "loss": -1e308}'])
def test_fuzzed_logs_read_as_finite_curves_or_one_line(tmp_path, fuzzed):
    run = write(tmp_path, *(line.replace(b"\n", b" ") + b"\n" for line in fuzzed))
    try:
        log = read_run(run)
    except DifftkError as err:
        assert "\n" not in str(err)
        return
    values = [v for _, v in log.loss] + [v for curve in log.metrics.values() for _, v, _ in curve]
    assert all(math.isfinite(v) and abs(v) <= MAX_LOG_VALUE for v in values)
    kept, skipped = read_log(run / "log.jsonl")
    assert len(kept) + len(skipped) == sum(1 for line in fuzzed if line.replace(b"\n", b" ").strip())


def test_a_resumed_run_drops_damaged_lines_and_names_them(tmp_path):
    from difftk.training.rundir import RunPaths

    run = write(tmp_path, *good_lines(), b'{"step": Infinity}\n', b"\xff\n", b'{"step": 3, "loss": 0.1}\n')
    notes: list[str] = []
    with RunPaths(run).open_log(2, notes.append) as log:
        log.write(json.dumps({"step": 3, "loss": 0.2}) + "\n")
    assert [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()] == [*GOOD, {"step": 3, "loss": 0.2}]
    assert len(notes) == 2 and "line 4 " in notes[0] and "line 5 is not UTF-8" in notes[1]
    assert all(n.endswith(": dropped from the log") for n in notes)


# --- what a run is apart from its seed, and its curves ------------------------------------------------------------


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
