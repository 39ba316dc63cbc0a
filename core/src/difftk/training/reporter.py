"""What the training loop tells the outside world: the :class:`Reporter` a front end subclasses."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from difftk.data.examples import Examples
from difftk.training.config import TrainConfig
from difftk.training.rundir import RunPaths


@attrs.frozen
class RunStart:
    """What a front end is told as a run starts: the data, the model, where and how it trains, and
    where it stands; a view of the trainer, not the trainer."""

    dataset: Examples
    dataset_info: Mapping[str, Any]  # what the checkpoint records about the data (its name, …)
    denoiser: str  # the denoiser's registered name
    pipeline: Mapping[str, Any]  # the pipeline spec, as the checkpoint stores it
    filled: Mapping[str, int]  # denoiser options taken from the data
    parameters: int  # the denoiser's parameter count
    conditional: bool  # trained on class labels
    device: torch.device
    precision: str  # as resolved for this device (difftk.runtime.fastpath.resolve_precision): fp32, bf16, tf32
    step: int  # the step the run starts from (0, or where it resumes)
    config: TrainConfig
    paths: RunPaths | None  # the run directory; None writes nothing


class Reporter:
    """What the training loop tells the outside world; the default says nothing.

    :class:`difftk_cli.progress.RichTrainReporter` draws a progress bar with the loss, it/s and
    ETA from these calls.
    """

    def start(self, run: RunStart, total: int) -> None:
        """Training begins at ``run.step`` and runs to ``total``."""

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
