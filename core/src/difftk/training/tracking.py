"""Trackers: send what a training run records to loggers (TensorBoard, MLflow, W&B, or a third
party's), registered as components of the kind ``logger``.

:class:`Tracking` is a :class:`Reporter` that passes every call on to the reporter it wraps
and hands the loggers the run's configuration at the start, every record appended to
log.jsonl, and every sample grid. A logger that fails is dropped with one line and the run
goes on: a tracker never costs a step of training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from difftk.components import plugins
from difftk.training.reporter import Reporter, RunStart


@attrs.frozen
class TrackedRun:
    """What a logger is told when a run starts.

    :param directory: the run directory (checkpoint, samples, log.jsonl); ``None`` when the run
        writes nothing, and then a logger writes under the current directory.
    :param step: the step the run starts at (0, or that of the checkpoint a resume continues).
    :param steps: the step it trains up to.
    :param config: the run's configuration: ``pipeline`` (the spec, as the checkpoint stores it),
        ``training`` (every :class:`~difftk.training.config.TrainConfig` setting) and ``data``
        (what the checkpoint records about the dataset).
    """

    directory: Path | None
    step: int
    steps: int
    config: Mapping[str, Any]


def run_configuration(run: RunStart) -> dict[str, Any]:
    """The configuration of a starting run, as its checkpoint records it."""
    return {"pipeline": dict(run.pipeline), "training": attrs.asdict(run.config), "data": dict(run.dataset_info)}


def create_loggers(names: Sequence[str]) -> dict[str, Any]:
    """The registered loggers ``names``, built with their default options (an unknown name, or a
    logger whose library is missing, is one line naming the fix)."""
    registry = plugins.registry()
    return {name: registry.get("logger", name).instantiate({}) for name in dict.fromkeys(names)}


class Tracking(Reporter):
    """A reporter that passes every call to ``inner`` and the run's records to ``loggers``.

    :param loggers: name -> a :class:`~difftk.components.protocols.Logger`.
    :param inner: the reporter that shows the run (a progress bar); the default says nothing.
    """

    def __init__(self, loggers: Mapping[str, Any], inner: Reporter | None = None) -> None:
        self.loggers = dict(loggers)
        self.inner = inner if inner is not None else Reporter()

    def _send(self, method: str, *args: Any) -> None:
        for name, logger in list(self.loggers.items()):
            try:
                getattr(logger, method)(*args)
            except Exception as err:  # a tracker's failure must not stop the training it watches
                del self.loggers[name]
                self.inner.note(f"logger '{name}' failed in {method}() ({type(err).__name__}: {err}); "
                                "the run goes on without it, and log.jsonl has every record")

    def start(self, run: RunStart, total: int) -> None:
        self.inner.start(run, total)
        directory = run.paths.root if run.paths is not None else None
        self._send("start", TrackedRun(directory=directory, step=run.step, steps=total, config=run_configuration(run)))

    def update(self, step: int, loss: float, lr: float) -> None:
        self.inner.update(step, loss, lr)

    def log(self, record: Mapping[str, Any]) -> None:
        self.inner.log(record)
        self._send("log", record)

    def wrote(self, what: str, path: Path, step: int) -> None:
        self.inner.wrote(what, path, step)
        if what == "samples":
            self._send("image", path, step)

    def note(self, text: str) -> None:
        self.inner.note(text)

    def stop(self) -> None:
        try:
            self._send("finish")
        finally:
            self.inner.stop()
