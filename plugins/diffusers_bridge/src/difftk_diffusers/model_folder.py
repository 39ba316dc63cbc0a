"""difftk's own models as a Hub-style folder: ``difftk export CHECKPOINT --format folder -o DIR``.

The folder holds three files, as a Hugging Face Hub model repository does:

- ``model.safetensors``: the exported checkpoint (EMA weights and every metadata key, as
  ``difftk export`` writes it), so the folder needs nothing else to sample;
- ``config.json``: ``{"_class_name": "DifftkModel", "format": 1, "pipeline": {...}, "data":
  {...}, "step": N}`` — what the model is, readable without difftk;
- ``pipeline.toml``: the pipeline spec, as ``difftk compose`` writes it.

``difftk.load(DIR)`` reads it back: ``config.json`` is checked (bounded, typed) and must agree
with the checkpoint's own pipeline. Nothing here imports diffusers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from difftk.checkpoint.files import SAMPLING_CONTENTS, save_checkpoint
from difftk.errors import CheckpointError, IncompatibleError, OutputError, SpecError
from difftk.pipeline.spec import PipelineSpec
from difftk.runtime.files import atomic_write_text, short_path
from difftk.version import __version__

from difftk_diffusers.validate import choice, integer, read_json

#: the class name that marks a difftk model folder's config.json, and the folder format this code writes
CLASS_NAME, FORMAT = "DifftkModel", 1
CONFIG, WEIGHTS, PIPELINE = "config.json", "model.safetensors", "pipeline.toml"
#: metadata an exported checkpoint does not carry (resuming needs them; sampling does not)
TRAINING_ONLY = ("format", "format_version", "optimizer", "data_order")
#: what a Hugging Face Hub id looks like: owner/name
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9_.-]{1,96}")


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is a folder whose config.json names a difftk model (read cheaply, never trusted)."""
    config = path / CONFIG
    try:
        return config.is_file() and config.stat().st_size <= 2**20 and b'"DifftkModel"' in config.read_bytes()
    except OSError:
        return False


def hub_hint(source: Any) -> str | None:
    """For a ``source`` that does not exist and looks like a Hub id (``google/ddpm-cifar10-32``), what to do."""
    if not isinstance(source, str) or not HUB_ID.fullmatch(source) or Path(source).exists() \
            or Path(source).parent.exists():  # runs/mnist beside an existing runs/ is a local path with a typo
        return None
    name = source.split("/")[1]
    return (f"{source}: no such file or folder. If it is a Hugging Face Hub id: difftk reads local folders only and "
            f"downloads nothing; download the folder first (huggingface-cli download {source} --local-dir {name}) "
            f"and give that folder ({name})")


def _check_output(out: Path) -> None:
    """A new or empty folder, or one this format wrote before; never a folder holding someone else's files."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{short_path(out)} is a file: --format folder writes a folder, give -o DIR")
    if out.is_dir() and any(out.iterdir()) and not is_model_folder(out):
        raise OutputError(f"{short_path(out)} exists and holds other files: give a new or empty folder")


def export_folder(model: Any, output: str | Path) -> str:
    """Write ``model`` (a difftk checkpoint's) to folder ``output``; what was written, in words."""
    out = Path(output)
    _check_output(out)
    ckpt = model.checkpoint
    ema = ckpt.section("ema")
    if not ema or ckpt.metadata.get("format") != "difftk-checkpoint":
        raise IncompatibleError(f"{ckpt.path} is not a difftk checkpoint ({ckpt.metadata.get('format', 'unknown')} "
                                "format): --format folder writes difftk's own models; a diffusers model is a folder already")
    metadata = {k: v for k, v in ckpt.metadata.items() if k not in TRAINING_ONLY}
    metadata["contents"] = SAMPLING_CONTENTS
    data = {key: ckpt.dataset[key] for key in ("kind", "shape", "num_classes", "class_names") if key in ckpt.dataset}
    config = {"_class_name": CLASS_NAME, "_difftk_version": __version__, "format": FORMAT,
              "pipeline": ckpt.spec.to_dict(), "data": data, "step": ckpt.step, "weights": WEIGHTS}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / WEIGHTS, {f"ema/{k}": v for k, v in ema.items()}, metadata)
    atomic_write_text(out / PIPELINE, ckpt.spec.to_toml())
    atomic_write_text(out / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
    size = (out / WEIGHTS).stat().st_size
    return (f"wrote {out}: {CONFIG}, {WEIGHTS} (EMA weights of step {ckpt.step:,}, {size / 1e6:.1f} MB) and {PIPELINE}; "
            f"difftk.load('{out}') reads it back")


def load_folder(folder: Path, device: Any = "cpu") -> Any:
    """The model in a difftk model folder, after checking its config.json against its checkpoint."""
    import difftk

    config = read_json(folder / CONFIG, "a difftk model config")
    where = str(folder / CONFIG)
    choice(where, "_class_name", config.get("_class_name"), (CLASS_NAME,))
    version = integer(where, "format", config.get("format"), 1, 1_000_000)
    if version > FORMAT:
        raise CheckpointError(f"{where}: folder format {version} is newer than this difftk reads ({FORMAT}): upgrade difftk")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS}: a difftk model folder holds {CONFIG}, {WEIGHTS} and {PIPELINE}")
    if not isinstance(config.get("pipeline"), dict):
        raise CheckpointError(f"{where}: pipeline must be a table of components, as pipeline.toml holds")
    try:
        stated = PipelineSpec.from_dict(config["pipeline"], source=where)
    except SpecError as err:
        raise CheckpointError(f"{where}: the pipeline cannot be read: {err}") from None
    model = difftk.load(weights, device)
    if stated.to_dict() != model.checkpoint.spec.to_dict():
        raise CheckpointError(f"{where}: its pipeline differs from the one stored in {WEIGHTS}: the files are from "
                              "different models; export the folder again")
    return model
