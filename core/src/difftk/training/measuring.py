"""Training curves: every ``eval_every`` steps, score the run's ``eval_metrics`` on the live EMA
model and append one record per metric to log.jsonl.

The model is the one the sample grids draw from — a :class:`difftk.model.Model` of the EMA
weights — measured through an :class:`~difftk.evaluation.context.EvalContext` as
``difftk evaluate`` measures a checkpoint: the pipeline's sampler (at ``sample_steps``) and
guidance, the held-out split of the training data, and the run's seed at every step, so that
the points of a curve differ by the weights only. Torch's global RNG is left as it was, so a
run with measurements ends with the weights of one without.

log.jsonl keeps the loss records as they were (``step``, ``loss``, ``lr``, ``grad_norm``,
``time``); a measurement is a record with the key ``metric`` and no ``loss``::

    {"step": 200, "metric": "fid", "value": 121.3, "spread": 14.2,
     "spread_kind": "bootstrap standard error", "n": 500, "time": 1733140000.0}
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import IO, Any

import torch

from difftk.components import plugins
from difftk.errors import DifftkError, OptionError
from difftk.evaluation.compare import context_for, held_out_data
from difftk.evaluation.context import MetricResult, check_draw, refuse_unmeasurable
from difftk.model import Model
from difftk.training.config import TrainConfig, TrainingError
from difftk.training.history import METRIC_KEY


def metric_record(step: int, result: MetricResult) -> dict[str, Any]:
    """The log.jsonl record of one measurement at ``step``."""
    record = {"step": step, METRIC_KEY: result.name, "value": result.value, "spread": result.spread,
              "spread_kind": result.spread_kind, "n": result.n}
    if result.unit:
        record["unit"] = result.unit
    return record | {"time": round(time.time(), 3)}


class TrainingMetrics:
    """The metrics a run scores as it trains, built (and so checked) before the first step.

    :param config: the run's :class:`TrainConfig` (``eval_every``, ``eval_metrics``, ``eval_n``).
    :param dataset_info: what the checkpoint records about the data; its held-out split is
        loaded from it once, here.
    :param latent: whether the pipeline has an autoencoder (likelihood metrics are then refused).
    """

    def __init__(self, config: TrainConfig, dataset_info: Mapping[str, Any], *, latent: bool = False) -> None:
        self.config = config
        registry = plugins.registry()
        names = list(dict.fromkeys(config.eval_metrics))
        infos = {name: registry.get("metric", name) for name in names}  # an unknown name: did-you-mean
        refuse_unmeasurable(names, latent=latent)  # bits/dim of a latent model's data: refused before the first step
        with_n = [name for name, info in infos.items() if "n" in info.option_fields()]
        if config.eval_n is not None and not with_n:
            raise OptionError(f"eval_n={config.eval_n}: none of the eval_metrics ({', '.join(names)}) has an option n")
        self.metrics = {name: info.instantiate({"n": config.eval_n} if config.eval_n is not None and name in with_n else {})
                        for name, info in infos.items()}
        self.data, self.why = held_out_data(dataset_info)
        shape = dataset_info.get("shape")
        if config.eval_n is not None and isinstance(shape, (list, tuple)) and all(isinstance(d, int) for d in shape):  # before the first step: a draw that cannot fit is refused now
            check_draw(config.eval_n, tuple(shape), "samples per measurement (eval_n)")

    def due(self, step: int) -> bool:
        """Whether step ``step`` is measured: every ``eval_every`` steps, and the last."""
        every = self.config.eval_every
        return bool(every) and (step % every == 0 or step == self.config.steps)

    def measure(self, model: Model, step: int) -> list[MetricResult]:
        """Every metric on ``model``, sampled with the run's seed and ``sample_steps``; a metric
        that cannot measure the run stops it with one line naming the metric and the step."""
        context = context_for(model, self.data, steps=self.config.sample_steps, seed=self.config.seed)
        devices = []
        if model.device.type == "cuda":
            devices = [model.device.index if model.device.index is not None else torch.cuda.current_device()]
        results = []
        with torch.random.fork_rng(devices=devices):
            for name, metric in self.metrics.items():
                try:
                    result = metric.evaluate(context)
                except DifftkError as err:
                    raise TrainingError(f"step {step}: {err}; measure the run without '{name}'") from None
                if not isinstance(result, MetricResult):
                    raise TrainingError(f"metric '{name}' returned a {type(result).__name__}, not a "
                                        "difftk.evaluation.context.MetricResult")
                results.append(result)
        return results

    def write(self, results: list[MetricResult], step: int, log: IO[str] | None) -> list[dict[str, Any]]:
        """Append the records of ``results`` to the open log (when there is one); return them."""
        records = [metric_record(step, result) for result in results]
        if log is not None:
            for record in records:
                log.write(json.dumps(record) + "\n")
            log.flush()
        return records

    def description(self) -> str:
        """What is measured when, in words, for the start of a run."""
        n = f", n = {self.config.eval_n:,}" if self.config.eval_n is not None else ""
        return f"{', '.join(self.metrics)} every {self.config.eval_every:,} steps{n}"
