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

from difftk.errors import DifftkError
from difftk.evaluation.context import EvalContext, MetricResult
from difftk.model import Model, load
from difftk.pipeline.compose import build_component
from difftk.runtime.files import atomic_write_text


def held_out_data(dataset: Mapping[str, Any]):
    """The test split of a checkpoint's dataset, or ``None`` with the reason it cannot be loaded."""
    name = dataset.get("name")
    if not name:
        return None, "the checkpoint does not name its dataset"
    try:
        return build_component("dataset", name, dict(dataset.get("options") or {}), from_strings=False).load("test"), None
    except DifftkError as err:
        return None, str(err)
    except Exception as err:  # a dataset plugin's own failure: reported, not fatal
        return None, f"dataset '{name}' failed to load its test split: {type(err).__name__}: {' '.join(str(err).split())}"


def context_for(model: Model, data: Any, *, sampler: str | None = None,
                sampler_options: Mapping[str, str] | None = None, guidance: str | None = None,
                guidance_options: Mapping[str, str] | None = None, steps: int | None = None, seed: int = 0) -> EvalContext:
    """The :class:`EvalContext` of ``model`` sampled with ``sampler`` (default: its pipeline's) for
    ``steps`` steps, guided by ``guidance`` (default: its pipeline's, if any) with those options
    (values or command-line strings)."""
    chosen = model.sampler(sampler, sampler_options)
    wrapper = model.guidance(guidance, guidance_options) if guidance is not None or guidance_options else None
    return EvalContext(model=model, data=data, sampler=chosen, guidance=wrapper, seed=seed, steps=steps)


def measure(metric_name: str, options: Mapping[str, str], context: EvalContext) -> MetricResult:
    """Build metric ``metric_name`` from command-line ``options`` and evaluate it."""
    metric = build_component("metric", metric_name, options)
    result = metric.evaluate(context)
    if not isinstance(result, MetricResult):
        raise DifftkError(f"metric '{metric_name}' returned a {type(result).__name__}, not a difftk.evaluation.context.MetricResult")
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
        model = load(path, device)
        data, _ = held_out_data(model.checkpoint.dataset)
        for sampler, k, scale in itertools.product(samplers, steps, scales):
            gopts = {"scale": str(scale)} if scale is not None else None
            context = context_for(model, data, sampler=sampler, guidance=guidance if scale is not None else None,
                                  guidance_options=gopts, steps=k, seed=seed)
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
