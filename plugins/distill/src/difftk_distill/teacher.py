"""The teacher of a distillation: any model ``difftk.load`` reads, asked in the student's VP frame."""

from __future__ import annotations

import functools
from typing import Any

import difftk
import torch
from difftk.components.protocols import num_classes_of
from difftk.errors import DifftkError, OptionError
from difftk.maths.schedules import time_of
from difftk.sampling.steps import Prediction, predict


@functools.lru_cache(maxsize=4)
def load_teacher(source: str, device: str) -> Any:
    """The model at ``source`` (a checkpoint, run directory or shipped name), frozen, on ``device``; read once."""
    try:
        model = difftk.load(source, device=device)
    except DifftkError as err:
        raise OptionError(f"teacher={source!r} cannot be read: {err}") from None
    model.denoiser.eval().requires_grad_(False)
    return model


def teacher_cond(teacher: Any, cond: torch.Tensor | None) -> torch.Tensor | None:
    """The student's labels for a teacher conditioned on as many classes; ``None`` for an unconditional teacher."""
    return cond if cond is not None and num_classes_of(teacher.denoiser) > 0 else None


@torch.no_grad()
def teacher_predict(teacher: Any, x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: torch.Tensor | None) -> Prediction:
    """The teacher's ε̂ and x̂₀ at the VP state x_t of signal level ᾱ ([B]): it is asked at its own
    schedule's time of that ᾱ, so teacher and student may have different schedules (any Gaussian
    path is a VP path up to a scale, docs/math.md)."""
    t = time_of(teacher.schedule, alpha_bar.to(torch.float64)).to(x_t.dtype)
    return predict(teacher.denoiser, x_t, t, alpha_bar.to(x_t.dtype), teacher_cond(teacher, cond))
