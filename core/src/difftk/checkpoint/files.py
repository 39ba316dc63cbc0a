"""Checkpoints: one safetensors file per training run, never pickle.

A checkpoint holds named tensors and string metadata (the safetensors header). Tensor names
are grouped by a prefix:

``model/…``  the denoiser's ``state_dict`` (the weights being trained)
``ema/…``    the exponential moving average of those weights (what sampling uses)
``optim/…``  the optimizer's per-parameter state, ``optim/<index>/<key>`` (e.g. AdamW's
             ``exp_avg``, ``exp_avg_sq``, ``step``)
``rng/…``    random-generator states as uint8 tensors (``rng/torch``, ``rng/data``,
             ``rng/noise``, and ``rng/cuda`` for a run on a GPU)
``objective/…`` the objective's own state, when it has any (``state_dict()`` /
             ``load_state_dict()``: e.g. the loss history of iddpm's importance sampling of t)

and the metadata (every value a string; JSON where structured) records how the run was
made: ``pipeline`` (:meth:`PipelineSpec.to_json`, with the plugin and version of each
component), ``plugins``, ``step``, ``train_config``, ``dataset``, ``optimizer`` (the
param_groups and non-tensor state), ``data_order``, ``difftk_version``. Files are written
atomically, so a crash mid-write leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from difftk.checkpoint.metadata import CHECKPOINT_FIELDS, parse_fields
from difftk.checkpoint.tensors import check_weight_dtypes
from difftk.errors import CheckpointError, OutputError, SpecError
from difftk.pipeline.spec import PipelineSpec
from difftk.runtime.files import atomic_write_bytes
from difftk.runtime.untrusted import read_json

FORMAT = "difftk-checkpoint"
FORMAT_VERSION = 1
#: the file a training run keeps its latest checkpoint in
CHECKPOINT_NAME = "checkpoint.safetensors"
REQUIRED_METADATA: tuple[str, ...] = (
    "format", "format_version", "difftk_version", "pipeline", "plugins", "step", "train_config", "dataset",
)




# --- writing --------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], *,
                    replaces: str = "export") -> Path:
    """Write ``tensors`` and ``metadata`` as one safetensors file, atomically.

    ``replaces`` says what may already be at ``path`` (:data:`difftk.runtime.files.REPLACES`): by
    default an exported checkpoint but never a resumable training one; the training loop
    passes ``"run"`` to rewrite its own.

    Tensors are moved to the CPU; tensors that share memory (tied weights) are copied, since
    safetensors stores each name's bytes separately.
    """
    seen: set[tuple[int, int]] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        t = tensor.detach().cpu().contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen and t.numel():
            t = t.clone()
        seen.add(key)
        out[name] = t
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), **metadata}
    bad = [k for k, v in meta.items() if not isinstance(v, str)]
    if bad:
        raise TypeError(f"checkpoint metadata must be strings; {bad[0]!r} is {type(meta[bad[0]]).__name__}")
    data = st_save(out, metadata=meta)
    try:
        return atomic_write_bytes(Path(path), data, replaces=replaces)
    except OutputError as err:
        raise CheckpointError(f"{err} (the previous checkpoint, if any, is unchanged)") from None


def flatten_optimizer(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer ``state_dict`` as named tensors ``<index>/<key>`` plus a JSON-able rest.

    The rest is ``{"param_groups": [...], "scalars": {index: {key: value}}}``: the groups'
    hyper-parameters and any per-parameter state that is not a tensor.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [dict(group) for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: Mapping[str, torch.Tensor], rest: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`: JSON lists become tuples again (e.g. AdamW's betas)."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, _, key = name.partition("/")
        state.setdefault(int(index), {})[key] = tensor
    for index, values in rest.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
              for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


# --- reading --------------------------------------------------------------------------------------


@attrs.frozen(eq=False)
class Checkpoint:
    """A checkpoint as read from disk, validated: tensors, raw metadata and the parsed fields."""

    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    spec: PipelineSpec
    step: int
    dataset: dict[str, Any]
    train_config: dict[str, Any]
    plugins: dict[str, Any]

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors named ``prefix/…``, keyed by the rest of the name."""
        head = prefix.rstrip("/") + "/"
        return {name[len(head):]: t for name, t in self.tensors.items() if name.startswith(head)}

    def json(self, key: str, default: Any = None) -> Any:
        """Metadata ``key`` parsed as JSON and checked (:data:`~difftk.checkpoint.metadata.CHECKPOINT_FIELDS`;
        ``default`` when absent)."""
        if key not in self.metadata:
            return default
        if key in CHECKPOINT_FIELDS:
            return parse_fields(self.path, {key: self.metadata[key]}, {key: CHECKPOINT_FIELDS[key]})[key]
        return read_json(self.metadata[key], what=f"metadata '{key}'", error=lambda why: _corrupt(self.path, why))


def resolve_path(path: str | Path) -> Path:
    """``path`` itself, ``path/checkpoint.safetensors`` when ``path`` is a run directory, or the
    file of the checkpoint a plugin ships under the name ``path`` (``difftk plugins`` lists them)."""
    if isinstance(path, str) and path and not Path(path).exists() and "/" not in path and "\\" not in path \
            and not path.endswith(".safetensors"):
        from difftk.components import plugins

        return plugins.registry().checkpoint(path).path
    path = Path(path)
    if path.is_dir():
        inner = path / CHECKPOINT_NAME
        if inner.is_file():
            return inner
        raise CheckpointError(f"{path} is a directory without a {CHECKPOINT_NAME}: give the checkpoint file itself")
    return path


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; every problem is one :class:`CheckpointError` line."""
    path = resolve_path(path)
    data, metadata = read_file(path, "no such checkpoint file, run directory or shipped model (a run directory "
                                     "is what `difftk train --out` wrote; `difftk plugins` lists the shipped models)")
    try:
        tensors = st_load(data)
    except Exception as err:  # safetensors raises its own SafetensorError for bad bytes
        raise _corrupt(path, " ".join(str(err).split())) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a difftk checkpoint (no difftk metadata; "
                              "checkpoints come from `difftk train`)")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise CheckpointError(f"{path} is not a complete difftk checkpoint: its metadata lacks {', '.join(missing)}")
    fields = parse_fields(path, metadata, CHECKPOINT_FIELDS)
    version, step = fields["format_version"], fields["step"]
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written in checkpoint format {version} by difftk "
                              f"{metadata['difftk_version']}; this difftk reads format {FORMAT_VERSION}: upgrade difftk-core")
    try:
        spec = PipelineSpec.from_dict(fields["pipeline"], source=str(path))
    except SpecError as err:
        raise CheckpointError(f"{path}: the stored pipeline cannot be read: {err}") from None
    dataset, train_config, plugin_versions = fields["dataset"], fields["train_config"], fields["plugins"]
    return Checkpoint(path=path, tensors=tensors, metadata=metadata, spec=spec, step=step, dataset=dataset,
                      train_config=train_config, plugins=plugin_versions)






def read_file(path: Path, missing: str) -> tuple[bytes, dict[str, str]]:
    """The bytes of a safetensors file and its validated header metadata; one-line errors,
    ``missing`` being what to say when the file does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {missing}") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err})") from None
    return data, _header_metadata(path, data)


def _corrupt(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a difftk checkpoint (corrupt or truncated): {reason}")


def _header_metadata(path: Path, data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header: 8 bytes of little-endian length, then JSON."""
    if len(data) < 8:
        raise _corrupt(path, f"the file is only {len(data)} bytes long")
    (size,) = struct.unpack("<Q", data[:8])
    if 8 + size > len(data):
        raise _corrupt(path, f"the header claims {size} bytes but the file has {len(data) - 8} after the length")
    header = read_json(data[8:8 + size], what="the header", error=lambda why: _corrupt(path, why))
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _corrupt(path, "the header metadata is not a table of strings")
    return meta


def load_weights(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str, what: str) -> None:
    """``module.load_state_dict(state)`` with a one-line error when the names or shapes differ."""
    label = getattr(getattr(module, "config", None).__class__, "component_label", type(module).__name__)
    if not state:
        raise CheckpointError(f"{source} holds no {what} weights")
    check_weight_dtypes(module, state, source=source, what=what)
    try:
        result = module.load_state_dict(dict(state), strict=False)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise CheckpointError(f"{source}: the {what} weights do not fit {label}: {first}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {', '.join(result.missing_keys[:3])}{' …' if len(result.missing_keys) > 3 else ''}")
        if result.unexpected_keys:
            parts.append(f"unexpected {', '.join(result.unexpected_keys[:3])}{' …' if len(result.unexpected_keys) > 3 else ''}")
        raise CheckpointError(f"{source}: the {what} weights do not fit {label} ({'; '.join(parts)}): "
                              "was it saved with another version of the plugin?")


# --- exporting for sampling -----------------------------------------------------------------------

#: metadata ``contents`` of a checkpoint that holds only what sampling needs
SAMPLING_CONTENTS = "ema"


def export_for_sampling(source: str | Path, path: str | Path, pipeline: str | None = None) -> tuple[Checkpoint, Path]:
    """Write the part of checkpoint ``source`` that sampling and evaluation need — the EMA
    weights and all the metadata (pipeline, plugins, data description, step) — to ``path``.

    Without the trained weights, the optimizer and the RNG states the file is about a quarter
    of the run's checkpoint; it cannot be resumed (metadata ``contents`` says so). ``pipeline``, a
    pipeline's JSON, replaces the run's (``difftk export --set sampler.…``: another default sampler).
    """
    if Path(path).suffix != ".safetensors":
        raise CheckpointError(f"{path}: an exported checkpoint is a .safetensors file: give -o NAME.safetensors")
    ckpt = read_checkpoint(source)
    ema = ckpt.section("ema")
    if not ema:
        raise CheckpointError(f"{ckpt.path} holds no EMA weights to export")
    keep = {k: v for k, v in ckpt.metadata.items() if k not in ("format", "format_version", "optimizer", "data_order")}
    keep["contents"] = SAMPLING_CONTENTS
    if pipeline is not None:
        keep["pipeline"] = pipeline
    return ckpt, save_checkpoint(path, {f"ema/{k}": v for k, v in ema.items()}, keep)
