"""Measuring checkpoints: the evaluation context of a checkpoint sampled a given way, and a grid of
such measurements (checkpoints × samplers × steps × guidance scales × metrics × seeds), written as
CSV; :mod:`difftk.evaluation.summary` gives its statistics.

A *cell* of the grid is one way of sampling one experiment: the checkpoints that differ only by
their training seed (:func:`difftk.training.history.experiment`) are pooled into one cell, and so
are the sampling seeds; :func:`difftk.evaluation.summary.summarize` reduces each cell's k values."""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from difftk.components.protocols import nfe_of
from difftk.errors import DifftkError, PluginError
from difftk.evaluation.context import EvalContext, MetricResult, NeedsModelError, refuse_unmeasurable
from difftk.model import Model, load
from difftk.pipeline.compose import create_component
from difftk.runtime.distributed import Ranks
from difftk.runtime.files import atomic_write_text
from difftk.training.history import experiment


def held_out_data(dataset: Mapping[str, Any]):
    """The test split of a checkpoint's dataset, or ``None`` with the reason it cannot be loaded."""
    name = dataset.get("name")
    if not name:
        return None, "the checkpoint does not name its dataset"
    try:
        return create_component("dataset", name, dict(dataset.get("options") or {}), from_strings=False).load("test"), None
    except DifftkError as err:
        return None, str(err)
    except Exception as err:  # a dataset plugin's own failure: reported, not fatal
        return None, f"dataset '{name}' failed to load its test split: {type(err).__name__}: {' '.join(str(err).split())}"


def context_for(model: Model, data: Any, *, sampler: str | None = None,
                sampler_options: Mapping[str, str] | None = None, guidance: str | None = None,
                guidance_options: Mapping[str, str] | None = None, steps: int | None = None, seed: int = 0,
                batch_size: int = 256, ranks: Ranks | None = None) -> EvalContext:
    """The :class:`EvalContext` of ``model`` sampled with ``sampler`` (default: its pipeline's) for
    ``steps`` steps, guided by ``guidance`` (default: its pipeline's, if any) with those options
    (values or command-line strings), drawn ``batch_size`` at a time and shared over ``ranks``."""
    chosen = model.sampler(sampler, sampler_options)
    wrapper = model.guidance(guidance, guidance_options) if guidance is not None or guidance_options else None
    return EvalContext(model=model, data=data, sampler=chosen, guidance=wrapper, seed=seed, steps=steps,
                       batch_size=batch_size, ranks=ranks or Ranks())


def measure(metric_name: str, options: Mapping[str, str], context: EvalContext) -> MetricResult:
    """Build metric ``metric_name`` from command-line ``options`` and evaluate it."""
    metric = create_component("metric", metric_name, options)
    if context.images is None:
        refuse_unmeasurable([metric_name], latent=context.model.pipeline.autoencoder is not None)
    try:
        result = metric.evaluate(context)
    except NeedsModelError as err:  # a set of images measured by a metric of models
        raise DifftkError(f"metric '{metric_name}' {err}") from None
    except (DifftkError, KeyboardInterrupt):
        raise
    except Exception as err:  # a third party's metric: one line naming it
        raise PluginError(f"metric '{metric_name}' failed: {type(err).__name__}: {' '.join(str(err).split())[:300]}") from None
    if not isinstance(result, MetricResult):
        raise DifftkError(f"metric '{metric_name}' returned a {type(result).__name__}, not a difftk.evaluation.context.MetricResult")
    try:
        value = float(result.value)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise PluginError(f"metric '{metric_name}' gave {result.value!r}, not a finite number: no result is reported")
    return result


@attrs.frozen
class GridRow:
    """One measurement of a comparison: how the checkpoint was sampled, and what the metric said."""

    checkpoint: str
    schedule: str
    sampler: str
    steps: int | None
    scale: float | None
    result: MetricResult
    seed: int = 0
    #: what the checkpoint is apart from its training seed; equal for replicates
    experiment: str = ""
    #: denoiser evaluations per sample (None: the sampler chooses its own steps), so that samplers
    #: of one and of two evaluations per step compare at equal cost
    nfe: int | None = None

    @property
    def cell(self) -> tuple:
        """The cell the measurement belongs to: experiment, sampler, steps, scale."""
        return (self.experiment or self.checkpoint, self.sampler, self.steps, self.scale)

    def as_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "schedule": self.schedule, "sampler": self.sampler,
                "steps": self.steps if self.steps is not None else "", "nfe": self.nfe if self.nfe is not None else "",
                "scale": self.scale if self.scale is not None else "", "seed": self.seed, "metric": self.result.name, "value": self.result.value, "spread": self.result.spread,
                "spread_kind": self.result.spread_kind, "n": self.result.n, "unit": self.result.unit}


def experiment_of(model: Model, path: str) -> str:
    """:func:`~difftk.training.history.experiment` of a loaded checkpoint (at its step); a model that is
    not a difftk checkpoint is an experiment of its own."""
    ckpt = model.checkpoint
    if ckpt is None or "seed" not in ckpt.train_config:  # e.g. another library's model: no seed to differ by
        return f"model:{path}"
    return experiment(ckpt.spec.to_dict(), ckpt.train_config, ckpt.dataset, ckpt.step)


def compare(checkpoints: Sequence[str], metrics: Sequence[str], *, samplers: Sequence[str | None] = (None,),
            steps: Sequence[int | None] = (None,), scales: Sequence[float | None] = (None,), guidance: str | None = None,
            sampler_options: Mapping[str, str] | None = None, guidance_options: Mapping[str, str] | None = None,
            metric_options: Mapping[str, Mapping[str, str]] | None = None, seed: int = 0,
            seeds: Sequence[int] | None = None, device: torch.device | str = "cpu",
            on_row: Callable[[GridRow], None] | None = None,
            on_context: Callable[[tuple, Model, EvalContext], None] | None = None) -> list[GridRow]:
    """Measure every checkpoint × sampler × steps × scale with every metric, once per seed of
    ``seeds`` (default: ``seed`` alone), the same seeds everywhere (so differences come from the
    parts changed, not from the noise); ``guidance_options`` (APG's ``eta``, autoguidance's ``guide``, …)
    apply with every scale of ``scales``. Checkpoints of one experiment with different training
    seeds share their cells (:attr:`GridRow.cell`). ``on_context(cell, model, context)`` is called after the
    metrics of each way of sampling (e.g. to draw a grid of its samples)."""
    rows = []
    if _likelihoods(metrics):  # a latent checkpoint among several is refused before the grid starts
        for path in checkpoints:
            refuse_unmeasurable(metrics, latent=load(path, "cpu").pipeline.autoencoder is not None)
    seeds_of: dict[str, set] = {}  # the training seeds pooled into each experiment so far
    for path in checkpoints:
        model = load(path, device)
        what = experiment_of(model, str(path))
        trained = model.checkpoint.train_config.get("seed") if model.checkpoint is not None else None
        if trained in seeds_of.setdefault(what, set()):  # the same seed twice: a copy, not a replicate
            what = f"{what}|{path}"
        seeds_of.setdefault(what, set()).add(trained)
        data, _ = held_out_data(model.checkpoint.dataset if model.checkpoint is not None else model.data)
        for sampler, k, scale, s in itertools.product(samplers, steps, scales, seeds if seeds is not None else (seed,)):
            gopts = {**(guidance_options or {}), "scale": str(scale)} if scale is not None else None
            context = context_for(model, data, sampler=sampler, sampler_options=sampler_options,
                                  guidance=guidance if scale is not None else None, guidance_options=gopts, steps=k, seed=s)
            nfe = nfe_of(context.sampler if context.sampler is not None else model.pipeline.sampler, k, model.schedule)
            row = None
            for name in metrics:
                result = measure(name, (metric_options or {}).get(name, {}), context)
                row = GridRow(checkpoint=str(path), schedule=model.pipeline.spec["schedule"].name,
                              sampler=sampler or model.pipeline.spec["sampler"].name, steps=k, scale=scale, result=result,
                              seed=s, experiment=what, nfe=nfe)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
            if on_context is not None and row is not None:
                on_context(row.cell, model, context)
    return rows


def _likelihoods(metrics: Sequence[str]) -> bool:
    from difftk.components import plugins

    registry = plugins.registry()
    return any(getattr(registry.get("metric", name).cls, "likelihood", False) is True for name in metrics)


def write_csv(rows: Sequence[Any], path: str | Path) -> Path:
    """Rows with ``as_dict()`` (:class:`GridRow` measurements, or the cell summaries of
    :func:`difftk.evaluation.summary.summarize`) as CSV, one line each (written atomically)."""
    buffer = io.StringIO()
    fields = list(rows[0].as_dict()) if rows else ["checkpoint"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.as_dict())
    return atomic_write_text(Path(path), buffer.getvalue())
