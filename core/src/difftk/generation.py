"""Drawing samples from a trained denoiser: noise in, data out, in batches, reproducibly.

Used by the training loop (its periodic sample grids) and by ``difftk sample``. The sampler
is any registered one; the schedule is the model's own, so a model trained with one sampler
in its pipeline can be sampled by every other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from difftk import plugins
from difftk.errors import OptionError, did_you_mean
from difftk.pipeline import ComponentSpec
from difftk.sampling import StepInfo

def make_component(kind: str, name: str | None, options: Mapping[str, Any] | None = None, *,
                   base: ComponentSpec | None = None) -> Any:
    """Create a ``kind`` component by ``name`` (default: ``base``, the pipeline's own).

    ``options`` are strings from the command line (``--set sampler.eta=0.5``); when ``name``
    is ``base``'s, they override ``base``'s options.
    """
    if name is None and base is None:
        raise OptionError(f"options are set for the {kind}, but the model's pipeline has none: add --{kind} NAME")
    if name is not None and not name.strip():
        raise OptionError(f"an empty {kind} name: give a registered one (`difftk plugins` lists them)")
    name = name or base.name
    info = plugins.host().registry.get(kind, name)
    merged: dict[str, Any] = dict(base.options_dict) if base is not None and base.name == name else {}
    merged.update(options or {})
    return info.build(merged, from_strings=True)


def make_sampler(name: str | None, options: Mapping[str, Any] | None = None, *,
                 base: ComponentSpec | None = None) -> Any:
    """:func:`make_component` for the sampler. Its options are exactly what it runs with: x̂₀
    clipping (``clip_x0``) is off unless it is set, since no model should need it."""
    return make_component("sampler", name, options, base=base)


def check_steps(schedule: Any, steps: int | None) -> None:
    """A one-line error for a step count the schedule cannot give (more than its T steps)."""
    T = getattr(schedule, "grid_size", None)
    if steps is not None and steps < 1:
        raise OptionError(f"steps={steps} must be at least 1")
    if steps is not None and T is not None and steps > T:
        raise OptionError(f"--steps {steps} is more than the model's schedule has (T={T}): use --steps 1..{T}")


def class_labels(n: int, num_classes: int, label: int | str | None = None,
                 class_names: Sequence[str] = ()) -> torch.Tensor | None:
    """Conditioning labels for ``n`` samples: all ``label``, or 0, 1, …, C−1, 0, … when none
    is given (a grid of C columns then shows one class per column); ``None`` for an
    unconditional model."""
    if label is None:
        return torch.arange(n) % num_classes if num_classes > 0 else None
    index = parse_label(label, num_classes, class_names)
    return torch.full((n,), index, dtype=torch.long)


def class_rows(n: int, num_classes: int, columns: int) -> torch.Tensor:
    """Labels for a grid of ``columns`` columns in which row r holds class r mod C."""
    return (torch.arange(n) // columns) % num_classes


def parse_label(label: int | str, num_classes: int, class_names: Sequence[str] = ()) -> int:
    """A class index from an index or a class name, checked against the model's classes."""
    if num_classes <= 0:
        raise OptionError(f"--label {label}: the model is unconditional (trained without class labels)")
    names = list(class_names)
    text = str(label).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
    elif text in names:
        index = names.index(text)
    else:
        known = f" or a class name ({', '.join(names)})" if names else ""
        raise OptionError(f"--label {text!r} is not a class index 0..{num_classes - 1}{known}{did_you_mean(text, names)}")
    if not 0 <= index < num_classes:
        raise OptionError(f"--label {index} is out of range: the model has classes 0..{num_classes - 1}")
    return index


def num_classes_of(denoiser: Any) -> int:
    """Classes a denoiser is conditioned on: its ``num_classes`` attribute or option (0 = none)."""
    value = getattr(denoiser, "num_classes", None)
    if value is None:
        value = getattr(getattr(denoiser, "config", None), "num_classes", 0)
    return int(value or 0)


def trajectory_indices(total: int, frames: int) -> list[int]:
    """Up to ``frames`` step indices spread evenly over ``total`` steps, the first and (for two
    or more frames) the last included."""
    return sorted({int(i) for i in np.round(np.linspace(0, total - 1, max(1, min(frames, total))))})


class TrajectoryRecorder:
    """A sampling callback that keeps x̂₀ of the first batch at up to ``frames`` steps.

    x̂₀ = E[x₀ | x_t] as the denoiser sees it (:attr:`StepInfo.x0`): blurry averages at
    large t that sharpen into the sample as t → 0. ``keep`` limits how many examples each
    frame stores.
    """

    def __init__(self, frames: int = 8, keep: int | None = None) -> None:
        self.count, self.keep = frames, keep
        self.frames: list[torch.Tensor] = []
        self.times: list[float] = []
        self._wanted: set[int] | None = None

    def __call__(self, batch: int, info: StepInfo) -> None:
        if batch != 0:
            return
        if self._wanted is None:
            self._wanted = set(trajectory_indices(info.total, self.count))
        if info.index in self._wanted:
            x0 = info.x0 if self.keep is None else info.x0[: self.keep]
            self.frames.append(x0.detach().float().cpu())
            self.times.append(float(info.t))


@torch.inference_mode()
def generate(denoiser: Any, schedule: Any, sampler: Any, shape: Sequence[int], n: int, *,
             steps: int | None = None, cond: torch.Tensor | None = None, seed: int = 0,
             device: torch.device | str = "cpu", batch_size: int | None = None,
             callback: Callable[[int, StepInfo], None] | None = None) -> torch.Tensor:
    """``n`` samples of one example ``shape`` on the CPU (float32), drawn in batches.

    x_T ~ N(0, I) and the sampler's noise come from one generator seeded with ``seed`` on
    ``device``, so a seed gives the same samples every time. ``callback(batch, info)`` is
    called after every step of every batch.
    """
    check_steps(schedule, steps)
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    batch_size = batch_size or n
    out = []
    for b, start in enumerate(range(0, n, batch_size)):
        size = min(batch_size, n - start)
        x_T = torch.randn((size, *shape), generator=generator, device=device)
        c = cond[start:start + size].to(device) if cond is not None else None
        step_cb = (lambda info, b=b: callback(b, info)) if callback is not None else None
        x = sampler.sample(denoiser, schedule, x_T, steps=steps, cond=c, generator=generator, callback=step_cb)
        out.append(x.float().cpu())
    return torch.cat(out)
