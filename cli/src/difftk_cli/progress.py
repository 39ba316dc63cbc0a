"""Progress bars for training and sampling, drawn with rich.

On a terminal the bar redraws in place; elsewhere (a log file, CI) rich shows no live bar,
so training prints one line per log record instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from difftk.sampling.steps import StepInfo
from difftk.training.reporter import Reporter, RunStart
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Iterations per second, averaged by rich over the recent updates."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} it/s" if speed else "     - it/s", style="progress.data.speed")


def _bar(console: Console, *fields: ProgressColumn) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(), *fields,
                    RateColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console)


def describe_start(run: RunStart) -> list[str]:
    """The lines that say what a run is about to do: data, filled options, model, device, files."""
    data, info = run.dataset, run.dataset_info
    if data.kind == "image":
        what = f"{len(data):,} images of {'×'.join(map(str, data.shape))}"
    else:
        what = f"{len(data):,} {data.shape[0]}-D points"
    classes = f", {data.num_classes} classes" if data.num_classes else ""
    lines = [f"data: {info.get('name', data.name)} — {what}{classes}"]
    if run.filled:
        given = ", ".join(f"{k}={v}" for k, v in run.filled.items())
        lines.append(f"denoiser '{run.denoiser}': {given} (filled from the data)")
    cond = ", class-conditional" if run.conditional else ""
    how = {"bf16": " with bf16 autocast", "tf32": " with TF32 matmuls"}.get(run.precision, "")
    lines.append(f"model: {run.parameters:,} parameters{cond}; training on {run.device}{how}")
    cfg = run.config
    if run.step:
        lines.append(f"resuming at step {run.step:,} of {cfg.steps:,}")
    if run.paths is not None:
        p = run.paths
        lines.append(f"run: {p.root} — {p.checkpoint.name} every {cfg.checkpoint_every:,} steps"
                     + (f", samples/step_XXXXXX.png every {cfg.sample_every:,}" if cfg.sample_every else "")
                     + f", {p.log.name} every {cfg.log_every:,}")
    return lines


class RichTrainReporter(Reporter):
    """A progress bar with the step, the loss (mean since the last log record), it/s and the
    ETA; a line for every file written."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress: Progress | None = None
        self.task = None
        self.total = 0
        self._sum, self._count = 0.0, 0

    def start(self, run: RunStart, total: int) -> None:
        for line in describe_start(run):
            self.console.print(escape(line))
        self.total = total
        self.progress = _bar(self.console, TextColumn("loss {task.fields[loss]}"))
        self.task = self.progress.add_task("train", total=total, completed=run.step, loss="  -   ")
        self.progress.start()

    def update(self, step: int, loss: float, lr: float) -> None:
        self._sum, self._count = self._sum + loss, self._count + 1  # the bar shows the window's mean
        self.progress.update(self.task, completed=step, loss=f"{self._sum / self._count:.4f}")

    def log(self, record: Mapping[str, Any]) -> None:
        if "loss" not in record:  # a measurement: said through note()
            return
        self._sum, self._count = 0.0, 0
        if not self.console.is_terminal:
            self.console.print(f"step {record['step']:,}/{self.total:,}  loss {record['loss']:.4f}  lr {record['lr']:.3g}")

    def wrote(self, what: str, path: Path, step: int) -> None:
        self.console.print(f"step {step:,}: {what} → {escape(str(path))}")

    def note(self, text: str) -> None:
        self.console.print(escape(text))

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class SamplingProgress:
    """A progress bar for :func:`difftk.sampling.draw.generate`'s callback.

    Use as a context manager; call the instance as ``callback(batch, info)``. A sampler with
    a fixed number of steps advances the bar one step at a time (it/s and ETA). A sampler
    that reports its denoiser evaluations (``info.nfe``) may choose its steps as it goes (an
    adaptive ODE solver), so its bar measures how far each batch has come from t = 1 to 0,
    and shows the evaluations so far and the time elapsed instead of a guessed step count.
    """

    def __init__(self, batches: int = 1, console: Console | None = None, description: str = "sample") -> None:
        self.batches, self.console, self.description = batches, console or Console(), description
        self.steps: int | None = None  # the steps of the last finished batch (or of the one running)
        self.nfe = 0  # denoiser evaluations so far, over all batches, for samplers that count them
        self._nfe_batch: dict[int, int] = {}
        self.progress: Progress | None = None
        self.task = None

    def __enter__(self) -> SamplingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _start(self, counting: bool, total: int) -> None:
        if counting:
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=20),
                                     TextColumn("{task.percentage:>3.0f}% of t"), TextColumn("NFE {task.fields[nfe]:,}"),
                                     TextColumn("elapsed"), TimeElapsedColumn(), console=self.console)
            self.task = self.progress.add_task(self.description, total=self.batches, nfe=0)
        else:
            self.progress = _bar(self.console)
            self.task = self.progress.add_task(self.description, total=self.batches * total)
        self.progress.start()

    def __call__(self, batch: int, info: StepInfo) -> None:
        nfe = info.nfe
        if self.progress is None:
            self._start(nfe is not None, info.total)
        self.steps = info.index + 1
        if nfe is None:
            self.progress.advance(self.task)
            return
        self._nfe_batch[batch] = nfe
        self.nfe = sum(self._nfe_batch.values())
        self.progress.update(self.task, completed=batch + min(1.0, max(0.0, 1.0 - info.t_next)), nfe=self.nfe)
