"""The training loop: AdamW with warm-up and gradient clipping, an EMA of the weights, periodic
sample grids and checkpoints, and a resume that continues bit for bit.

One step (Ho et al. 2020, Algorithm 1): draw a batch x₀ (and its labels for a class-
conditional denoiser; with an autoencoder, x₀ is a draw of its scaled latents), ask the pipeline's objective for the per-example loss, average it,
take one AdamW step (Loshchilov & Hutter 2019) on the clipped gradient, and move the EMA
toward the new weights. Samples are drawn with the EMA weights, as in Ho et al. 2020 (App. B,
decay 0.9999) and every diffusion model since.

Reproducibility: every source of randomness has its own state, and a checkpoint stores them
all — the order of the data (its own ``torch.Generator``), the objective's t and ε (another
generator, on the training device), and torch's global RNG (weight initialisation, dropout).
A run stopped at step k and resumed therefore ends with exactly the weights, EMA and optimizer
state of an uninterrupted run, on the same device and torch build.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import math
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from difftk.components.autoencoding import frozen, to_latent
from difftk.components.protocols import num_classes_of
from difftk.data.examples import Examples, class_weights
from difftk.data.images import picture, save_png
from difftk.data.pipeline_data import describe_dataset
from difftk.errors import CheckpointError, DifftkError, OptionError, OutputError
from difftk.evaluation.context import MetricResult
from difftk.model import Model
from difftk.pipeline.compose import Pipeline
from difftk.runtime import distributed
from difftk.runtime.fastpath import autocast, prepare, resolve_precision, to_memory_format
from difftk.training.config import TrainConfig, TrainingError
from difftk.training.feed import Feed, Unreadable
from difftk.training.measuring import TrainingMetrics
from difftk.training.reporter import Reporter, RunStart
from difftk.training.rundir import RunPaths
from difftk.training.signals import catch_stop_signals
from difftk.training.state import RunState


@attrs.frozen
class TrainResult:
    """How a call to :meth:`Trainer.fit` ended."""

    step: int
    interrupted: bool = False
    checkpoint: Path | None = None
    samples: tuple[Path, ...] = ()
    loss: float | None = None  # mean loss over the last log window
    signal: int | None = None  # what stopped an interrupted run (SIGINT, SIGTERM or SIGHUP)
    measurements: tuple[tuple[int, MetricResult], ...] = ()  # (step, result) of every eval_metrics score


#: the errors of a write that the disk refused: full, over quota, read-only, failing
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


class _NonFinite(Exception):
    def __init__(self, what: str, value: float) -> None:
        super().__init__(what)
        self.what, self.value = what, value


class Trainer:
    """One training run: the loop that advances its :class:`~difftk.training.state.RunState` (``run``:
    what a checkpoint holds, and how it is saved and resumed).

    :param pipeline: a live pipeline with a denoiser (an ``nn.Module``) and an objective, e.g.
        from :func:`size_to_data`.
    :param dataset: the training data.
    :param config: a :class:`TrainConfig`.
    :param device: where to train; the forward pass and loss run under ``config.precision``
        (bf16 autocast on CUDA by default).
    :param out: the run directory (checkpoints, samples, log); ``None`` writes nothing.
    :param dataset_info: what to record about the data (:func:`describe_dataset`).
    :param filled: the denoiser options :func:`size_to_data` took from the data (for reports).

    The global torch RNG is seeded with ``config.seed`` by :func:`train` before the denoiser
    is built; the trainer seeds its own generators: the data order with ``seed + 1`` and the
    objective's noise with ``seed + 2``.
    """

    def __init__(self, pipeline: Pipeline, dataset: Examples, config: TrainConfig, *,
                 device: torch.device | str = "cpu", out: str | Path | None = None,
                 dataset_info: Mapping[str, Any] | None = None, filled: Mapping[str, int] | None = None) -> None:
        if pipeline.denoiser is None or pipeline.objective is None:
            raise OptionError("training needs a pipeline with a denoiser and an objective")
        self.pipeline, self.dataset, self.config = pipeline, dataset, config
        self.device = torch.device(device)
        self.paths = RunPaths(Path(out)) if out is not None else None
        self.dataset_info = dict(dataset_info or describe_dataset(dataset))
        self.model = pipeline.denoiser.to(self.device).train()
        frozen(pipeline.autoencoder, self.device)  # the first stage stays fixed (Rombach et al. 2022, §3)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        # several processes (torchrun): each takes its slice of one global batch of N×B, DDP averages the gradients
        self.ranks = distributed.current()
        net = prepare(self.model, channels_last=config.channels_last, compile=config.compile)
        self.net = distributed.DistributedDenoiser(net) if self.ranks.distributed else net
        self.feed = Feed(dataset, config.batch_size, self.ranks, config.seed)
        self.order = self.feed.order
        noise_seed = config.seed + 2 + distributed.NOISE_SEED_STRIDE * self.ranks.rank
        self.noise = torch.Generator(device=self.device).manual_seed(noise_seed)
        self.conditional = num_classes_of(self.model) > 0 and dataset.labels is not None
        self.class_weight = self._class_weights() if config.balance else None
        self.filled = dict(filled or {})
        # the metrics of the training curves (eval_every), built now so a bad name stops the run before it starts
        self.measures = (TrainingMetrics(config, self.dataset_info, latent=pipeline.autoencoder is not None)
                         if config.eval_every and self.ranks.main else None)
        self.measured: list[tuple[int, MetricResult]] = []
        self.run = RunState(model=self.model, ema=self.ema, optimizer=self.optimizer, order=self.order, noise=self.noise,
                            pipeline=pipeline, config=config, dataset_info=self.dataset_info, ranks=self.ranks,
                            device=self.device, paths=self.paths)
        self._stop_requested = False
        self.stop_signal: int | None = None  # the signal that stopped the run, if one did
        self._updating = False  # inside the update of a step: the state is half old, half new

    def _class_weights(self) -> torch.Tensor:
        """Per-class loss weights N/(K·n_k) from the training data's labels (``balance``). Within a class
        the conditional target is unchanged; the weights move training from common classes to rare ones,
        so a model sampled at equal class numbers is trained as if the data were balanced."""
        if not self.conditional:
            raise OptionError("training: balance weighs the classes of a class-conditional run, but this one is "
                              "not (the data has no labels, or the denoiser num_classes=0): drop balance")
        return class_weights(self.dataset).to(device=self.device, dtype=torch.float32)

    @property
    def step(self) -> int:
        """Optimizer steps taken (``run.step``)."""
        return self.run.step

    @step.setter
    def step(self, value: int) -> None:
        self.run.step = value

    def load_state(self, ckpt: Any) -> None:
        """Continue from a run's checkpoint (:meth:`RunState.load_state`)."""
        self.run.load_state(ckpt)

    def warm_start(self, ckpt: Any) -> None:
        """Start from a checkpoint's EMA weights, with a fresh optimizer and step 0 (:meth:`RunState.warm_start`)."""
        self.run.warm_start(ckpt)

    def describe(self) -> RunStart:
        """What a front end is told when the run starts (:meth:`Reporter.start`)."""
        return RunStart(dataset=self.dataset, dataset_info=self.dataset_info, denoiser=self.pipeline.spec["denoiser"].name,
                        pipeline=self.pipeline.spec.to_dict(),
                        filled=self.filled, parameters=sum(p.numel() for p in self.model.parameters()),
                        conditional=self.conditional, device=self.device,
                        precision=resolve_precision(self.config.precision, self.device), step=self.step,
                        config=self.config, paths=self.paths)

    # -- one step ------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.config.precision, self.device)

    def train_step(self) -> tuple[float, float | None]:
        """One optimizer step; returns the batch's mean loss and the gradient norm before clipping.

        Raises :class:`_NonFinite` *before* touching the weights when the loss or the
        gradient norm is NaN or infinite, so the state stays that of the last good step.
        """
        x0, y = self.feed.next(self.step + 1, self.device)
        if self.pipeline.autoencoder is not None:  # z ~ q(z | x₀) from the checkpointed generator: resumes stay exact
            x0 = to_latent(self.pipeline.autoencoder, x0, self.noise, sample=True)
        x0 = to_memory_format(x0, self.config.channels_last)
        cond = y if self.conditional else None
        relabel = getattr(self.pipeline.guidance, "training_condition", None)
        if cond is not None and relabel is not None:  # e.g. cfg's label dropout, from the checkpointed generator
            cond = relabel(cond, num_classes_of(self.model), self.noise)
        with self._autocast():
            loss = self.pipeline.objective.loss(self.net, self.pipeline.schedule, x0, cond=cond,
                                                generator=self.noise).float()
        if self.class_weight is not None:  # by the example's true class, also where cfg dropped its label
            loss = loss * self.class_weight[y].view(-1, *[1] * (loss.ndim - 1))
        loss = loss.mean()
        value = distributed.mean_over_ranks(loss.item(), self.ranks)  # every rank decides alike on a NaN
        if not math.isfinite(value):
            raise _NonFinite("loss", value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = None
        if self.config.grad_clip is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip))
            if not math.isfinite(norm):
                raise _NonFinite("gradient norm", norm)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr_at(self.step + 1)
        self._updating = True
        self.optimizer.step()
        self.step += 1
        self._update_ema()
        self._updating = False
        return value, norm

    @torch.no_grad()
    def _update_ema(self) -> None:
        """θ_ema ← d·θ_ema + (1−d)·θ (Polyak averaging; Ho et al. 2020, App. B); buffers are copied."""
        decay = self.config.ema_decay_at(self.step)
        ema_params = list(self.ema.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in self.model.parameters()], 1.0 - decay)
        for ema_b, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            ema_b.copy_(b)

    # -- samples -------------------------------------------------------------------------------

    @property
    def grid_size(self) -> int:
        """Samples per grid: ``num_samples``, else 64 images or 1024 points."""
        return self.config.num_samples or (64 if self.dataset.kind == "image" else 1024)

    def grid_description(self) -> str:
        """What :meth:`sample_grid` draws, in words: how many samples, which sampler, how many steps."""
        steps = self.config.sample_steps or getattr(self.pipeline.sampler, "default_steps", None)
        name = self.pipeline.spec["sampler"].name
        return f"{self.grid_size} samples, {name}" + (f", {steps} steps" if steps else "")

    def sample_grid(self) -> Path:
        """Draw samples with the EMA weights through :meth:`difftk.model.Model.sample` (the
        pipeline's sampler, and its guidance for a class-conditional model); write them as PNG.

        The grid's noise is seeded with ``config.seed`` (the same at every step, so grids
        compare), and torch's global RNG is left as it was.
        """
        assert self.paths is not None
        model = self.ema_model()
        devices = []
        if self.device.type == "cuda":
            devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices):
            x = model.sample(self.grid_size, steps=self.config.sample_steps, seed=self.config.seed)
        return save_png(picture(x, self.dataset.kind, self.dataset_info.get("bounds")), self.paths.sample_path(self.step))

    def ema_model(self) -> Model:
        """The live EMA weights as a :class:`~difftk.model.Model` (what sample grids and measurements use)."""
        return Model(pipeline=self.pipeline, denoiser=self.ema, data=self.dataset_info)

    def measure(self, reporter: Reporter, log: Any) -> None:
        """Score ``eval_metrics`` on the EMA model at this step; append the records to the log and tell ``reporter``."""
        assert self.measures is not None
        reporter.note(f"step {self.step:,}: measuring {', '.join(self.measures.metrics)}")
        results = self.measures.measure(self.ema_model(), self.step)
        for record in self.measures.write(results, self.step, log):
            reporter.log(record)
        self.measured += [(self.step, r) for r in results]
        for result in results:
            reporter.note(f"step {self.step:,}: {result}")

    def _on_stop_signal(self, signum: int) -> None:
        self._stop_requested = True
        self.stop_signal = signum

    # -- the loop --------------------------------------------------------------------------------

    def fit(self, reporter: Reporter | None = None) -> TrainResult:
        """Train from the current step to ``config.steps``.

        Ctrl-C, SIGTERM or SIGHUP (or a ``KeyboardInterrupt`` raised before the update of a step)
        writes the checkpoint of the last completed step and returns with ``interrupted=True``. A NaN or
        infinite loss raises :class:`TrainingError`; the checkpoint on disk is then the last
        good one, untouched.
        """
        reporter = reporter if reporter is not None and self.ranks.main else Reporter()
        cfg, total = self.config, self.config.steps
        samples: list[Path] = []
        window: list[float] = []
        mean_loss: float | None = None
        log = self.paths.open_log(self.step, reporter.note) if self.paths is not None and self.ranks.main else None
        self._stop_requested = False
        reporter.start(self.describe(), total)
        if self.measures is not None:
            reporter.note(f"measuring {self.measures.description()} (log.jsonl)"
                          + (f"; no held-out data: {self.measures.why}" if self.measures.data is None else ""))
        try:
            self.feed.start(cfg.workers, pin_memory=self.device.type == "cuda")
            with catch_stop_signals(self._on_stop_signal):
                while self.step < total:
                    before = self.run.rng_state()
                    try:
                        loss, norm = self.train_step()
                    except KeyboardInterrupt:
                        if self._updating:  # no consistent state to save; the last checkpoint stays
                            raise
                        return self._interrupted(reporter, samples, mean_loss, before)
                    except _NonFinite as bad:
                        raise TrainingError(self._non_finite_message(bad)) from None
                    except Unreadable as bad:  # nothing of the step was done: keep every step so far
                        if self.step:
                            self._interrupted(reporter, samples, mean_loss, before)
                        raise self._unreadable(bad.error) from None
                    s = self.step
                    window.append(loss)
                    reporter.update(s, loss, cfg.lr_at(s))
                    if s % cfg.log_every == 0 or s == total:
                        mean_loss = sum(window) / len(window)
                        record = {"step": s, "loss": mean_loss, "lr": cfg.lr_at(s), "grad_norm": norm,
                                  "time": round(time.time(), 3)}
                        window.clear()
                        if log is not None:
                            log.write(json.dumps(record) + "\n")
                            log.flush()
                        reporter.log(record)
                    if self.paths is not None:
                        if cfg.sample_every and (s % cfg.sample_every == 0 or s == total) and self.ranks.main:
                            reporter.note(f"step {s:,}: drawing the sample grid ({self.grid_description()})")
                            samples.append(self.sample_grid())
                            reporter.wrote("samples", samples[-1], s)
                        if s % cfg.checkpoint_every == 0 or s == total:
                            reporter.wrote("checkpoint", self.run.save(), s)
                    if self.measures is not None and self.measures.due(s):  # after the checkpoint: a failure loses nothing
                        self.measure(reporter, log)
                    if distributed.any_rank(self._stop_requested, self.ranks):  # all ranks stop at one step
                        return self._interrupted(reporter, samples, mean_loss, None)
        except (OSError, CheckpointError) as bad:  # a write failed after a whole step (a full disk): say what is kept
            if isinstance(bad, OSError) and not isinstance(bad, OutputError) and bad.errno not in DISK_ERRORS:
                raise
            raise TrainingError(self._write_failed(bad)) from None
        finally:
            self.feed.close()
            if log is not None:
                log.close()
            reporter.stop()
        checkpoint = self.paths.checkpoint if self.paths is not None else None
        return TrainResult(step=self.step, checkpoint=checkpoint, samples=tuple(samples), loss=mean_loss,
                           measurements=tuple(self.measured))

    def _interrupted(self, reporter: Reporter, samples: list[Path], loss: float | None,
                     rng: Mapping[str, Any] | None) -> TrainResult:
        checkpoint = None
        if self.paths is not None:
            if self.run.last_checkpoint != self.step:
                reporter.wrote("checkpoint", self.run.save(rng), self.step)
            checkpoint = self.paths.checkpoint
        return TrainResult(step=self.step, interrupted=True, checkpoint=checkpoint, samples=tuple(samples), loss=loss,
                           signal=self.stop_signal or signal.SIGINT, measurements=tuple(self.measured))

    def _write_failed(self, err: OSError | CheckpointError) -> str:
        """What a failed write (the log, a sample grid, the checkpoint) stopped and what was kept: the
        checkpoint of this step is written when it can be, else the last one stays."""
        said = str(err) if isinstance(err, DifftkError) else f"cannot write to the run: {err.strerror or err}"
        if self.paths is not None and self.run.last_checkpoint != self.step and self.step:
            with contextlib.suppress(OSError, DifftkError):  # the disk may be too full for it too: the last one stays
                self.run.save()
        if self.paths is not None and self.run.last_checkpoint is not None:
            kept = f"{self.paths.checkpoint} holds step {self.run.last_checkpoint:,}: free some space, then resume"
        else:
            kept = "no checkpoint was written: free some space, then run again"
        return f"{said}; training stopped at step {self.step:,}, and {kept}"

    def _unreadable(self, error: DifftkError) -> DifftkError:
        """``error`` (data that cannot be read at step k) with what was kept: the checkpoint of step k − 1."""
        if not self.step:
            kept = "no step was trained"
        elif self.paths is not None:
            kept = f"{self.paths.checkpoint} holds step {self.step:,}: fix the data, then resume"
        else:
            kept = f"stopped at step {self.step:,}"
        return type(error)(f"{error} ({kept})")

    def _non_finite_message(self, bad: _NonFinite) -> str:
        where = f"the {bad.what} is {bad.value} at step {self.step + 1}: training stopped"
        if self.paths is not None and self.run.last_checkpoint is not None:
            kept = f"{self.paths.checkpoint} (step {self.run.last_checkpoint}) is kept"
        else:
            kept = "no checkpoint was written yet"
        return f"{where}; {kept} — try a lower lr or a longer warmup"
