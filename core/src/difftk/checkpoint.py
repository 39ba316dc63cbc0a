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

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from difftk.errors import DifftkError, OutputError, SpecError
from difftk.fileio import atomic_write_bytes
from difftk.generation import num_classes_of
from difftk.pipeline import Pipeline, PipelineSpec, build

FORMAT = "difftk-checkpoint"
FORMAT_VERSION = 1
#: the file a training run keeps its latest checkpoint in
CHECKPOINT_NAME = "checkpoint.safetensors"
REQUIRED_METADATA: tuple[str, ...] = (
    "format", "format_version", "difftk_version", "pipeline", "plugins", "step", "train_config", "dataset",
)


class CheckpointError(DifftkError):
    """A checkpoint that cannot be read, or that does not fit what it is loaded into."""


# --- writing --------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], *,
                    replaces: str = "export") -> Path:
    """Write ``tensors`` and ``metadata`` as one safetensors file, atomically.

    ``replaces`` says what may already be at ``path`` (:data:`difftk.fileio.REPLACES`): by
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
        """Metadata ``key`` parsed as JSON (``default`` when absent)."""
        if key not in self.metadata:
            return default
        return _parse_json(self.path, key, self.metadata[key])


def resolve_path(path: str | Path) -> Path:
    """``path`` itself, ``path/checkpoint.safetensors`` when ``path`` is a run directory, or the
    file of the checkpoint a plugin ships under the name ``path`` (``difftk plugins`` lists them)."""
    if isinstance(path, str) and path and not Path(path).exists() and "/" not in path and "\\" not in path \
            and not path.endswith(".safetensors"):
        from difftk import plugins

        return plugins.host().registry.checkpoint(path).path
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
    try:
        version = int(metadata["format_version"])
        step = int(metadata["step"])
    except ValueError:
        raise _corrupt(path, "format_version and step must be integers") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written in checkpoint format {version} by difftk "
                              f"{metadata['difftk_version']}; this difftk reads format {FORMAT_VERSION}: upgrade difftk-core")
    try:
        spec = PipelineSpec.from_json(metadata["pipeline"], source=str(path))
    except SpecError as err:
        raise CheckpointError(f"{path}: the stored pipeline cannot be read: {err}") from None
    if step < 0:
        raise _corrupt(path, f"step is {step}, below 0")
    dataset = _parse_json(path, "dataset", metadata["dataset"])
    train_config = _parse_json(path, "train_config", metadata["train_config"])
    plugin_versions = _parse_json(path, "plugins", metadata["plugins"])
    check_metadata(path, dataset, train_config, plugin_versions)
    return Checkpoint(path=path, tensors=tensors, metadata=metadata, spec=spec, step=step, dataset=dataset,
                      train_config=train_config, plugins=plugin_versions)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_metadata(path: Path, dataset: Any, train_config: Any, plugin_versions: Any) -> None:
    """Checkpoints are untrusted input: every metadata field that sampling or resuming reads is
    checked for its type and range here, so a hand-edited or foreign file is one line, not a
    traceback later."""
    def bad(field: str, why: str) -> CheckpointError:
        return CheckpointError(f"{path}: metadata {field} {why}; the file was edited or is not from difftk train")

    if not isinstance(dataset, dict):
        raise bad("'dataset'", f"is {type(dataset).__name__}, not an object")
    if not isinstance(train_config, dict):
        raise bad("'train_config'", f"is {type(train_config).__name__}, not an object")
    if not isinstance(plugin_versions, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in plugin_versions.items()):
        raise bad("'plugins'", "must map plugin names to version strings")
    kind = dataset.get("kind", "image")
    if kind not in ("image", "points"):
        raise bad("dataset.kind", f"is {kind!r}; expected 'image' or 'points'")
    if "shape" in dataset:
        shape = dataset["shape"]
        if not isinstance(shape, list) or not shape or not all(_is_int(d) and 1 <= d <= 1 << 16 for d in shape):
            raise bad("dataset.shape", f"is {shape!r}; expected a list of positive sizes")
        if kind == "image" and len(shape) != 3:
            raise bad("dataset.shape", f"is {shape!r}; an image is [channels, height, width]")
        if kind == "points" and len(shape) != 1:
            raise bad("dataset.shape", f"is {shape!r}; points are [dimensions]")
    for key in ("size", "num_classes"):
        if key in dataset and not (_is_int(dataset[key]) and dataset[key] >= 0):
            raise bad(f"dataset.{key}", f"is {dataset[key]!r}; expected a whole number ≥ 0")
    names = dataset.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise bad("dataset.class_names", f"is {names!r}; expected a list of strings")
    if names and _is_int(dataset.get("num_classes")) and len(names) != dataset["num_classes"]:
        raise bad("dataset.class_names", f"names {len(names)} classes but num_classes is {dataset['num_classes']}")
    bounds = dataset.get("bounds")
    if bounds is not None and not (isinstance(bounds, list) and len(bounds) == 4
                                   and all(isinstance(b, int | float) and math.isfinite(b) for b in bounds)):
        raise bad("dataset.bounds", f"is {bounds!r}; expected 4 finite numbers")
    for key in ("name",):
        if key in dataset and not isinstance(dataset[key], str):
            raise bad(f"dataset.{key}", f"is {dataset[key]!r}; expected a string")
    if "options" in dataset and not isinstance(dataset["options"], dict):
        raise bad("dataset.options", "must be an object")


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
    try:
        header = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _corrupt(path, f"the header is not JSON ({err})") from None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _corrupt(path, "the header metadata is not a table of strings")
    return meta


def _parse_json(path: Path, key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _corrupt(path, f"metadata '{key}' is not JSON ({err})") from None


def load_weights(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str, what: str) -> None:
    """``module.load_state_dict(state)`` with a one-line error when the names or shapes differ."""
    label = getattr(getattr(module, "config", None).__class__, "component_label", type(module).__name__)
    if not state:
        raise CheckpointError(f"{source} holds no {what} weights")
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


def export_for_sampling(source: str | Path, path: str | Path) -> tuple[Checkpoint, Path]:
    """Write the part of checkpoint ``source`` that sampling and evaluation need — the EMA
    weights and all the metadata (pipeline, plugins, data description, step) — to ``path``.

    Without the trained weights, the optimizer and the RNG states the file is about a quarter
    of the run's checkpoint; it cannot be resumed (metadata ``contents`` says so).
    """
    if Path(path).suffix != ".safetensors":
        raise CheckpointError(f"{path}: an exported checkpoint is a .safetensors file: give -o NAME.safetensors")
    ckpt = read_checkpoint(source)
    ema = ckpt.section("ema")
    if not ema:
        raise CheckpointError(f"{ckpt.path} holds no EMA weights to export")
    keep = {k: v for k, v in ckpt.metadata.items() if k not in ("format", "format_version", "optimizer", "data_order")}
    keep["contents"] = SAMPLING_CONTENTS
    return ckpt, save_checkpoint(path, {f"ema/{k}": v for k, v in ema.items()}, keep)


# --- loading for sampling -------------------------------------------------------------------------


@attrs.frozen(eq=False)
class TrainedModel:
    """A checkpoint's pipeline with its EMA denoiser loaded, in eval mode, ready to sample."""

    pipeline: Pipeline
    denoiser: torch.nn.Module
    checkpoint: Checkpoint

    @property
    def data_kind(self) -> str:
        """``"image"`` or ``"points"``: what the model was trained on."""
        return self.checkpoint.dataset.get("kind", "image")

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. (1, 28, 28)."""
        return tuple(self.checkpoint.dataset["shape"])

    @property
    def num_classes(self) -> int:
        """Classes the denoiser is conditioned on (0 when unconditional)."""
        return num_classes_of(self.denoiser)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.checkpoint.dataset.get("class_names") or ())

    def plugin_mismatches(self) -> list[str]:
        """Plugins whose installed version differs from the one the checkpoint was made with."""
        from difftk import plugins

        notes = []
        for name, version in sorted(self.checkpoint.plugins.items()):
            record = plugins.host().records.get(name)
            if record is not None and version and record.version and record.version != version:
                notes.append(f"plugin '{name}' is {record.version}; the checkpoint was made with {version}")
        return notes


def load_for_sampling(path: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
    """Build a checkpoint's pipeline and load its EMA weights into the denoiser (eval mode).

    A component whose plugin is not installed is named (``… needs denoiser 'unet-attn' from
    plugin 'unet_attn' 0.1.0, which is not installed``).
    """
    ckpt = read_checkpoint(path)
    if "shape" not in ckpt.dataset:
        raise CheckpointError(f"{ckpt.path}: metadata 'dataset' lacks the data shape")
    pipeline = build(ckpt.spec, source=str(ckpt.path))
    if pipeline.denoiser is None or not isinstance(pipeline.denoiser, torch.nn.Module):
        raise CheckpointError(f"{ckpt.path}: the stored pipeline has no trainable denoiser")
    ema = ckpt.section("ema")
    bad = sum(int((~torch.isfinite(t)).sum()) for t in ema.values() if t.is_floating_point())
    if bad:
        total = sum(t.numel() for t in ema.values())
        raise CheckpointError(f"{ckpt.path}: {bad:,} of its {total:,} EMA weights are NaN or infinite (the run diverged "
                              "before this checkpoint was written): sample an earlier checkpoint, or retrain with a "
                              "lower --lr")
    load_weights(pipeline.denoiser, ema, source=str(ckpt.path), what="EMA")
    denoiser = pipeline.denoiser.to(device).eval().requires_grad_(False)
    _check_fits(ckpt, denoiser, device)
    return TrainedModel(pipeline=pipeline, denoiser=denoiser, checkpoint=ckpt)


def _check_fits(ckpt: Checkpoint, denoiser: torch.nn.Module, device: torch.device | str) -> None:
    """One denoiser call on a zero example of the recorded data shape: a shape (or a class count)
    the network cannot take is a one-line error now, not a traceback in the middle of sampling."""
    shape = tuple(ckpt.dataset["shape"])
    x = torch.zeros((1, *shape), device=device)
    classes = num_classes_of(denoiser)
    cond = torch.zeros(1, dtype=torch.long, device=device) if classes else None
    try:
        with torch.inference_mode():
            y = denoiser(x, torch.full((1,), 0.5, device=device), cond=cond)
    except Exception as err:  # the network's own complaint, condensed to its first line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{ckpt.path}: metadata dataset.shape {list(shape)} does not fit the stored network "
                              f"({type(err).__name__}: {first[:160]})") from None
    factor = 2 if getattr(denoiser, "learned_variance", False) else 1
    expected = (1, factor * shape[0], *shape[1:])
    if tuple(y.shape) != expected:
        raise CheckpointError(f"{ckpt.path}: metadata dataset.shape {list(shape)} does not fit the stored network "
                              f"(it returns {list(y.shape[1:])})")
    names = ckpt.dataset.get("class_names") or []
    if names and classes and len(names) != classes:
        raise CheckpointError(f"{ckpt.path}: metadata names {len(names)} classes but the network has {classes}")
