"""Runs read back: the loss and the measurements of a run's log.jsonl, and what the run is apart
from its seed, so that runs that differ only by seed can be pooled (``difftk plot``, ``difftk
compare``).

A record of log.jsonl with the key ``metric`` is a measurement (:mod:`difftk.training.measuring`);
one with ``loss`` is the mean loss of a log window. The log is untrusted like every file difftk
reads (:func:`read_log`): a damaged line (not UTF-8 or not JSON, a number that is not finite or is
beyond float32's range, a record without its fields; the half-written last line of a killed run)
is skipped, and named.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from difftk.checkpoint.files import CHECKPOINT_NAME
from difftk.checkpoint.metadata import CHECKPOINT_FIELDS, MAX_COUNT, is_int, is_number, parse_fields
from difftk.errors import DifftkError
from difftk.runtime.untrusted import read_json

#: the key that marks a measurement record in log.jsonl (loss records have ``loss`` instead)
METRIC_KEY = "metric"

#: training settings that say what is written when, or how the arithmetic runs, but not what is
#: learned: runs that differ only in these (and the seed) are replicates of one experiment
NOT_THE_EXPERIMENT: tuple[str, ...] = ("seed", "steps", "checkpoint_every", "sample_every", "num_samples", "log_every",
                                       "eval_every", "eval_metrics", "precision", "channels_last", "compile")


def experiment(pipeline: Mapping[str, Any], train_config: Mapping[str, Any], dataset: Mapping[str, Any],
               step: int | None = None) -> str:
    """What a run (or a checkpoint at ``step``) is apart from its seed, as canonical JSON: the
    components' names and options, the training settings that shape learning (all but
    :data:`NOT_THE_EXPERIMENT`) and the data. Equal strings: replicates that differ only by seed."""
    parts = {kind: {"name": c.get("name"), "options": c.get("options")} for kind, c in pipeline.items()
             if isinstance(c, Mapping) and "name" in c}
    settings = {k: v for k, v in train_config.items() if k not in NOT_THE_EXPERIMENT}
    data = {k: dataset.get(k) for k in ("name", "options", "shape", "num_classes")}
    return json.dumps({"pipeline": parts, "training": settings, "data": data, "step": step}, sort_keys=True, default=str)


@attrs.frozen
class RunHistory:
    """The curves of one run: the loss and every measured metric against the step."""

    root: Path
    loss: tuple[tuple[int, float], ...]
    #: metric name -> ((step, value, spread), …) in step order
    metrics: Mapping[str, tuple[tuple[int, float, float], ...]]
    units: Mapping[str, str]
    #: :func:`experiment` of the run; a run without a checkpoint is an experiment of its own
    experiment: str
    seed: int | None
    #: one note for each damaged line of log.jsonl, which was skipped
    skipped: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return str(self.root)


def _metadata(checkpoint: Path) -> dict[str, str] | None:
    """The metadata in a checkpoint's header (the weights are not read), or ``None``."""
    try:
        from safetensors import safe_open

        with safe_open(str(checkpoint), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # no checkpoint yet, or a file being replaced: the run stands alone
        return None


#: the largest magnitude a logged number may have: float32's range, which no loss or measurement leaves
MAX_LOG_VALUE = 3.4028234663852886e38
#: the longest line of log.jsonl read (a record is about 100 bytes)
MAX_LOG_LINE = 64 << 10


def _record_problem(record: Any) -> str | None:
    """What is wrong with one log record, or ``None``: an object whose ``step`` is a whole number ≥ 0,
    whose numbers are all within :data:`MAX_LOG_VALUE`, with a numeric ``loss`` or a named ``metric``
    and its numeric ``value``."""
    if not isinstance(record, dict):
        return f"is {type(record).__name__}, not an object"
    if not (is_int(record.get("step")) and 0 <= record["step"] <= MAX_COUNT):
        return f"has step {str(record.get('step'))[:40]!r}; expected a whole number ≥ 0"
    for key, value in record.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and not abs(value) <= MAX_LOG_VALUE:
            return f"has {key} = {value:.3g}, beyond the range of any loss or measurement"
    if METRIC_KEY in record:
        if not isinstance(record[METRIC_KEY], str) or not 0 < len(record[METRIC_KEY]) <= 256:
            return "names its metric with no string"
        for key in ("value", "spread"):
            if (key == "value" or key in record) and not is_number(record.get(key)):
                return f"has {key} {str(record.get(key))[:40]!r}; expected a number"
        if "unit" in record and not isinstance(record["unit"], str):
            return "has a unit that is not a string"
    elif "loss" in record and not is_number(record["loss"]):
        return f"has loss {str(record['loss'])[:40]!r}; expected a number"
    return None


def read_log(log: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """The records of a log.jsonl with their line numbers, and a note naming each damaged line
    (skipped): not UTF-8, not a JSON object within the bounds of
    :func:`~difftk.runtime.untrusted.read_json`, or a record :func:`_record_problem` refuses.
    A file that cannot be read at all is one :class:`DifftkError` line."""
    try:
        data = log.read_bytes()
    except OSError as err:
        raise DifftkError(f"{log}: cannot be read ({err.strerror or err})") from None
    records: list[tuple[int, dict[str, Any]]] = []
    notes: list[str] = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        what = f"{log} line {number}"
        try:
            record = read_json(line, what=what, max_bytes=MAX_LOG_LINE, max_depth=4, error=DifftkError)
            why = _record_problem(record)
            if why is not None:
                raise DifftkError(f"{what} {why}")
        except DifftkError as err:
            last = number == len(lines) and not data.endswith(b"\n")
            notes.append(f"{err}{' (a write cut short)' if last else ''}: skipped")
            continue
        records.append((number, record))
    return records, notes


def read_run(path: str | Path) -> RunHistory:
    """The curves of the run in directory ``path`` (or of the log.jsonl ``path``); one-line errors
    for a missing run or a run without a log."""
    root = Path(path)
    log = root / "log.jsonl" if root.is_dir() else root
    if not root.exists():
        raise DifftkError(f"{root}: no such run directory (give a directory that `difftk train --out` wrote)")
    if root.is_dir() and not log.is_file():
        raise DifftkError(f"{root} has no log.jsonl: it is not a training run, or the run stopped before its "
                          "first log record (every --log-every steps)")
    if not root.is_dir() and root.name != "log.jsonl":
        raise DifftkError(f"{root} is a file: give a run directory (what `difftk train --out` wrote) or its log.jsonl")
    root = log.parent
    loss: dict[int, float] = {}
    metrics: dict[str, dict[int, tuple[float, float]]] = {}
    units: dict[str, str] = {}
    records, skipped = read_log(log)
    for _, record in records:
        step = record["step"]
        if METRIC_KEY in record:
            name = record[METRIC_KEY]
            metrics.setdefault(name, {})[step] = (record["value"], record.get("spread", math.nan))
            if record.get("unit"):
                units[name] = record["unit"]
        elif "loss" in record:
            loss[step] = record["loss"]
    if not loss and not metrics:
        raise DifftkError(f"{log} holds no loss or metric records yet")
    meta = _metadata(root / CHECKPOINT_NAME)
    try:
        fields = parse_fields(root / CHECKPOINT_NAME, meta or {}, CHECKPOINT_FIELDS)
        config = fields["train_config"]
        what = experiment(fields["pipeline"], config, fields["dataset"])
        seed = int(config["seed"])
    except (DifftkError, TypeError, KeyError, ValueError):  # no checkpoint, or a damaged one: the run stands alone
        what, seed = json.dumps({"run": str(root.resolve())}), None
    return RunHistory(root=root, loss=tuple(sorted(loss.items())),
                  metrics={m: tuple((s, v, e) for s, (v, e) in sorted(points.items())) for m, points in metrics.items()},
                  units=units, experiment=what, seed=seed, skipped=tuple(skipped))


def replicate_groups(runs: Sequence[RunHistory]) -> list[list[RunHistory]]:
    """The runs grouped by :attr:`RunHistory.experiment` (runs that differ only by seed together, a run
    with a seed already in its group apart), in the order each group first appears."""
    groups: dict[str, list[RunHistory]] = {}
    for run in runs:
        key = run.experiment
        if any(other.seed == run.seed for other in groups.get(key, ())):  # the same seed twice: not a replicate
            key = f"{key}|{run.root}"
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def smoothed(values: Sequence[float], weight: float) -> list[float]:
    """An exponential moving average s_i = w·s_{i−1} + (1−w)·v_i, divided by 1 − wⁱ so that the
    first points are not pulled toward 0 (the bias correction of Kingma & Ba 2015, §3)."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"the smoothing weight must be in [0, 1), got {weight}")
    out, s = [], 0.0
    for i, v in enumerate(values, start=1):
        s = weight * s + (1.0 - weight) * v
        out.append(s / (1.0 - weight ** i))
    return out


def mean_curve(curves: Sequence[Sequence[tuple[int, float]]]) -> tuple[list[int], list[float]]:
    """The mean of several (step, value) curves at the steps all of them have."""
    if not curves:
        return [], []
    common = set.intersection(*({s for s, _ in c} for c in curves))
    steps = sorted(common)
    values = [dict(c) for c in curves]
    return steps, [math.fsum(v[s] for v in values) / len(values) for s in steps]
