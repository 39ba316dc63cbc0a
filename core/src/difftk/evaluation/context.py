"""What a metric sees and what it returns: the :class:`EvalContext` and the :class:`MetricResult`.

A metric is a frozen attrs class (its fields are its options, e.g. the sample count) with
``evaluate(context) -> MetricResult`` (:class:`difftk.components.protocols.Metric`).
``difftk evaluate CHECKPOINT --metric NAME`` builds the context from the checkpoint;
``difftk evaluate --samples DIR_OR_NPZ`` from the images another generator made
(:meth:`EvalContext.from_images`), so that the same metrics measure them.

Under torchrun the draws are split over the processes: process 0 runs the metrics, and every
draw it makes (:meth:`EvalContext.samples`) is drawn by all processes together, each its block of
the batches, and gathered on process 0, while the others :meth:`~EvalContext.serve`. The samples
are those of one process, bit for bit, so every metric's value is too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import attrs
import torch

from difftk.data.arrays import ArrayDataset, to_uint8_images
from difftk.errors import DifftkError, IncompatibleError
from difftk.runtime import distributed


#: the share of the free memory one draw may take: the rest is the metric's features, the model and headroom
DRAW_SHARE = 0.25


def free_memory() -> int:
    """Bytes this process may still allocate: the smaller of what the system has available
    (``MemAvailable``) and what is left under the process's address-space limit (``RLIMIT_AS``,
    ``ulimit -v``). Where neither can be read, a large number: no refusal on a guess."""
    free = 1 << 62
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as fh:
            free = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    with contextlib.suppress(ImportError, OSError, ValueError, StopIteration):
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            with open("/proc/self/status") as fh:
                used = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
            free = min(free, max(0, limit - used))
    return free


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} PB"


def check_draw(n: int, shape: tuple[int, ...], what: str = "samples") -> None:
    """Refuse in one line, before allocating anything, a draw of ``n`` examples of ``shape`` that
    would not fit in memory: the samples a metric scores are held at once (float32, with an int64
    label each), so ``n`` is bounded by the memory free now (:func:`free_memory`, of which a draw
    may take :data:`DRAW_SHARE`)."""
    each = 4 * math.prod(shape) + 8
    budget = int(free_memory() * DRAW_SHARE)
    if n * each > budget:
        raise DifftkError(f"n={n:,} {what} of {'×'.join(map(str, shape))} would take {_bytes(n * each)} of memory at once, "
                          f"and {_bytes(budget / DRAW_SHARE)} is free: give n ≤ {max(1, budget // each):,}")


def refuse_unmeasurable(metric_names: Sequence[str], *, latent: bool) -> None:
    """Refuse, before any work, the metrics that cannot measure a model: with ``latent`` (the model
    diffuses an autoencoder's latents), every metric whose class says ``likelihood = True``, a
    likelihood of the data under the diffusion model (bits/dim, such as ``bpd-vlb`` and ``bpd-ode``).
    A latent model's likelihood is one of its latents, not of the images: no bits/dim of the data
    follows from it without the decoder's own likelihood (Rombach et al. 2022 report none)."""
    if not latent:
        return
    from difftk.components import plugins

    registry = plugins.registry()
    for name in metric_names:
        if getattr(registry.get("metric", name).cls, "likelihood", False) is True:
            raise IncompatibleError(
                f"metric '{name}' is a likelihood of the images under the diffusion model, but this model diffuses "
                "the latents of an autoencoder, and a likelihood of latents is not bits/dim of the images: measure "
                "the model with sample-based metrics (fid, kid, accuracy, …)"
            )


class NeedsModelError(DifftkError):
    """A measurement of a set of images asked for the model that made them (its denoiser, pipeline, data)."""


@attrs.frozen
class EvalContext:
    """What a metric may use: a trained model, how to sample it, and the held-out data.

    :param model: the :class:`difftk.model.Model` being measured (``None`` with ``images``).
    :param data: the held-out split of the training data (``None`` if it cannot be loaded).
    :param sampler: the sampler instance to draw with (``None``: the model's pipeline's).
    :param guidance: the guidance to draw with: an instance, ``None`` (the pipeline's own) or
        ``False`` (unguided), as :meth:`difftk.model.Model.sample` takes it.
    :param seed: every random draw of the metric derives from it, so results are reproducible.
    :param steps: sampler steps for metrics that draw samples (``None``: the sampler's default).
    :param batch_size: samples drawn at once.
    :param images: a set of images any generator made, measured instead of a model's samples
        (:meth:`from_images`).
    :param ranks: the processes that share every draw (:mod:`difftk.runtime.distributed`).

    Sample-based metrics draw with :meth:`samples`, which is :meth:`Model.sample` with these
    settings — so ``difftk evaluate --sampler ddim --steps 50 --scale 3`` measures exactly
    that way of sampling.
    """

    _model: Any = attrs.field(alias="model")
    data: ArrayDataset | None
    sampler: Any = None
    guidance: Any = None
    seed: int = 0
    steps: int | None = None
    batch_size: int = 256
    images: ArrayDataset | None = None
    ranks: distributed.Ranks = attrs.field(factory=distributed.Ranks)
    _drawn: dict = attrs.field(factory=dict, init=False, eq=False, repr=False)

    @classmethod
    def from_images(cls, images: ArrayDataset, data: ArrayDataset | None, *, seed: int = 0) -> EvalContext:
        """The context of a set of images (uint8, e.g. :func:`difftk.evaluation.sample_files.read_samples`):
        :meth:`samples` returns them, :attr:`shape` is theirs, :attr:`num_classes` comes from their
        labels (0 without), and a metric that needs the model is one line."""
        if images.kind != "image":
            raise DifftkError(f"{images.name} holds points; a set to measure holds 8-bit images")
        return cls(model=None, data=data, seed=seed, images=images)

    @property
    def model(self) -> Any:
        """The :class:`difftk.model.Model` being measured; a set of images has none (:class:`NeedsModelError`)."""
        if self._model is None:
            raise NeedsModelError(f"needs the model that made the images (its denoiser, pipeline or data), but "
                                  f"{self.images.name if self.images is not None else 'this context'} holds images only: "
                                  "evaluate the checkpoint instead")
        return self._model

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
        return self.model.device if self.images is None else torch.device("cpu")

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed + offset)

    def held_out(self, metric: str, kind: str | None = None) -> ArrayDataset:
        """The held-out data, or one line naming ``metric`` and why it cannot measure: the data cannot
        be loaded, or is not of ``kind`` (``"image"`` for 8-bit images, ``"points"``)."""
        if self.data is None and self.images is not None:
            raise DifftkError(f"metric '{metric}' compares {self.images.name} with held-out data, but none was given: "
                              "give the held-out data (data=NAME[:PATH], with its options)")
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
        """The shape of one example the model makes (or of the given images)."""
        return self.model.data_shape if self.images is None else self.images.shape

    @property
    def num_classes(self) -> int:
        """The classes the denoiser is conditioned on (0: unconditional); for given images, the
        largest of their labels + 1 (0 when they come without labels)."""
        return self.model.num_classes if self.images is None else self.images.num_classes

    def balanced_labels(self, n: int) -> torch.Tensor | None:
        """Labels 0, 1, …, K−1, 0, 1, … for n samples of a class-conditional model (for given images:
        the labels of the first n); ``None`` when unconditional."""
        if self.images is not None:
            labels = self.images.labels
            return labels[:n].clone() if labels is not None and n <= len(labels) else None
        if not self.num_classes:
            return None
        check_draw(n, self.shape)  # the labels come before the samples they are for: refuse both at once
        return torch.arange(n) % self.num_classes

    def samples(self, n: int, cond: torch.Tensor | None = None, *, offset: int = 0) -> torch.Tensor:
        """n samples [n, *shape] (float32, CPU) drawn by :meth:`Model.sample` with this context's
        sampler, guidance and steps, seeded by ``seed + offset``, with the sampler's options as
        they are (no clipping unless set). Images are quantised to 8 bits, as the PNGs or the npz of
        ``difftk sample`` hold them and as other evaluators read samples, so a metric scores a model
        and the files of its samples alike. Samples are kept for the context's lifetime, so metrics
        asking for the same draw share it. Of given images, :meth:`given` picks them."""
        key = (n, None if cond is None else tuple(cond.tolist()), offset)
        if key in self._drawn:  # e.g. fid and accuracy of one evaluation share their samples
            return self._drawn[key]
        if self.images is None:
            check_draw(n, self.shape)
        if self.images is not None:
            x = self.given(n, cond, offset)
        else:
            if self.ranks.distributed:  # the other processes draw their blocks of this draw with process 0
                head = torch.tensor([n, offset, cond is not None], dtype=torch.int64)
                distributed.broadcast(head, self.ranks)
                if cond is not None:
                    distributed.broadcast(cond.to(torch.int64).cpu(), self.ranks)
            x = self._draw(n, cond, offset)
            if x.ndim == 4:  # images [n, C, H, W] at 8 bits, as a PNG holds them and every evaluator reads them
                x = to_uint8_images(x).to(torch.float32) / 127.5 - 1.0
        self._drawn[key] = x
        return x

    def _draw(self, n: int, cond: torch.Tensor | None, offset: int) -> torch.Tensor | None:
        ranks = self.ranks if self.ranks.distributed else None
        return self.model.sample(n, sampler=self.sampler, guidance=self.guidance, labels=cond, steps=self.steps,
                                 seed=self.seed + offset, batch_size=self.batch_size, ranks=ranks)

    def serve(self) -> None:
        """On a process other than 0: draw this process's block of every draw process 0 makes, until
        process 0 calls :meth:`release` (or stops)."""
        while True:
            try:
                n, offset, labelled = distributed.broadcast(torch.zeros(3, dtype=torch.int64), self.ranks).tolist()
            except RuntimeError:  # process 0 has stopped (on an error of its own, which it reports): nothing to serve
                return
            if n == 0:
                return
            cond = distributed.broadcast(torch.zeros(n, dtype=torch.int64), self.ranks) if labelled else None
            self._draw(n, cond, offset)

    def release(self) -> None:
        """On process 0, when the metrics are done: tell the serving processes that no draw follows."""
        if self.ranks.distributed and self.ranks.main:
            with contextlib.suppress(RuntimeError):  # a serving process stopped already, on the error being reported
                distributed.broadcast(torch.zeros(3, dtype=torch.int64), self.ranks)

    def given(self, n: int, cond: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
        """n of the given images in [−1, 1]: the ``offset``-th block of n in their order, or, for labels
        ``cond``, the images of those labels in their order (the ``offset``-th such block per class).
        Fewer images than asked for is one line."""
        images, index = self.images, None
        if cond is None:
            if (offset + 1) * n > len(images):
                after = f" after the first {offset * n:,}" if offset else ""
                raise DifftkError(f"{images.name} holds {len(images):,} images, fewer than the {n:,} asked for{after}: "
                                  f"use n={max(0, len(images) - offset * n)} or fewer")
            index = torch.arange(offset * n, (offset + 1) * n)
        else:
            if images.labels is None:
                raise DifftkError(f"{images.name} has no labels, and samples of given classes were asked for")
            index = torch.empty(len(cond), dtype=torch.long)
            for c in cond.unique().tolist():
                mine = (cond == c).nonzero().flatten()
                have = (images.labels == c).nonzero().flatten()[offset * len(mine):]
                if len(have) < len(mine):
                    raise DifftkError(f"{images.name} holds {len(have):,} images of class {c}, fewer than the "
                                      f"{len(mine):,} asked for: use a smaller n")
                index[mine] = have[:len(mine)]
        return images.batch(index)[0]


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


