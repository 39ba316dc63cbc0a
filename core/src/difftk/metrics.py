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
from difftk.errors import DifftkError


@attrs.frozen
class EvalContext:
    """What a metric may use.

    :param pipeline: the checkpoint's pipeline (schedule, sampler, objective, guidance...).
    :param denoiser: its EMA denoiser, in eval mode, on ``device``.
    :param data: the held-out split of the training data (``None`` if it cannot be loaded).
    :param device: where to compute.
    :param seed: every random draw of the metric derives from it, so results are reproducible.
    :param steps: sampler steps for metrics that draw samples (``None``: the sampler's default).
    :param data_shape: the shape of one example the model makes (default: the data's).
    :param batch_size: samples drawn at once.

    Sample-based metrics draw with :meth:`samples`, which uses the pipeline's sampler and, when
    the pipeline has a guidance, the guided denoiser — so ``difftk evaluate --sampler ddim
    --steps 50 --scale 3`` measures exactly that way of sampling.
    """

    pipeline: Any
    denoiser: Any
    data: ArrayDataset | None
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    seed: int = 0
    steps: int | None = None
    data_shape: tuple[int, ...] | None = None
    batch_size: int = 256
    _drawn: dict = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed + offset)

    def held_out(self, metric: str, kind: str | None = None) -> ArrayDataset:
        """The held-out data, or one line naming ``metric`` and why it cannot measure: the data cannot
        be loaded, or is not of ``kind`` (``"image"`` for 8-bit images, ``"points"``)."""
        if self.data is None:
            raise DifftkError(f"metric '{metric}' needs the held-out data, but the checkpoint's dataset cannot be "
                              "loaded: install its dataset plugin, or give the held-out data as --data NAME[:PATH] "
                              "(with --data-option KEY=VALUE for its options)")
        if kind == "image" and self.data.kind != "image":
            raise DifftkError(f"metric '{metric}' measures 8-bit images; {self.data.name} holds "
                              f"{self.data.shape[0]}-D points")
        if kind == "points" and self.data.kind != "points":
            raise DifftkError(f"metric '{metric}' compares point clouds, but {self.data.name} holds images")
        return self.data

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example the model makes."""
        if self.data_shape is not None:
            return tuple(self.data_shape)
        if self.data is None:
            raise DifftkError("the shape of the model's examples is unknown: the checkpoint's data cannot be loaded")
        return self.data.shape

    @property
    def num_classes(self) -> int:
        """The classes the denoiser is conditioned on (0: unconditional)."""
        from difftk.generation import num_classes_of

        return num_classes_of(self.denoiser)

    def balanced_labels(self, n: int) -> torch.Tensor | None:
        """Labels 0, 1, …, K−1, 0, 1, … for n samples of a class-conditional model; ``None`` otherwise."""
        return torch.arange(n) % self.num_classes if self.num_classes else None

    def samples(self, n: int, cond: torch.Tensor | None = None, *, offset: int = 0) -> torch.Tensor:
        """n samples [n, *shape] (float32, CPU) from the pipeline's sampler — with its guidance, if any —
        seeded by ``seed + offset``, with the sampler's options as they are (no clipping unless set).
        Samples are kept for the context's lifetime, so metrics asking for the same draw share it."""
        from difftk.generation import generate

        key = (n, None if cond is None else tuple(cond.tolist()), offset)
        if key in self._drawn:  # e.g. fid and accuracy of one evaluation share their samples
            return self._drawn[key]
        denoiser, schedule = self.denoiser, self.pipeline.schedule
        if self.pipeline.guidance is not None and cond is not None:
            denoiser = self.pipeline.guidance.wrap(denoiser, schedule)
        x = generate(denoiser, schedule, self.pipeline.sampler, self.shape, n, steps=self.steps, cond=cond,
                     seed=self.seed + offset, device=self.device, batch_size=self.batch_size)
        self._drawn[key] = x
        return x


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
    caveat: str = ""  # what the value cannot be trusted for (e.g. FID's bias at small n), said with it

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
