"""The training loop: AdamW with warm-up and gradient clipping, an EMA of the weights, periodic
sample grids and checkpoints, and a resume that continues bit for bit.

One step (Ho et al. 2020, Algorithm 1): draw a batch x₀ (and its labels for a class-
conditional denoiser), ask the pipeline's objective for the per-example loss, average it,
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
import fcntl
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

import difftk
from difftk import distributed, plugins
from difftk.checkpoint import (
    CHECKPOINT_NAME,
    SAMPLING_CONTENTS,
    Checkpoint,
    CheckpointError,
    flatten_optimizer,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    unflatten_optimizer,
)
from difftk.data import ArrayDataset
from difftk.errors import DifftkError, OptionError
from difftk.fastpath import PRECISIONS, autocast, prepare, to_memory_format
from difftk.fileio import atomic_write_text, short_path
from difftk.fitting import describe_dataset, fit_to_data
from difftk.generation import class_labels, generate, num_classes_of
from difftk.images import picture, save_png
from difftk.options import option
from difftk.pipeline import ComponentSpec, Pipeline, PipelineSpec

#: the kinds that decide what is learned; a resumed run must keep them (the sampler may change)
TRAINING_KINDS: tuple[str, ...] = ("schedule", "denoiser", "objective")


#: the signals that stop a run cleanly: Ctrl-C, a job scheduler or `timeout`, a closed terminal
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class TrainingError(DifftkError):
    """Training cannot go on (a non-finite loss) or cannot start (a run directory in the way)."""


@attrs.frozen
class TrainConfig:
    """How to train: optimizer, schedule of the learning rate, EMA, and what to write when.

    Defaults follow Ho et al. 2020 (App. B: Adam, lr 2e-4, no weight decay; their released
    code also clips the gradient norm to 1 and warms the learning rate up linearly, over 5000
    steps). Two are shortened for runs of thousands rather than hundreds of thousands of
    steps: 100 warm-up steps, and an EMA decay of 0.999 instead of 0.9999.
    """

    steps: int = option(help="optimizer steps to train in total (a resumed run continues up to it)", ge=1)
    batch_size: int = option(64, help="examples per step", ge=1, le=1 << 20)
    lr: float = option(2e-4, help="AdamW learning rate after warm-up", gt=0.0, le=1.0)
    weight_decay: float = option(0.0, help="AdamW decoupled weight decay", ge=0.0, le=1.0)
    warmup: int = option(100, help="steps of linear learning-rate warm-up from lr/warmup to lr", ge=0)
    grad_clip: float | None = option(1.0, help="clip the global gradient norm to this; none = off", gt=0.0, optional=True)
    ema_decay: float = option(0.999, help="EMA decay per step (warmed up as min(decay, (1+s)/(10+s)))", ge=0.0, lt=1.0)
    seed: int = option(0, help="seed of the weights, the data order, the noise and the sample grids", ge=0, lt=1 << 32)
    checkpoint_every: int = option(1000, help="write the checkpoint every K steps (and at the end)", ge=1)
    sample_every: int = option(1000, help="write a sample grid every K steps (and at the end); 0 = never", ge=0)
    sample_steps: int | None = option(None, help="sampler steps for the sample grids (at most the schedule's T); "
                                      "none = the sampler's default", ge=1, optional=True)
    num_samples: int | None = option(None, help="samples per grid; none = 64 images or 1024 points", ge=1, optional=True)
    log_every: int = option(50, help="append the mean loss to log.jsonl every K steps", ge=1)
    precision: str = option("auto", help="auto (bf16 on CUDA, else fp32), fp32, tf32 or bf16 autocast", choices=PRECISIONS)
    channels_last: bool = option(False, help="keep image weights and batches in channels-last memory format")
    compile: bool = option(False, help="train the denoiser through torch.compile")
    init: str | None = option(None, help="start from the EMA weights of this checkpoint (fine-tuning); none = random",
                              optional=True)

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), sort_keys=True)

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (1-based): linear warm-up, then constant."""
        return self.lr * min(1.0, step / self.warmup) if self.warmup else self.lr

    def ema_decay_at(self, step: int) -> float:
        """EMA decay after ``step`` updates: min(decay, (1+s)/(10+s)), the warm-up of TensorFlow's
        ``ExponentialMovingAverage(num_updates=s)``, so short runs do not average in their init."""
        return min(self.ema_decay, (1 + step) / (10 + step))


TrainConfig.component_label = "training"


#: settings a resumed run cannot change without the checkpoint misstating how it was made: the seed
#: (every RNG state comes from the checkpoint, so a new seed would be recorded but never used) and
#: the starting weights of a fine-tuning run
FIXED_ON_RESUME: tuple[str, ...] = ("seed", "init")


def config_for_resume(saved: Mapping[str, Any], **overrides: Any) -> TrainConfig:
    """The configuration a checkpoint was trained with, with the given (non-``None``) overrides.

    Overrides of :data:`FIXED_ON_RESUME` that differ from the run's are refused.
    """
    fields = attrs.fields_dict(TrainConfig)
    base = {k: v for k, v in saved.items() if k in fields}
    for key in FIXED_ON_RESUME:
        if overrides.get(key) is not None and key in base and overrides[key] != base[key]:
            raise TrainingError(f"the run was trained with {key}={base[key]!r} and a resumed run keeps it: "
                                f"drop the new {key} ({overrides[key]!r}), or start a new run in another --out")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**base)


def changed_settings(saved: Mapping[str, Any], config: TrainConfig) -> list[str]:
    """``name old → new`` for every setting a resumed run changes (``steps`` aside), to be said."""
    now = attrs.asdict(config)
    return [f"{k} {saved[k]!r} → {now[k]!r}" for k in now
            if k != "steps" and k in saved and saved[k] != now[k]]


# --- the pieces of training state -----------------------------------------------------------------


class BatchOrder:
    """Shuffled epochs drawn from one generator: each epoch a fresh permutation of the indices.

    A batch that runs past the end of an epoch continues into the next, so every example is
    seen once per epoch whatever the batch size. The state is the generator's state at the
    start of the current epoch plus the position in it: from those the permutation is drawn
    again on restore, so nothing derived needs storing.
    """

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size, self.batch_size = size, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = -1
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch_start = self.generator.get_state()
        self.perm = torch.randperm(self.size, generator=self.generator)
        self.position = 0
        self.epoch += 1

    def next(self) -> torch.Tensor:
        """The indices of the next batch."""
        parts, need = [], self.batch_size
        while need:
            if self.position == self.size:
                self._new_epoch()
            take = min(need, self.size - self.position)
            parts.append(self.perm[self.position:self.position + take])
            self.position += take
            need -= take
        return torch.cat(parts)

    def state(self) -> tuple[torch.Tensor, dict[str, int]]:
        return self.epoch_start, {"epoch": self.epoch, "position": self.position}

    def restore(self, epoch_start: torch.Tensor, where: Mapping[str, int]) -> None:
        self.generator.set_state(epoch_start)
        self.epoch_start = epoch_start
        self.perm = torch.randperm(self.size, generator=self.generator)
        self.epoch, self.position = int(where["epoch"]), int(where["position"])


@attrs.frozen
class RunPaths:
    """Where a training run writes: its latest checkpoint, sample grids and loss log."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT_NAME

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step_{step:06d}.png"

    def existing(self) -> list[str]:
        """The run files already present, e.g. ``["checkpoint.safetensors", "samples/"]``."""
        found = [p.name for p in (self.checkpoint, self.log) if p.exists()]
        return found + (["samples/"] if self.samples.is_dir() and any(self.samples.iterdir()) else [])

    def prepare(self, resume: bool) -> str | None:
        """Refuse to start over a run that has a checkpoint (unless resuming) or to resume nothing.

        A run that stopped before its first checkpoint (a NaN, a full disk, a kill) holds only a
        log and perhaps samples, and nothing to resume: it is started over. The return value
        then says so, for the caller to show.
        """
        try:
            if self.root.exists() and not self.root.is_dir():
                raise TrainingError(f"--out {self.root} is a file; give a directory for the run")
            found = self.existing()
        except OSError as err:  # a name too long, a directory that cannot be listed
            raise TrainingError(f"--out {short_path(self.root)}: {err.strerror or err}") from None
        if resume and not self.checkpoint.is_file():
            extra = f" (it holds {', '.join(found)}: a run stopped before its first checkpoint)" if found else ""
            raise TrainingError(f"{self.root} has no {CHECKPOINT_NAME} to resume from{extra}: drop --resume to "
                                "start it over, or choose another --out")
        if not resume and self.checkpoint.exists():
            raise TrainingError(f"{self.root} already holds a training run ({', '.join(found)}): "
                                "add --resume to continue it, or choose another --out")
        if not resume and found:
            return (f"{self.root} holds {', '.join(found)} of a run that stopped before its first checkpoint: "
                    "starting it over")
        return None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run directory while a run writes it, so that a second
        ``difftk train`` (or a ``--resume`` of a live run) is refused instead of racing it.

        The lock is ``flock`` on ``DIR/.lock``, released by the kernel when the process dies, so
        a killed run never leaves the directory locked. Once it is held, the temporary files a
        killed writer left behind (``.checkpoint.safetensors.*.tmp``) are removed.
        """
        try:
            if self.root.exists() and not self.root.is_dir():
                raise TrainingError(f"--out {self.root} is a file; give a directory for the run")
            created = not self.root.exists()
        except OSError as err:
            raise TrainingError(f"--out {short_path(self.root)}: {err.strerror or err}") from None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise TrainingError(f"cannot create the run directory {short_path(self.root)}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise TrainingError(f"{self.root} is being written by another difftk train (pid {holder}): wait for it "
                                "to finish, or choose another --out") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            for stray in self.root.glob(f".{CHECKPOINT_NAME}.*.tmp"):
                stray.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            if created and [p.name for p in self.root.iterdir()] == [LOCK_NAME]:  # a run refused before it wrote
                (self.root / LOCK_NAME).unlink(missing_ok=True)
                self.root.rmdir()


#: the lock file of a run directory (see :meth:`RunPaths.lock`)
LOCK_NAME = ".lock"


@attrs.frozen
class TrainResult:
    """How a call to :meth:`Trainer.fit` ended."""

    step: int
    interrupted: bool = False
    checkpoint: Path | None = None
    samples: tuple[Path, ...] = ()
    loss: float | None = None  # mean loss over the last log window
    signal: int | None = None  # what stopped an interrupted run (SIGINT, SIGTERM or SIGHUP)


class Reporter:
    """What the training loop tells the outside world; the default says nothing.

    :class:`difftk.progress.RichTrainReporter` draws a progress bar with the loss, it/s and
    ETA from these calls.
    """

    def start(self, trainer: Trainer, total: int) -> None:
        """Training begins at ``trainer.step`` and runs to ``total``."""

    def update(self, step: int, loss: float, lr: float) -> None:
        """Step ``step`` finished with ``loss`` at learning rate ``lr``."""

    def log(self, record: Mapping[str, Any]) -> None:
        """A log record (what log.jsonl gets): step, mean loss of the window, lr, grad norm."""

    def wrote(self, what: str, path: Path, step: int) -> None:
        """A file was written: ``what`` is ``"checkpoint"`` or ``"samples"``."""

    def note(self, text: str) -> None:
        """Something the loop is about to do that takes a while (drawing a sample grid)."""

    def stop(self) -> None:
        """Training ended (normally, interrupted, or with an error)."""


class _NonFinite(Exception):
    def __init__(self, what: str, value: float) -> None:
        super().__init__(what)
        self.what, self.value = what, value


# --- the trainer ----------------------------------------------------------------------------------


class Trainer:
    """The state of one training run and the loop that advances it.

    :param pipeline: a live pipeline with a denoiser (an ``nn.Module``) and an objective, e.g.
        from :func:`fit_to_data`.
    :param dataset: the training data.
    :param config: a :class:`TrainConfig`.
    :param device: where to train; the forward pass and loss run under ``config.precision``
        (bf16 autocast on CUDA by default).
    :param out: the run directory (checkpoints, samples, log); ``None`` writes nothing.
    :param dataset_info: what to record about the data (:func:`describe_dataset`).
    :param filled: the denoiser options :func:`fit_to_data` took from the data (for reports).

    The global torch RNG is seeded with ``config.seed`` by :func:`train` before the denoiser
    is built; the trainer seeds its own generators: the data order with ``seed + 1`` and the
    objective's noise with ``seed + 2``.
    """

    def __init__(self, pipeline: Pipeline, dataset: ArrayDataset, config: TrainConfig, *,
                 device: torch.device | str = "cpu", out: str | Path | None = None,
                 dataset_info: Mapping[str, Any] | None = None, filled: Mapping[str, int] | None = None) -> None:
        if pipeline.denoiser is None or pipeline.objective is None:
            raise OptionError("training needs a pipeline with a denoiser and an objective")
        self.pipeline, self.dataset, self.config = pipeline, dataset, config
        self.device = torch.device(device)
        self.paths = RunPaths(Path(out)) if out is not None else None
        self.dataset_info = dict(dataset_info or describe_dataset(dataset))
        self.model = pipeline.denoiser.to(self.device).train()
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        # several processes (torchrun): each takes its slice of one global batch of N×B, DDP averages the gradients
        self.ranks = distributed.current()
        net = prepare(self.model, channels_last=config.channels_last, compile=config.compile)
        self.net = distributed.DistributedDenoiser(net) if self.ranks.distributed else net
        self.order = BatchOrder(len(dataset), config.batch_size * self.ranks.world, config.seed + 1)
        noise_seed = config.seed + 2 + distributed.NOISE_SEED_STRIDE * self.ranks.rank
        self.noise = torch.Generator(device=self.device).manual_seed(noise_seed)
        self.conditional = num_classes_of(self.model) > 0 and dataset.labels is not None
        self.filled = dict(filled or {})
        self.step = 0
        self.last_checkpoint: int | None = None
        self._stop_requested = False
        self.stop_signal: int | None = None  # the signal that stopped the run, if one did
        self._updating = False  # inside the update of a step: the state is half old, half new

    # -- one step ------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.config.precision, self.device)

    def train_step(self) -> tuple[float, float | None]:
        """One optimizer step; returns the batch's mean loss and the gradient norm before clipping.

        Raises :class:`_NonFinite` *before* touching the weights when the loss or the
        gradient norm is NaN or infinite, so the state stays that of the last good step.
        """
        index = self.order.next()
        B = self.config.batch_size
        x0, y = self.dataset.batch(index[self.ranks.rank * B:(self.ranks.rank + 1) * B], self.device)
        x0 = to_memory_format(x0, self.config.channels_last)
        cond = y if self.conditional else None
        relabel = getattr(self.pipeline.guidance, "training_condition", None)
        if cond is not None and relabel is not None:  # e.g. cfg's label dropout, from the checkpointed generator
            cond = relabel(cond, num_classes_of(self.model), self.noise)
        with self._autocast():
            loss = self.pipeline.objective.loss(self.net, self.pipeline.schedule, x0, cond=cond,
                                                generator=self.noise).float().mean()
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

    # -- state -----------------------------------------------------------------------------------

    def rng_state(self) -> dict[str, Any]:
        """Every RNG state of the run, and the data order's position in its epoch."""
        epoch_start, where = self.order.state()
        state = {"torch": torch.get_rng_state(), "data": epoch_start, "noise": self.noise.get_state(), "where": where}
        if self.device.type == "cuda":  # dropout on the GPU draws from the device's own generator
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def gathered_rng_state(self) -> dict[str, Any]:
        """:meth:`rng_state` with the noise generator of every rank (``noise``, ``noise.1``, …): a
        collective call, made by all ranks before rank 0 saves."""
        state = self.rng_state()
        noises = distributed.gather_states(state["noise"].cpu(), self.ranks)
        state.update({f"noise.{r}": t for r, t in enumerate(noises) if r})
        return state

    def _restore_rng(self, tensors: Mapping[str, torch.Tensor], where: Mapping[str, int]) -> None:
        torch.set_rng_state(tensors["torch"])
        key = f"noise.{self.ranks.rank}" if self.ranks.rank else "noise"
        saved = 1 + sum(1 for k in tensors if k.startswith("noise."))
        if key not in tensors or saved != self.ranks.world:
            raise CheckpointError(f"the checkpoint was written by a run of {saved} process(es); this one has "
                                  f"{self.ranks.world}: resume with --nproc {saved}")
        self.noise.set_state(tensors[key])
        self.order.restore(tensors["data"], where)
        if self.device.type == "cuda" and "cuda" in tensors:
            torch.cuda.set_rng_state(tensors["cuda"], self.device)

    def state(self, rng: Mapping[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The checkpoint contents: tensors and metadata (see :mod:`difftk.checkpoint`).

        ``rng`` is a :meth:`rng_state` taken earlier (the start of an interrupted step);
        by default the current one.
        """
        rng = dict(rng or self.rng_state())
        where = rng.pop("where")
        opt_tensors, opt_rest = flatten_optimizer(self.optimizer.state_dict())
        tensors: dict[str, torch.Tensor] = {}
        tensors.update({f"model/{k}": v for k, v in self.model.state_dict().items()})
        tensors.update({f"ema/{k}": v for k, v in self.ema.state_dict().items()})
        tensors.update({f"optim/{k}": v for k, v in opt_tensors.items()})
        tensors.update({f"rng/{k}": v for k, v in rng.items()})
        objective_state = getattr(self.pipeline.objective, "state_dict", None)
        if objective_state is not None:  # e.g. iddpm's loss history for importance sampling of t
            tensors.update({f"objective/{k}": v for k, v in objective_state().items()})
        spec = self.pipeline.spec
        metadata = {
            "difftk_version": difftk.__version__,
            "pipeline": spec.to_json(),
            "plugins": json.dumps({**spec.plugins, **self._dataset_plugin()}, sort_keys=True),
            "step": str(self.step),
            "train_config": self.config.to_json(),
            "dataset": json.dumps(self.dataset_info, sort_keys=True),
            "optimizer": json.dumps(opt_rest, sort_keys=True),
            "data_order": json.dumps(where, sort_keys=True),
        }
        return tensors, metadata

    def _dataset_plugin(self) -> dict[str, str | None]:
        name = self.dataset_info.get("plugin")
        record = plugins.host().records.get(name) if name else None
        return {name: record.version if record else None} if name else {}

    def load_state(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``: weights, EMA, optimizer, every RNG state and the step."""
        source = str(ckpt.path)
        if ckpt.metadata.get("contents") == SAMPLING_CONTENTS:
            raise CheckpointError(f"{source} was exported for sampling (EMA weights only) and cannot be resumed: "
                                  "resume from the run's own checkpoint")
        load_weights(self.model, ckpt.section("model"), source=source, what="model")
        load_weights(self.ema, ckpt.section("ema"), source=source, what="EMA")
        rest = ckpt.json("optimizer")
        if rest is None or "data_order" not in ckpt.metadata:
            raise CheckpointError(f"{source} holds no optimizer or data-order state: it cannot be resumed")
        try:
            self.optimizer.load_state_dict(unflatten_optimizer(ckpt.section("optim"), rest))
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{source}: the optimizer state does not fit this model: {err}") from None
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.config.weight_decay
        rng = ckpt.section("rng")
        if not {"torch", "data", "noise"} <= rng.keys():
            raise CheckpointError(f"{source} lacks RNG states ({', '.join(sorted(rng)) or 'none'} stored)")
        self._restore_rng(rng, ckpt.json("data_order"))
        load_objective = getattr(self.pipeline.objective, "load_state_dict", None)
        if load_objective is not None:
            load_objective(ckpt.section("objective"))
        self.step = self.last_checkpoint = ckpt.step

    def warm_start(self, ckpt: Checkpoint) -> None:
        """Start from ``ckpt``'s EMA weights (model and EMA alike), with a fresh optimizer and step 0.

        The network must have the same weights (names and shapes); its other options may
        differ: fine-tuning an ε-model into a v-model changes only ``prediction`` (as
        Stable Diffusion 2's v-models were fine-tuned from ε-models).
        """
        load_weights(self.model, ckpt.section("ema"), source=str(ckpt.path), what="EMA")
        self.ema.load_state_dict(self.model.state_dict())

    def save(self, rng: Mapping[str, Any] | None = None) -> Path:
        """Write the checkpoint (atomically) and remember its step. With several processes every rank
        calls it (the ranks' noise states are gathered) and rank 0 writes."""
        assert self.paths is not None
        if self.ranks.distributed:
            rng = dict(rng or self.gathered_rng_state())
            if not self.ranks.main:
                self.last_checkpoint = self.step
                return self.paths.checkpoint
        tensors, metadata = self.state(rng)
        path = save_checkpoint(self.paths.checkpoint, tensors, metadata, replaces="run")
        self.last_checkpoint = self.step
        return path

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
        """Draw samples with the EMA weights and the pipeline's sampler; write them as PNG.

        The grid's noise is seeded with ``config.seed`` (the same at every step, so grids
        compare), and torch's global RNG is left as it was.
        """
        assert self.paths is not None
        kind, cfg, n = self.dataset.kind, self.config, self.grid_size
        schedule = self.pipeline.schedule
        steps, sampler = cfg.sample_steps, self.pipeline.sampler
        guided = self.pipeline.guidance is not None and self.conditional  # guidance steers toward a class
        denoiser = self.pipeline.guidance.wrap(self.ema, schedule) if guided else self.ema
        cond = class_labels(n, num_classes_of(self.model)) if self.conditional else None
        devices = []
        if self.device.type == "cuda":
            devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices):
            x = generate(denoiser, schedule, sampler, self.dataset.shape, n, steps=steps, cond=cond,
                         seed=cfg.seed, device=self.device)
        bounds = self.dataset_info.get("bounds")
        return save_png(picture(x, kind, bounds), self.paths.sample_path(self.step))

    # -- the loop --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _catch_stop_signals(self) -> Iterator[None]:
        """The first Ctrl-C, SIGTERM (a scheduler, ``timeout``) or SIGHUP (a closed terminal):
        finish the current step, save, stop. A second signal acts at once, as it would without us."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            self._stop_requested = True
            self.stop_signal = signum
            for sig, before in previous.items():
                signal.signal(sig, before)

        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, before in previous.items():
                signal.signal(sig, before)

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
        log = self._open_log()
        self._stop_requested = False
        reporter.start(self, total)
        try:
            with self._catch_stop_signals():
                while self.step < total:
                    before = self.rng_state()
                    try:
                        loss, norm = self.train_step()
                    except KeyboardInterrupt:
                        if self._updating:  # no consistent state to save; the last checkpoint stays
                            raise
                        return self._interrupted(reporter, samples, mean_loss, before)
                    except _NonFinite as bad:
                        raise TrainingError(self._non_finite_message(bad)) from None
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
                            reporter.wrote("checkpoint", self.save(), s)
                    if distributed.any_rank(self._stop_requested, self.ranks):  # all ranks stop at one step
                        return self._interrupted(reporter, samples, mean_loss, None)
        finally:
            if log is not None:
                log.close()
            reporter.stop()
        checkpoint = self.paths.checkpoint if self.paths is not None else None
        return TrainResult(step=self.step, checkpoint=checkpoint, samples=tuple(samples), loss=mean_loss)

    def _interrupted(self, reporter: Reporter, samples: list[Path], loss: float | None,
                     rng: Mapping[str, Any] | None) -> TrainResult:
        checkpoint = None
        if self.paths is not None:
            if self.last_checkpoint != self.step:
                reporter.wrote("checkpoint", self.save(rng), self.step)
            checkpoint = self.paths.checkpoint
        return TrainResult(step=self.step, interrupted=True, checkpoint=checkpoint, samples=tuple(samples), loss=loss,
                           signal=self.stop_signal or signal.SIGINT)

    def _non_finite_message(self, bad: _NonFinite) -> str:
        where = f"the {bad.what} is {bad.value} at step {self.step + 1}: training stopped"
        if self.paths is not None and self.last_checkpoint is not None:
            kept = f"{self.paths.checkpoint} (step {self.last_checkpoint}) is kept"
        else:
            kept = "no checkpoint was written yet"
        return f"{where}; {kept} — try a lower --lr or a longer warm-up"

    def _open_log(self):
        """Open log.jsonl for appending, first dropping records after the resumed step."""
        if self.paths is None or not self.ranks.main:
            return None
        try:
            return self._reopen_log(self.paths.log)
        except OSError as err:
            raise TrainingError(f"cannot write to {self.paths.root}: {err.strerror or err}") from None

    def _reopen_log(self, log: Path):
        if log.exists():
            kept = []
            for line in log.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["step"] <= self.step:
                        kept.append(line + "\n")
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
            atomic_write_text(log, "".join(kept), replaces="run")
        log.parent.mkdir(parents=True, exist_ok=True)
        return log.open("a", encoding="utf-8")


# --- the whole job --------------------------------------------------------------------------------


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``auto`` (or ``None``): CUDA when available, else the CPU; ``cuda`` without a GPU is an error."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
    return device


def _plain(spec: ComponentSpec | None) -> ComponentSpec | None:
    """``spec`` with list values as tuples: JSON and TOML give lists where options hold tuples."""
    if spec is None:
        return None
    return ComponentSpec(spec.name, {k: tuple(v) if isinstance(v, list) else v for k, v in spec.options})


def check_resumable(ckpt: Checkpoint, pipeline: Pipeline, dataset_info: Mapping[str, Any]) -> None:
    """A resumed run must learn the same thing: same schedule, denoiser, objective and data."""
    for kind in TRAINING_KINDS:
        old, new = _plain(ckpt.spec.get(kind)), _plain(pipeline.spec.get(kind))
        if old == new:
            continue
        if old is None or new is None or old.name != new.name:
            said = f"{kind} '{old.name}'" if old is not None else f"no {kind}"
            raise TrainingError(f"{ckpt.path} was trained with {said}; the pipeline now has "
                                f"{f'{kind} {new.name!r}' if new is not None else f'no {kind}'}: resume with the same pipeline")
        diff = next(k for k in {**old.options_dict, **new.options_dict}
                    if old.options_dict.get(k) != new.options_dict.get(k))
        raise TrainingError(f"{ckpt.path} was trained with {kind}.{diff}={old.options_dict.get(diff)!r}; the pipeline "
                            f"now sets {new.options_dict.get(diff)!r}: resume with the same pipeline")
    old_g, new_g = ckpt.spec.get("guidance"), pipeline.spec.get("guidance")
    if (old_g is None) != (new_g is None) or (old_g is not None and old_g.name != new_g.name):
        said = f"guidance '{old_g.name}'" if old_g is not None else "no guidance"
        raise TrainingError(f"{ckpt.path} was trained with {said}; the pipeline now has "
                            f"{f'guidance {new_g.name!r}' if new_g is not None else 'no guidance'}: resume with the same "
                            "pipeline (guidance such as cfg changes what is trained)")
    if new_g is not None:  # options that shape training (cfg's label dropout) must not change; the scale may
        keys = getattr(type(pipeline.guidance), "training_options", ())
        old_o, new_o = _plain(old_g).options_dict, _plain(new_g).options_dict
        diff = next((k for k in keys if old_o.get(k) != new_o.get(k)), None)
        if diff is not None:
            raise TrainingError(f"{ckpt.path} was trained with guidance.{diff}={old_o.get(diff)!r}; the pipeline now "
                                f"sets {new_o.get(diff)!r}: resume with the same pipeline")
    saved = ckpt.dataset
    for key in ("name", "shape", "size", "num_classes"):
        if key in saved and saved[key] != dataset_info.get(key):
            raise TrainingError(f"{ckpt.path} was trained on {saved.get('name')} with {key}={saved[key]}; "
                                f"this data has {key}={dataset_info.get(key)}: resume with the same --data")


def resume_state(out: str | Path, **overrides: Any) -> tuple[Checkpoint, TrainConfig]:
    """The checkpoint of the run in ``out`` and its configuration with ``overrides`` applied."""
    paths = RunPaths(Path(out))
    paths.prepare(resume=True)
    ckpt = read_checkpoint(paths.checkpoint)
    return ckpt, config_for_resume(ckpt.train_config, **overrides)


def train(spec: PipelineSpec | Pipeline, dataset: ArrayDataset, config: TrainConfig, *,
          out: str | Path | None = None, resume: bool = False, device: str | torch.device | None = None,
          reporter: Reporter | None = None, dataset_spec: ComponentSpec | None = None,
          source: str = "pipeline", checkpoint: Checkpoint | None = None) -> TrainResult:
    """Fit the pipeline to the data, train it, and write the run to ``out``.

    With ``resume`` the run in ``out`` continues from its checkpoint (read here unless given
    as ``checkpoint``); otherwise ``out`` must not hold a run yet. Nothing is written before
    every check has passed.
    """
    paths = RunPaths(Path(out)) if out is not None else None
    ranks = distributed.current()
    if paths is None and resume:
        raise OptionError("resume needs the run directory (out)")
    owner = paths is not None and ranks.main  # one process writes the run directory, and holds its lock
    with paths.lock() if owner else contextlib.nullcontext():
        if owner:
            paths.prepare(resume)
        if paths is not None:
            distributed.barrier(ranks)
        return _train_locked(spec, dataset, config, out=out, resume=resume, device=device, reporter=reporter,
                             dataset_spec=dataset_spec, source=source, checkpoint=checkpoint, paths=paths)


def _train_locked(spec, dataset, config, *, out, resume, device, reporter, dataset_spec, source, checkpoint,
                  paths) -> TrainResult:
    device = resolve_device(device)
    if resume and checkpoint is None:
        checkpoint = read_checkpoint(paths.checkpoint)
    torch.manual_seed(config.seed)
    pipeline, filled = fit_to_data(spec, dataset, source=source)
    T = getattr(pipeline.schedule, "grid_size", None)
    if config.sample_steps is not None and T is not None and config.sample_steps > T:
        raise OptionError(f"sample_steps={config.sample_steps} is more than the schedule's T={T}: use at most {T}")
    world = distributed.current().world
    if config.batch_size * world > len(dataset):
        raise OptionError(f"batch_size={config.batch_size}{f' × {world} processes' if world > 1 else ''} is more than the "
                          f"{len(dataset):,} examples of the data: use at most {len(dataset) // world:,}")
    info = describe_dataset(dataset, dataset_spec)
    if checkpoint is not None:
        check_resumable(checkpoint, pipeline, info)
    trainer = Trainer(pipeline, dataset, config, device=device, out=out, dataset_info=info, filled=filled)
    if checkpoint is not None:
        trainer.load_state(checkpoint)
    elif config.init is not None:
        trainer.warm_start(read_checkpoint(config.init))
    return trainer.fit(reporter)
