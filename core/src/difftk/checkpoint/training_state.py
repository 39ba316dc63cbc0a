"""The training state in a checkpoint, checked as a whole before any of it is applied.

A resumed run restores weights, the optimizer, four random generators and the place in the data
order from a file that may have been edited by hand. :func:`check_training_state` takes what was
read (:class:`~difftk.checkpoint.files.Checkpoint`: tensors and metadata) and returns a
:class:`TrainingState` whose every part has the type, dtype and range the trainer needs, or
raises one :class:`~difftk.errors.CheckpointError` line naming the part that is wrong. Nothing is
applied before everything has passed, so a bad file never leaves a half-restored trainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch

from difftk.checkpoint.files import SAMPLING_CONTENTS, Checkpoint, unflatten_optimizer
from difftk.checkpoint.metadata import is_int, is_number
from difftk.checkpoint.tensors import count_non_finite
from difftk.errors import CheckpointError

#: the generator states a training checkpoint must hold (``rng/…``); ``noise.1``, … come from the
#: other processes of a distributed run, ``cuda`` from a run on a GPU
RNG_REQUIRED: tuple[str, ...] = ("torch", "data", "noise")


@attrs.frozen(eq=False)
class TrainingState:
    """A checkpoint's training state, checked: what :meth:`load_state` of the trainer applies."""

    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    #: the optimizer's ``state_dict`` (:func:`~difftk.checkpoint.files.unflatten_optimizer`)
    optimizer: dict[str, Any]
    #: generator states by name (``torch``, ``data``, ``noise``, ``noise.1``, …, ``cuda``)
    rng: dict[str, torch.Tensor]
    #: the place in the data order: ``{"epoch": e, "position": p}``
    data_order: dict[str, int]
    objective: dict[str, torch.Tensor]


def generator_state_size(device: torch.device | str = "cpu") -> int:
    """The length of a generator state on ``device`` (uint8 bytes)."""
    return int(torch.Generator(device=device).get_state().numel())


def check_training_state(ckpt: Checkpoint, *, data_size: int, noise_state_size: int | None = None) -> TrainingState:
    """Check everything a resumed run restores from ``ckpt`` and return it.

    :param data_size: examples in the data the run resumes on (the data order's position is
        within an epoch of them).
    :param noise_state_size: the length of the state of the run's noise generator (it lives on the
        training device); ``None`` accepts a CPU or a CUDA generator's.
    """
    where = ckpt.path

    def bad(part: str, why: str) -> CheckpointError:
        return CheckpointError(f"{where}: {part} {why}; the file was edited or is not a difftk training checkpoint")

    if ckpt.metadata.get("contents") == SAMPLING_CONTENTS:
        raise CheckpointError(f"{where} was exported for sampling (EMA weights only) and cannot be resumed: "
                              "resume from the run's own checkpoint")
    missing = [key for key in ("optimizer", "data_order") if key not in ckpt.metadata]
    if missing:
        raise CheckpointError(f"{where} holds no {' or '.join(missing)} state: it cannot be resumed")
    model, ema = ckpt.section("model"), ckpt.section("ema")
    for name, weights in (("model", model), ("EMA", ema)):
        if not weights:
            raise CheckpointError(f"{where} holds no {name} weights: it cannot be resumed")
        nonfinite, total = count_non_finite(weights)
        if nonfinite:
            raise CheckpointError(f"{where}: {nonfinite:,} of its {total:,} {name} weights are NaN or infinite (the run "
                                  "diverged before this checkpoint was written): resume from an earlier copy, or start "
                                  "a new run with a lower learning rate")

    rng = ckpt.section("rng")
    absent = [key for key in RNG_REQUIRED if key not in rng]
    if absent:
        raise CheckpointError(f"{where} lacks RNG states ({', '.join(sorted(rng)) or 'none'} stored; "
                              f"{', '.join(absent)} missing): it cannot be resumed")
    cpu = generator_state_size("cpu")
    for key, tensor in rng.items():
        noise = key == "noise" or key.startswith("noise.")
        sizes = ((noise_state_size,) if noise and noise_state_size is not None
                 else None if key == "cuda" or noise else (cpu,))
        if tensor.dtype != torch.uint8 or tensor.dim() != 1:
            raise bad(f"rng/{key}", f"is a {tensor.dtype} tensor of shape {list(tensor.shape)}; a generator state is "
                                    "a 1-D uint8 tensor")
        if sizes is not None and tensor.numel() not in sizes:
            raise bad(f"rng/{key}", f"holds {tensor.numel():,} bytes; a generator state here is "
                                    f"{' or '.join(f'{s:,}' for s in sizes)}")
        if sizes is None and tensor.numel() not in (cpu, 16):  # a CPU (Mersenne Twister) or CUDA (Philox) state
            raise bad(f"rng/{key}", f"holds {tensor.numel():,} bytes; a generator state is {cpu:,} (CPU) or 16 (CUDA)")
        if tensor.numel() == cpu:
            try:  # a scratch generator takes it, or says why not (e.g. "Invalid mt19937 state")
                torch.Generator().set_state(tensor)
            except RuntimeError as err:
                raise bad(f"rng/{key}", f"is not a generator state ({' '.join(str(err).split())[:80]})") from None
    for index in (key.partition(".")[2] for key in rng if key.startswith("noise.")):
        if not (index.isdigit() and 1 <= int(index) < 1 << 16):
            raise bad(f"rng/noise.{index}", "is not named by a process rank (noise.1, noise.2, …)")

    order = ckpt.json("data_order")
    if not order["position"] <= data_size:
        raise bad("metadata data_order.position", f"is {order['position']:,}, past the {data_size:,} examples of an "
                                                  "epoch of the data")

    optimizer = _check_optimizer(ckpt.json("optimizer"), ckpt.section("optim"), bad)
    return TrainingState(step=ckpt.step, model=model, ema=ema, optimizer=optimizer, rng=rng,
                         data_order={"epoch": order["epoch"], "position": order["position"]},
                         objective=ckpt.section("objective"))


def _check_optimizer(rest: Any, tensors: Mapping[str, torch.Tensor], bad) -> dict[str, Any]:
    """The optimizer ``state_dict`` from metadata ``optimizer`` and the ``optim/…`` tensors, checked:
    param_groups a list of objects whose ``params`` are distinct indices and whose settings are
    numbers, flags or lists of numbers (never text); per-parameter state keyed by those indices."""
    groups = rest.get("param_groups")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        raise bad("metadata optimizer.param_groups", f"is {str(groups)[:40]!r}; expected a list of objects")
    indices: set[int] = set()
    for i, group in enumerate(groups):
        params = group.get("params")
        if not isinstance(params, list) or not all(is_int(p) and 0 <= p < 1 << 31 for p in params):
            raise bad(f"metadata optimizer.param_groups[{i}].params", "must be a list of parameter indices")
        if indices & set(params) or len(set(params)) != len(params):
            raise bad(f"metadata optimizer.param_groups[{i}].params", "repeats a parameter index")
        indices.update(params)
        for key, value in group.items():
            plain = value is None or isinstance(value, bool) or is_number(value)
            if key != "params" and not (plain or (isinstance(value, list) and len(value) <= 16
                                                  and all(is_number(v) for v in value))):
                raise bad(f"metadata optimizer.param_groups[{i}].{key}", f"is {str(value)[:40]!r}; expected a number")
    scalars = rest.get("scalars", {})
    if not isinstance(scalars, dict):
        raise bad("metadata optimizer.scalars", "must be an object")
    for index, values in scalars.items():
        if not (index.isdigit() and int(index) in indices) or not isinstance(values, dict) or not all(
                is_number(v) or isinstance(v, bool) for v in values.values()):
            raise bad(f"metadata optimizer.scalars.{index}", "must map a parameter index of param_groups to numbers")
    for name, tensor in tensors.items():
        index, _, key = name.partition("/")
        if not (index.isdigit() and int(index) in indices and key):
            raise bad(f"tensor optim/{name}", "is not named <parameter index>/<state> for a parameter of param_groups")
        if not tensor.is_floating_point() and tensor.dtype not in (torch.int64, torch.int32):
            raise bad(f"tensor optim/{name}", f"is {tensor.dtype}; optimizer state is numbers")
    return unflatten_optimizer(tensors, {"param_groups": groups, "scalars": scalars})
