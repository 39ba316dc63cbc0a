"""How to train: the :class:`TrainConfig` (optimizer, learning-rate warm-up, EMA, what to write
when), and the rules for changing it when a run is resumed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs

from difftk.errors import CheckpointError, DifftkError, OptionError
from difftk.options import option
from difftk.runtime.fastpath import PRECISIONS

#: the learning rate after warm-up: held at lr, or decayed to lr_final by a half cosine
#: (Loshchilov & Hutter 2017, without restarts) or a straight line
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear")


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
    lr_schedule: str = option("constant", help="the learning rate after warm-up: constant, or a cosine or linear decay "
                              "from lr to lr_final at step decay_steps", choices=LR_SCHEDULES)
    lr_final: float = option(0.0, help="the learning rate the decay ends at (cosine or linear)", ge=0.0, le=1.0)
    decay_steps: int | None = option(None, help="the step at which the decay reaches lr_final and stays; none = steps, "
                                     "the end of the run", ge=1, optional=True)
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
    balance: bool = option(False, help="weigh each example's loss by N/(K·n_k), the balanced class weighting: every "
                           "class counts as if the K classes were in equal numbers (a class-conditional run; "
                           "each class's own target is unchanged, only how much of the training it gets)")
    workers: int = option(0, help="processes that read and decode the batches ahead (DataLoader workers); 0 = read "
                          "in the training process. The batches are the same with any number", ge=0, le=64)
    init: str | None = option(None, help="start from the EMA weights of this checkpoint (fine-tuning); none = random",
                              optional=True)
    eval_every: int = option(0, help="score eval_metrics on the EMA model every K steps (and at the end) and append "
                             "them to log.jsonl; 0 = never", ge=0)
    eval_metrics: tuple[str, ...] = option((), help="registered metrics to score every eval_every steps, e.g. "
                                           "sliced-wasserstein or fid,accuracy")
    eval_n: int | None = option(None, help="samples (or examples) per measurement, for the metrics with an option n; "
                                "none = each metric's default", ge=1, optional=True)

    def __attrs_post_init__(self) -> None:
        if any(not isinstance(name, str) or not name.strip() for name in self.eval_metrics):
            raise OptionError(f"training: eval_metrics={self.eval_metrics!r} must be metric names, e.g. ('fid',)")
        if self.lr_schedule != "constant" and self.lr_final > self.lr:
            raise OptionError(f"training: lr_final={self.lr_final:g} is above lr={self.lr:g}, and a decay ends below "
                              "where it starts: lower lr_final (0 is usual) or raise lr")
        if self.lr_schedule != "constant" and self.decay_steps is not None and self.decay_steps <= self.warmup:
            raise OptionError(f"training: decay_steps={self.decay_steps} ends the decay before warm-up ({self.warmup} "
                              "steps) is over: raise decay_steps or shorten the warm-up")
        if self.eval_every and not self.eval_metrics:
            raise OptionError(f"training: eval_every={self.eval_every} scores eval_metrics, but none is named: name "
                              "at least one registered metric with eval_metrics (`difftk plugins` lists them), or set "
                              "eval_every=0")

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), sort_keys=True)

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (1-based): linear warm-up to lr over ``warmup``
        steps, then ``lr_schedule``: constant, or a cosine or linear decay that reaches
        ``lr_final`` at step ``decay_steps`` (``steps`` when unset) and stays there."""
        if self.warmup and step < self.warmup:
            return self.lr * step / self.warmup
        if self.lr_schedule == "constant":
            return self.lr
        end = self.decay_steps if self.decay_steps is not None else self.steps
        span = end - self.warmup
        done = 1.0 if span <= 0 else min(max(step - self.warmup, 0) / span, 1.0)
        shape = 0.5 * (1.0 + math.cos(math.pi * done)) if self.lr_schedule == "cosine" else 1.0 - done
        return self.lr_final + (self.lr - self.lr_final) * shape

    def ema_decay_at(self, step: int) -> float:
        """EMA decay after ``step`` updates: min(decay, (1+s)/(10+s)), the warm-up of TensorFlow's
        ``ExponentialMovingAverage(num_updates=s)``, so short runs do not average in their init."""
        return min(self.ema_decay, (1 + step) / (10 + step))


TrainConfig.component_label = "training"


#: settings a resumed run cannot change without the checkpoint misstating how it was made: the seed
#: (every RNG state comes from the checkpoint, so a new seed would be recorded but never used) and
#: the starting weights of a fine-tuning run
FIXED_ON_RESUME: tuple[str, ...] = ("seed", "init")


def check_saved_config(saved: Mapping[str, Any], source: str = "the checkpoint") -> None:
    """Each setting of a checkpoint's ``train_config`` checked alone, by the validator of its field:
    a bad value is the file's fault and is said so, naming the stored setting, never a flag the user
    did not give."""
    fields = attrs.fields_dict(TrainConfig)
    for key, value in saved.items():
        attribute = fields.get(key)
        if attribute is None or attribute.validator is None:
            continue
        converted = attribute.converter(value) if attribute.converter is not None else value
        try:
            attribute.validator(None, attribute, converted)
        except OptionError as err:
            reason = str(err).split(f"option {key}={converted!r}", 1)[-1].strip()
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "…"
            raise CheckpointError(f"{source}: its stored training setting {key} = {shown} {reason}; the file was "
                                  "edited or is not from difftk train") from None


def config_for_resume(saved: Mapping[str, Any], *, source: str = "the checkpoint", **overrides: Any) -> TrainConfig:
    """The configuration a checkpoint was trained with, with the given (non-``None``) overrides.

    The stored settings are checked first (:func:`check_saved_config`). Overrides of
    :data:`FIXED_ON_RESUME` that differ from the run's are refused.
    """
    check_saved_config(saved, source)
    fields = attrs.fields_dict(TrainConfig)
    base = {k: v for k, v in saved.items() if k in fields}
    for key in FIXED_ON_RESUME:
        if overrides.get(key) is not None and key in base and overrides[key] != base[key]:
            raise TrainingError(f"the run was trained with {key}={base[key]!r} and a resumed run keeps it: "
                                f"drop the new {key} ({overrides[key]!r}), or start a new run with another out=DIR")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**base)


def changed_settings(saved: Mapping[str, Any], config: TrainConfig) -> list[str]:
    """``name old → new`` for every setting a resumed run changes (``steps`` aside), to be said."""
    now = {f.name: getattr(config, f.name) for f in attrs.fields(TrainConfig)}
    changed = [f"{k} {_plain(saved[k])!r} → {now[k]!r}" for k in now
               if k != "steps" and k in saved and _plain(saved[k]) != now[k]]
    if config.lr_schedule != "constant" and config.decay_steps is None and saved.get("steps", config.steps) != config.steps:
        changed.append(f"the {config.lr_schedule} decay, which ends at steps, now ends at step {config.steps:,} "
                       f"instead of {saved['steps']:,} (--decay-steps fixes where it ends)")
    return changed


def _plain(value: Any) -> Any:
    """A JSON value as the config holds it: lists (JSON has no tuples) as tuples."""
    return tuple(value) if isinstance(value, list) else value
