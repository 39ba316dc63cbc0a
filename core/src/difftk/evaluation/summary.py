"""The statistics of a measurement grid (:func:`difftk.evaluation.compare.compare`): over the k values
of each cell, the mean with its 95 % Student-t confidence interval, and Welch's t-test of each cell's
mean against the best cell's (or a chosen reference cell's), two-sided, at the 5 % level
(:mod:`difftk.maths.stats`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from difftk.components import plugins
from difftk.errors import DifftkError, OptionError
from difftk.evaluation.compare import GridRow
from difftk.maths.stats import mean_confidence_interval, welch_t_test

#: the significance level of the tests
ALPHA = 0.05


def better_of(metric: str) -> str | None:
    """``"lower"`` or ``"higher"``: which values of ``metric`` are better, as its class declares with
    ``better = "lower"`` or ``"higher"`` (``None``: not declared, or no such metric)."""
    try:
        declared = getattr(plugins.registry().get("metric", metric).cls, "better", None)
    except DifftkError:
        declared = None
    return declared if declared in ("lower", "higher") else None


@attrs.frozen
class CellSummary:
    """The k values of one metric in one cell: mean ± 95 % CI, and the test against the reference."""

    cell: tuple
    checkpoints: tuple[str, ...]
    schedule: str
    sampler: str
    steps: int | None
    scale: float | None
    metric: str
    unit: str
    values: tuple[float, ...]
    mean: float
    #: half-width of the 95 % Student-t confidence interval of the mean (NaN for k = 1)
    half_width: float
    #: the metric's own spread of a single measurement (k = 1), with its kind
    spread: float
    spread_kind: str
    n: int
    nfe: int | None = None
    role: str = ""  # "best", "reference" or ""
    p: float | None = None  # Welch's two-sided p against the reference cell; None when not tested

    @property
    def k(self) -> int:
        return len(self.values)

    @property
    def label(self) -> str:
        """The checkpoint, or the first of the pooled ones and how many seeds they are."""
        first, more = self.checkpoints[0], len(self.checkpoints) - 1
        return first if not more else f"{first} (+{more} seed{'s' if more > 1 else ''})"

    @property
    def significant(self) -> bool | None:
        return None if self.p is None else self.p < ALPHA

    def interval(self) -> str:
        """``mean ± half-width`` (k ≥ 2) or ``value ± spread`` (k = 1)."""
        if self.k > 1:
            return f"{self.mean:.4f} ± {self.half_width:.4f}"
        return f"{self.mean:.4f} ± {self.spread:.4f}"

    def verdict(self) -> str:
        """How the cell compares with the reference: ``best``/``reference``, ``p = 0.003 *``, or ``-``."""
        if self.role:
            return self.role
        if self.p is None:
            return "-"
        return f"p = {self.p:.3g}" + (" *" if self.significant else "")

    def as_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.label, "schedule": self.schedule, "sampler": self.sampler,
                "steps": self.steps if self.steps is not None else "", "nfe": self.nfe if self.nfe is not None else "",
                "scale": self.scale if self.scale is not None else "", "metric": self.metric, "k": self.k, "mean": self.mean, "ci95": self.half_width if self.k > 1 else "", "value": self.mean,
                "spread": self.half_width if self.k > 1 else self.spread, "n": self.n, "unit": self.unit,
                "role": self.role, "p": "" if self.p is None else self.p}


def _matches(summary: CellSummary, reference: Mapping[str, str]) -> bool:
    for key, want in reference.items():
        if key == "checkpoint" and want not in summary.checkpoints:
            return False
        if key == "sampler" and want != summary.sampler:
            return False
        if key == "steps" and want != ("default" if summary.steps is None else str(summary.steps)):
            return False
        if key == "scale" and (summary.scale is None or float(want) != summary.scale):
            return False
    return True


def summarize(rows: Sequence[GridRow], reference: Mapping[str, str] | None = None) -> list[CellSummary]:
    """One :class:`CellSummary` per cell × metric, in the order of the grid. Each metric's
    reference is the cell ``reference`` names (keys checkpoint, sampler, steps, scale), else the
    cell with the best mean when the metric's direction is known (:func:`better_of`); every other
    cell is tested against it with Welch's t-test when both have k ≥ 2 values."""
    cells: dict[tuple, list[GridRow]] = {}
    for row in rows:
        cells.setdefault((row.cell, row.result.name), []).append(row)
    out: list[CellSummary] = []
    for (cell, metric), members in cells.items():
        values = tuple(r.result.value for r in members)
        mean, half = mean_confidence_interval(values)
        first = members[0]
        out.append(CellSummary(cell=cell, checkpoints=tuple(dict.fromkeys(r.checkpoint for r in members)),
                               schedule=first.schedule, sampler=first.sampler, steps=first.steps, scale=first.scale,
                               metric=metric, unit=first.result.unit, values=values, mean=mean, half_width=half,
                               spread=first.result.spread, spread_kind=first.result.spread_kind, n=first.result.n,
                               nfe=first.nfe))
    for metric in dict.fromkeys(s.metric for s in out):
        mine = [i for i, s in enumerate(out) if s.metric == metric]
        if reference:
            chosen = [i for i in mine if _matches(out[i], reference)]
            if len(chosen) != 1:
                said = ", ".join(f"{k} {v}" for k, v in reference.items())
                raise OptionError(f"the reference ({said}) matches {len(chosen)} cells of {metric}: name one cell by "
                                  "its checkpoint, sampler, steps and scale")
            ref, role = chosen[0], "reference"
        elif better_of(metric) is not None:
            pick = min if better_of(metric) == "lower" else max
            ref, role = pick(mine, key=lambda i: out[i].mean), "best"
        else:
            continue
        for i in mine:
            if i == ref:
                out[i] = attrs.evolve(out[i], role=role)
            elif out[i].k >= 2 and out[ref].k >= 2:
                out[i] = attrs.evolve(out[i], p=welch_t_test(out[i].values, out[ref].values).p)
    return out
