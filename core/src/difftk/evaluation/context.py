"""What a metric sees and what it returns: the :class:`EvalContext` and the :class:`MetricResult`.

A metric is a frozen attrs class (its fields are its options, e.g. the sample count) with
``evaluate(context) -> MetricResult`` (:class:`difftk.components.protocols.Metric`).
``difftk evaluate CHECKPOINT --metric NAME`` builds the context from the checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch

from difftk.data.arrays import ArrayDataset
from difftk.errors import DifftkError


@attrs.frozen
class EvalContext:
    """What a metric may use: a trained model, how to sample it, and the held-out data.

    :param model: the :class:`difftk.model.Model` being measured.
    :param data: the held-out split of the training data (``None`` if it cannot be loaded).
    :param sampler: the sampler instance to draw with (``None``: the model's pipeline's).
    :param guidance: the guidance to draw with: an instance, ``None`` (the pipeline's own) or
        ``False`` (unguided), as :meth:`difftk.model.Model.sample` takes it.
    :param seed: every random draw of the metric derives from it, so results are reproducible.
    :param steps: sampler steps for metrics that draw samples (``None``: the sampler's default).
    :param batch_size: samples drawn at once.

    Sample-based metrics draw with :meth:`samples`, which is :meth:`Model.sample` with these
    settings — so ``difftk evaluate --sampler ddim --steps 50 --scale 3`` measures exactly
    that way of sampling.
    """

    model: Any
    data: ArrayDataset | None
    sampler: Any = None
    guidance: Any = None
    seed: int = 0
    steps: int | None = None
    batch_size: int = 256
    _drawn: dict = attrs.field(factory=dict, init=False, eq=False, repr=False)

    @property
    def pipeline(self) -> Any:
        """The model's pipeline with the sampler and guidance this context samples with."""
        if self.sampler is None and self.guidance is None:
            return self.model.pipeline
        sampler = self.sampler if self.sampler is not None else self.model.pipeline.sampler
        guidance = self.model.guidance(self.guidance) if self.guidance is not False else None
        return attrs.evolve(self.model.pipeline, sampler=sampler, guidance=guidance)

    @property
    def denoiser(self) -> Any:
        """The model's (unguided) denoiser, in eval mode, on :attr:`device`."""
        return self.model.denoiser

    @property
    def device(self) -> torch.device:
        return self.model.device

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed + offset)

    def held_out(self, metric: str, kind: str | None = None) -> ArrayDataset:
        """The held-out data, or one line naming ``metric`` and why it cannot measure: the data cannot
        be loaded, or is not of ``kind`` (``"image"`` for 8-bit images, ``"points"``)."""
        if self.data is None:
            raise DifftkError(f"metric '{metric}' needs the held-out data, but the checkpoint's dataset cannot be "
                              "loaded: install its dataset plugin, or give the held-out data (data=NAME[:PATH], "
                              "with its options)")
        if kind == "image" and self.data.kind != "image":
            raise DifftkError(f"metric '{metric}' measures 8-bit images; {self.data.name} holds "
                              f"{self.data.shape[0]}-D points")
        if kind == "points" and self.data.kind != "points":
            raise DifftkError(f"metric '{metric}' compares point clouds, but {self.data.name} holds images")
        return self.data

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example the model makes."""
        return self.model.data_shape

    @property
    def num_classes(self) -> int:
        """The classes the denoiser is conditioned on (0: unconditional)."""
        return self.model.num_classes

    def balanced_labels(self, n: int) -> torch.Tensor | None:
        """Labels 0, 1, …, K−1, 0, 1, … for n samples of a class-conditional model; ``None`` otherwise."""
        return torch.arange(n) % self.num_classes if self.num_classes else None

    def samples(self, n: int, cond: torch.Tensor | None = None, *, offset: int = 0) -> torch.Tensor:
        """n samples [n, *shape] (float32, CPU) drawn by :meth:`Model.sample` with this context's
        sampler, guidance and steps, seeded by ``seed + offset``, with the sampler's options as
        they are (no clipping unless set). Samples are kept for the context's lifetime, so metrics
        asking for the same draw share it."""
        key = (n, None if cond is None else tuple(cond.tolist()), offset)
        if key in self._drawn:  # e.g. fid and accuracy of one evaluation share their samples
            return self._drawn[key]
        x = self.model.sample(n, sampler=self.sampler, guidance=self.guidance, labels=cond, steps=self.steps,
                              seed=self.seed + offset, batch_size=self.batch_size)
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


