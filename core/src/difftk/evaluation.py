"""Measuring checkpoints: the evaluation context of a checkpoint sampled a given way, and a grid
of such measurements (checkpoints × samplers × steps × guidance scales × metrics)."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from difftk import plugins
from difftk.checkpoint import TrainedModel, load_for_sampling
from difftk.errors import DifftkError
from difftk.fileio import atomic_write_text
from difftk.generation import make_component, make_sampler
from difftk.metrics import EvalContext, MetricResult


def held_out_data(dataset: Mapping[str, Any]):
    """The test split of a checkpoint's dataset, or ``None`` with the reason it cannot be loaded."""
    name = dataset.get("name")
    if not name:
        return None, "the checkpoint does not name its dataset"
    try:
        info = plugins.host().registry.get("dataset", name)
        return info.build(dict(dataset.get("options") or {})).load("test"), None
    except DifftkError as err:
        return None, str(err)
    except Exception as err:  # a dataset plugin's own failure: reported, not fatal
        return None, f"dataset '{name}' failed to load its test split: {type(err).__name__}: {' '.join(str(err).split())}"


def context_for(model: TrainedModel, data: Any, *, sampler: str | None = None,
                sampler_options: Mapping[str, str] | None = None, guidance: str | None = None,
                guidance_options: Mapping[str, str] | None = None, steps: int | None = None, seed: int = 0,
                device: torch.device | str = "cpu") -> EvalContext:
    """The :class:`EvalContext` of ``model`` sampled with ``sampler`` (default: its pipeline's) for
    ``steps`` steps, guided by ``guidance`` (default: its pipeline's, if any) with those options
    (strings, as on the command line)."""
    spec = model.pipeline.spec
    chosen = make_sampler(sampler, sampler_options, base=spec.get("sampler"))
    wrapper = model.pipeline.guidance
    if guidance is not None or guidance_options:
        wrapper = make_component("guidance", guidance, guidance_options, base=spec.get("guidance"))
        check = getattr(wrapper, "check_trained", None)
        if check is not None:
            check(spec)
    pipeline = attrs.evolve(model.pipeline, sampler=chosen, guidance=wrapper)
    return EvalContext(pipeline=pipeline, denoiser=model.denoiser, data=data, device=torch.device(device), seed=seed,
                       steps=steps, data_shape=model.data_shape)


def measure(metric_name: str, options: Mapping[str, str], context: EvalContext) -> MetricResult:
    """Build metric ``metric_name`` from command-line ``options`` and evaluate it."""
    metric = plugins.host().registry.get("metric", metric_name).build(dict(options), from_strings=True)
    result = metric.evaluate(context)
    if not isinstance(result, MetricResult):
        raise DifftkError(f"metric '{metric_name}' returned a {type(result).__name__}, not a difftk.metrics.MetricResult")
    return result


@attrs.frozen
class GridRow:
    """One cell of a comparison: how the checkpoint was sampled, and what the metric said."""

    checkpoint: str
    schedule: str
    sampler: str
    steps: int | None
    scale: float | None
    result: MetricResult

    def as_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "schedule": self.schedule, "sampler": self.sampler,
                "steps": self.steps if self.steps is not None else "", "scale": self.scale if self.scale is not None else "",
                "metric": self.result.name, "value": self.result.value, "spread": self.result.spread,
                "spread_kind": self.result.spread_kind, "n": self.result.n, "unit": self.result.unit}


def compare(checkpoints: Sequence[str], metrics: Sequence[str], *, samplers: Sequence[str | None] = (None,),
            steps: Sequence[int | None] = (None,), scales: Sequence[float | None] = (None,), guidance: str | None = None,
            metric_options: Mapping[str, Mapping[str, str]] | None = None, seed: int = 0,
            device: torch.device | str = "cpu", on_row: Callable[[GridRow], None] | None = None) -> list[GridRow]:
    """Measure every checkpoint × sampler × steps × scale with every metric, with the same seed
    everywhere (so differences come from the parts changed, not from the noise)."""
    rows = []
    for path in checkpoints:
        model = load_for_sampling(path, device)
        data, _ = held_out_data(model.checkpoint.dataset)
        for sampler, k, scale in itertools.product(samplers, steps, scales):
            gopts = {"scale": str(scale)} if scale is not None else None
            context = context_for(model, data, sampler=sampler, guidance=guidance if scale is not None else None,
                                  guidance_options=gopts, steps=k, seed=seed, device=device)
            for name in metrics:
                result = measure(name, (metric_options or {}).get(name, {}), context)
                row = GridRow(checkpoint=str(path), schedule=model.pipeline.spec["schedule"].name,
                              sampler=sampler or model.pipeline.spec["sampler"].name, steps=k, scale=scale, result=result)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


def write_csv(rows: Sequence[GridRow], path: str | Path) -> Path:
    """The grid as CSV, one row per measurement (written atomically)."""
    import io

    buffer = io.StringIO()
    fields = list(rows[0].as_dict()) if rows else ["checkpoint"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.as_dict())
    return atomic_write_text(Path(path), buffer.getvalue())
