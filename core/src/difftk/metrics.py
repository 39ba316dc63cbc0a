"""Metrics: a component kind that turns a trained model (and data) into a number with its spread.

A metric is a frozen attrs class (its fields are its options, e.g. the sample count) with
``evaluate(context) -> MetricResult``. ``difftk evaluate CHECKPOINT --metric NAME`` builds the
:class:`EvalContext` from the checkpoint and prints the result.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import attrs
import torch

from difftk.data import ArrayDataset


@attrs.frozen
class EvalContext:
    """What a metric may use.

    :param pipeline: the checkpoint's pipeline (schedule, sampler, objective, guidance...).
    :param denoiser: its EMA denoiser, in eval mode, on ``device``.
    :param data: the held-out split of the training data (``None`` if it cannot be loaded).
    :param device: where to compute.
    :param seed: every random draw of the metric derives from it, so results are reproducible.
    """

    pipeline: Any
    denoiser: Any
    data: ArrayDataset | None
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    seed: int = 0

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed + offset)


@attrs.frozen
class MetricResult:
    """A value with its spread: ``value ± spread`` over ``n`` samples (``spread`` is a standard error
    unless ``spread_kind`` says otherwise)."""

    name: str
    value: float
    spread: float
    n: int
    unit: str = ""
    spread_kind: str = "standard error"
    details: dict = attrs.field(factory=dict)

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} = {self.value:.4f} ± {self.spread:.4f}{unit} ({self.spread_kind}, n = {self.n:,})"


def mean_and_standard_error(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error s/√n of a 1-D tensor."""
    v = values.detach().to(torch.float64).flatten()
    n = v.numel()
    return float(v.mean()), float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")


@runtime_checkable
class Metric(Protocol):
    """Contract: ``evaluate(context)`` returns a :class:`MetricResult`, deterministic for a given
    ``context.seed``, and raises a one-line :class:`~difftk.errors.DifftkError` when the model or
    data cannot be measured by it (e.g. bits/dim of 2-D points)."""

    def evaluate(self, context: EvalContext) -> MetricResult: ...
