"""Runs read back: the loss and the measurements of a run's log.jsonl, and what the run is apart
from its seed, so that runs that differ only by seed can be pooled (``difftk plot``, ``difftk
compare``).

A record of log.jsonl with the key ``metric`` is a measurement (:mod:`difftk.training.measuring`);
one with ``loss`` is the mean loss of a log window. Lines that are not JSON (the half-written last
line of a killed run) are skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from difftk.checkpoint.files import CHECKPOINT_NAME
from difftk.errors import DifftkError

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
class RunLog:
    """The curves of one run: the loss and every measured metric against the step."""

    root: Path
    loss: tuple[tuple[int, float], ...]
    #: metric name -> ((step, value, spread), …) in step order
    metrics: Mapping[str, tuple[tuple[int, float, float], ...]]
    units: Mapping[str, str]
    #: :func:`experiment` of the run; a run without a checkpoint is an experiment of its own
    experiment: str
    seed: int | None

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


def read_run(path: str | Path) -> RunLog:
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
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise DifftkError(f"{log}: cannot be read ({err.strerror or err})") from None
    for line in lines:
        try:
            record = json.loads(line)
            step = int(record["step"])
            if METRIC_KEY in record:
                name = str(record[METRIC_KEY])
                metrics.setdefault(name, {})[step] = (float(record["value"]), float(record.get("spread", math.nan)))
                if record.get("unit"):
                    units[name] = str(record["unit"])
            elif "loss" in record:
                loss[step] = float(record["loss"])
        except (ValueError, KeyError, TypeError):
            continue
    if not loss and not metrics:
        raise DifftkError(f"{log} holds no loss or metric records yet")
    meta = _metadata(root / CHECKPOINT_NAME)
    try:
        config = json.loads(meta["train_config"])
        what = experiment(json.loads(meta["pipeline"]), config, json.loads(meta["dataset"]))
        seed = int(config["seed"])
    except (TypeError, KeyError, ValueError):
        what, seed = json.dumps({"run": str(root.resolve())}), None
    return RunLog(root=root, loss=tuple(sorted(loss.items())),
                  metrics={m: tuple((s, v, e) for s, (v, e) in sorted(points.items())) for m, points in metrics.items()},
                  units=units, experiment=what, seed=seed)


def replicate_groups(runs: Sequence[RunLog]) -> list[list[RunLog]]:
    """The runs grouped by :attr:`RunLog.experiment` (runs that differ only by seed together, a run
    with a seed already in its group apart), in the order each group first appears."""
    groups: dict[str, list[RunLog]] = {}
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
