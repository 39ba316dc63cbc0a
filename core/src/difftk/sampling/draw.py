"""The batch loop that turns noise into samples, and the class labels samples are drawn for.

:func:`generate` is called by :meth:`difftk.model.Model.sample` only: every path that draws
samples (the CLI, evaluation, metrics, the trainer's grids) goes through the model object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from difftk.components.protocols import Denoiser, NoiseSchedule
from difftk.components.wrapping import reset_all
from difftk.errors import DifftkError, OptionError, PluginError, did_you_mean
from difftk.maths.terminal import for_sampling
from difftk.runtime import distributed
from difftk.sampling.edit import Edit
from difftk.sampling.noise import ExampleNoise
from difftk.sampling.steps import StepInfo


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
        raise OptionError(f"label={label}: the model is unconditional (trained without class labels)")
    names = list(class_names)
    text = str(label).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
    elif text in names:
        index = names.index(text)
    else:
        known = f" or a class name ({', '.join(names)})" if names else ""
        raise OptionError(f"label={text!r} is not a class index 0..{num_classes - 1}{known}{did_you_mean(text, names)}")
    if not 0 <= index < num_classes:
        raise OptionError(f"label={index} is out of range: the model has classes 0..{num_classes - 1}")
    return index


def _origin(sampler: Any) -> str:
    """``sampler 'ddim' (plugin ddim)``: the sampler and the plugin that registered it, for error lines."""
    from difftk.pipeline.compose import spec_of

    try:
        spec = spec_of("sampler", sampler)
    except DifftkError:
        return f"sampler {type(sampler).__name__}"
    return f"sampler '{spec.name}'" + (f" (plugin {spec.plugin})" if spec.plugin else "")


def _checked(x: Any, x_T: torch.Tensor, sampler: Any, batch: int) -> torch.Tensor:
    """The batch a sampler returned, if it is one: a tensor of x_T's shape, every value finite.
    Anything else is one line naming the sampler, so no output is ever made of it."""
    if not isinstance(x, torch.Tensor):
        raise PluginError(f"{_origin(sampler)} returned {type(x).__name__}, not a tensor of samples: nothing was written")
    if tuple(x.shape) != tuple(x_T.shape):
        raise PluginError(f"{_origin(sampler)} returned samples of shape {list(x.shape)} for a batch of "
                          f"{list(x_T.shape)}: nothing was written")
    bad = int((~torch.isfinite(x)).sum()) if x.is_floating_point() else 0
    if bad:
        raise PluginError(f"{_origin(sampler)} returned {bad:,} NaN or infinite values of {x.numel():,} in batch {batch}: "
                          "nothing was written (a diverging sampler or model: try more steps, or another sampler)")
    return x


@torch.inference_mode()
def generate(denoiser: Denoiser, schedule: NoiseSchedule, sampler: Any, shape: Sequence[int], n: int, *,
             steps: int | None = None, cond: torch.Tensor | None = None, seed: int = 0,
             device: torch.device | str = "cpu", batch_size: int | None = None,
             callback: Callable[[int, StepInfo], None] | None = None, edit: Edit | None = None,
             ranks: distributed.Ranks | None = None) -> torch.Tensor | None:
    """``n`` samples of one example ``shape`` on the CPU (float32), drawn in batches.

    Sample i's x_T and its share of the sampler's noise come from its own stream
    (:class:`~difftk.sampling.noise.ExampleNoise`, seeded by ``seed`` and i), so a seed gives
    the same sample i every time, whatever the batch size. ``callback(batch, info)`` is called
    after every step of every batch. A schedule that reaches pure noise is sampled through its
    :class:`~difftk.maths.terminal.TerminalFloor`. With ``edit`` the samples start from noised images
    (SDEdit) and may keep part of them (inpainting): :class:`~difftk.sampling.edit.Edit`.

    With ``ranks`` of several processes, each draws its block of the batches
    (:func:`~difftk.runtime.distributed.share`) and process 0 returns all ``n`` samples, equal bit for
    bit to one process's draw (the same batches, the same streams); the other processes return ``None``.
    """
    device = torch.device(device)
    batch_size = batch_size or n
    schedule = for_sampling(schedule)  # ᾱ(1) = 0 raised to the floor every sampler can step from
    starts = range(0, n, batch_size)
    out = [torch.empty((0, *shape))]  # a process may have no batch of its own
    for b in distributed.share(len(starts), ranks or distributed.Ranks()):
        start = starts[b]
        size = min(batch_size, n - start)
        noise = ExampleNoise(seed, range(start, start + size), device)
        x_T = noise.randn((size, *shape), device=device)
        c = cond[start:start + size].to(device) if cond is not None else None
        step_cb = (lambda info, b=b: callback(b, info)) if callback is not None else None
        net, clock = denoiser, schedule
        if edit is not None:
            net, clock, x_T = edit.for_batch(denoiser, schedule, start, x_T)
        reset_all(net)  # a batch is a draw of its own: no state from the one before (APG's momentum)
        try:
            x = sampler.sample(net, clock, x_T, steps=steps, cond=c, generator=noise, callback=step_cb)
        except (DifftkError, KeyboardInterrupt):
            raise
        except Exception as err:  # a third party's sampler: one line naming it, never everyone's traceback
            raise PluginError(f"{_origin(sampler)} failed while sampling: {type(err).__name__}: "
                              f"{' '.join(str(err).split())[:300]}") from None
        out.append(_checked(x, x_T, sampler, b).float().cpu())
    x = torch.cat(out)
    return distributed.gather_rows(x, ranks) if ranks is not None else x
