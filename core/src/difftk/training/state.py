"""The state of a training run as a checkpoint (:class:`RunState`): weights, EMA, optimizer, every RNG
state and the objective's own state, written and read back so that a resumed run continues bit for bit.

The file format (named tensors in sections, string metadata) is :mod:`difftk.checkpoint.files`;
this module says what a training run puts into it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from difftk.checkpoint.files import (
    SAMPLING_CONTENTS,
    Checkpoint,
    CheckpointError,
    flatten_optimizer,
    load_weights,
    save_checkpoint,
    unflatten_optimizer,
)
from difftk.checkpoint.training_state import check_training_state
from difftk.components import plugins
from difftk.pipeline.compose import Pipeline
from difftk.runtime import distributed
from difftk.training.config import TrainConfig
from difftk.training.order import BatchOrder
from difftk.training.rundir import RunPaths
from difftk.version import __version__


@attrs.define(eq=False)
class RunState:
    """What a training run checkpoints, and how it comes back: the state the
    :class:`~difftk.training.trainer.Trainer` holds (``trainer.run``) and advances."""

    model: torch.nn.Module  # the weights being trained
    ema: torch.nn.Module  # their exponential moving average, what samples are drawn with
    optimizer: torch.optim.Optimizer
    order: BatchOrder  # the data order, with its own generator
    noise: torch.Generator  # the objective's t and ε (and guidance's label dropout), on the device
    pipeline: Pipeline  # the spec written to the checkpoint; the objective, whose own state is saved
    config: TrainConfig
    dataset_info: dict[str, Any]  # what the checkpoint records about the data
    ranks: distributed.Ranks  # this process among the run's processes
    device: torch.device
    paths: RunPaths | None  # the run directory; None writes nothing
    step: int = 0  # optimizer steps taken
    last_checkpoint: int | None = None  # the step of the last checkpoint written (or resumed from)

    def rng_state(self) -> dict[str, Any]:
        """Every RNG state of the run, and the data order's position in its epoch."""
        epoch_start, where = self.order.state()
        state = {"torch": torch.get_rng_state(), "data": epoch_start, "noise": self.noise.get_state(), "where": where}
        if self.device.type == "cuda":  # dropout on the GPU draws from the device's own generator
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def gathered_rng_state(self) -> dict[str, Any]:
        """:meth:`rng_state` with the noise generator of every rank (``noise``, ``noise.1``, …): a
        collective call, made by all ranks before rank 0 saves."""
        state = self.rng_state()
        noises = distributed.gather_states(state["noise"].cpu(), self.ranks)
        state.update({f"noise.{r}": t for r, t in enumerate(noises) if r})
        return state

    def _restore_rng(self, tensors: Mapping[str, torch.Tensor], where: Mapping[str, int]) -> None:
        torch.set_rng_state(tensors["torch"])
        key = f"noise.{self.ranks.rank}" if self.ranks.rank else "noise"
        saved = 1 + sum(1 for k in tensors if k.startswith("noise."))
        if key not in tensors or saved != self.ranks.world:
            raise CheckpointError(f"the checkpoint was written by a run of {saved} process(es); this one has "
                                  f"{self.ranks.world}: resume with nproc={saved}")
        self.noise.set_state(tensors[key])
        self.order.restore(tensors["data"], where)
        if self.device.type == "cuda" and "cuda" in tensors:
            torch.cuda.set_rng_state(tensors["cuda"], self.device)

    def contents(self, rng: Mapping[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The checkpoint contents: tensors and metadata (see :mod:`difftk.checkpoint`).

        ``rng`` is a :meth:`rng_state` taken earlier (the start of an interrupted step);
        by default the current one.
        """
        rng = dict(rng or self.rng_state())
        where = rng.pop("where")
        opt_tensors, opt_rest = flatten_optimizer(self.optimizer.state_dict())
        tensors: dict[str, torch.Tensor] = {}
        tensors.update({f"model/{k}": v for k, v in self.model.state_dict().items()})
        tensors.update({f"ema/{k}": v for k, v in self.ema.state_dict().items()})
        tensors.update({f"optim/{k}": v for k, v in opt_tensors.items()})
        tensors.update({f"rng/{k}": v for k, v in rng.items()})
        objective_state = getattr(self.pipeline.objective, "state_dict", None)
        if objective_state is not None:  # e.g. iddpm's loss history for importance sampling of t
            tensors.update({f"objective/{k}": v for k, v in objective_state().items()})
        spec = self.pipeline.spec
        metadata = {
            "difftk_version": __version__,
            "pipeline": spec.to_json(),
            "plugins": json.dumps({**spec.plugins, **self._dataset_plugin()}, sort_keys=True),
            "step": str(self.step),
            "train_config": self.config.to_json(),
            "dataset": json.dumps(self.dataset_info, sort_keys=True),
            "optimizer": json.dumps(opt_rest, sort_keys=True),
            "data_order": json.dumps(where, sort_keys=True),
        }
        return tensors, metadata

    def _dataset_plugin(self) -> dict[str, str | None]:
        name = self.dataset_info.get("plugin")
        record = plugins.records().get(name) if name else None
        return {name: record.version if record else None} if name else {}

    def load_state(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``: weights, EMA, optimizer, every RNG state and the step."""
        check_training_state(ckpt, data_size=self.order.size, noise_state_size=self.noise.get_state().numel())
        source = str(ckpt.path)
        if ckpt.metadata.get("contents") == SAMPLING_CONTENTS:
            raise CheckpointError(f"{source} was exported for sampling (EMA weights only) and cannot be resumed: "
                                  "resume from the run's own checkpoint")
        load_weights(self.model, ckpt.section("model"), source=source, what="model")
        load_weights(self.ema, ckpt.section("ema"), source=source, what="EMA")
        rest = ckpt.json("optimizer")
        if rest is None or "data_order" not in ckpt.metadata:
            raise CheckpointError(f"{source} holds no optimizer or data-order state: it cannot be resumed")
        try:
            self.optimizer.load_state_dict(unflatten_optimizer(ckpt.section("optim"), rest))
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{source}: the optimizer state does not fit this model: {err}") from None
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.config.weight_decay
        rng = ckpt.section("rng")
        if not {"torch", "data", "noise"} <= rng.keys():
            raise CheckpointError(f"{source} lacks RNG states ({', '.join(sorted(rng)) or 'none'} stored)")
        self._restore_rng(rng, ckpt.json("data_order"))
        load_objective = getattr(self.pipeline.objective, "load_state_dict", None)
        if load_objective is not None:  # e.g. a critic's weights, or iddpm's loss history
            try:
                load_objective(ckpt.section("objective"))
            except (ValueError, KeyError, RuntimeError) as err:
                raise CheckpointError(f"{source}: the objective's state does not fit this objective: {err}") from None
        self.step = self.last_checkpoint = ckpt.step

    def warm_start(self, ckpt: Checkpoint) -> None:
        """Start from ``ckpt``'s EMA weights (model and EMA alike), with a fresh optimizer and step 0.

        The network must have the same weights (names and shapes); its other options may
        differ: fine-tuning an ε-model into a v-model changes only ``prediction`` (as
        Stable Diffusion 2's v-models were fine-tuned from ε-models).
        """
        load_weights(self.model, ckpt.section("ema"), source=str(ckpt.path), what="EMA")
        self.ema.load_state_dict(self.model.state_dict())

    def save(self, rng: Mapping[str, Any] | None = None) -> Path:
        """Write the checkpoint (atomically) and remember its step. With several processes every rank
        calls it (the ranks' noise states are gathered) and rank 0 writes."""
        assert self.paths is not None
        if self.ranks.distributed:
            rng = dict(rng or self.gathered_rng_state())
            if not self.ranks.main:
                self.last_checkpoint = self.step
                return self.paths.checkpoint
        tensors, metadata = self.contents(rng)
        path = save_checkpoint(self.paths.checkpoint, tensors, metadata, replaces="run")
        self.last_checkpoint = self.step
        return path

