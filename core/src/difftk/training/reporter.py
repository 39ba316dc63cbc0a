"""What the training loop tells the outside world: the :class:`Reporter` a front end subclasses."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from difftk.training.trainer import Trainer


class Reporter:
    """What the training loop tells the outside world; the default says nothing.

    :class:`difftk_cli.progress.RichTrainReporter` draws a progress bar with the loss, it/s and
    ETA from these calls.
    """

    def start(self, trainer: Trainer, total: int) -> None:
        """Training begins at ``trainer.step`` and runs to ``total``."""

    def update(self, step: int, loss: float, lr: float) -> None:
        """Step ``step`` finished with ``loss`` at learning rate ``lr``."""

    def log(self, record: Mapping[str, Any]) -> None:
        """A record appended to log.jsonl: a loss record (step, mean loss of the window, lr, grad norm,
        time) or a measurement of ``eval_metrics`` (step, ``metric``, value, spread, …; no ``loss``)."""

    def wrote(self, what: str, path: Path, step: int) -> None:
        """A file was written: ``what`` is ``"checkpoint"`` or ``"samples"``."""

    def note(self, text: str) -> None:
        """Something the loop is about to do that takes a while (drawing a sample grid)."""

    def stop(self) -> None:
        """Training ended (normally, interrupted, or with an error)."""
