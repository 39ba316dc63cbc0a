"""The weights file of a trained ``kl`` autoencoder: safetensors, with its architecture and latent scale.

The header metadata holds ``format`` (``difftk-autoencoder``), ``config`` (the architecture options, JSON),
``scale`` and ``shift`` (z_scaled = (z − shift)·scale, set from the latents over the data when it was
trained) and ``training`` (how it was trained, JSON). Files are untrusted: the header is read by the
core's bounded reader, tensors by safetensors (no pickle), and every mismatch is one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from difftk.checkpoint.files import load_weights, read_file
from difftk.checkpoint.tensors import count_non_finite
from difftk.components.weights import locate
from difftk.errors import CheckpointError, OptionError
from difftk.runtime.files import atomic_write_bytes
from difftk.runtime.untrusted import read_json
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

FORMAT = "difftk-autoencoder"
#: the options that fix the architecture (all but ``weights``)
ARCHITECTURE = ("in_channels", "channels", "channel_mult", "num_res_blocks", "z_channels", "groups", "pad")


def resolve(source: str) -> Path:
    """The weights file ``source`` names: a path, or the name of weights a plugin ships for ``kl``."""
    return locate("autoencoder", "kl", str(source))


def architecture(config: Any) -> dict[str, Any]:
    return {name: (list(v) if isinstance(v := getattr(config, name), tuple) else v) for name in ARCHITECTURE}


def save(
    path: str | Path, module: torch.nn.Module, *, scale: float, shift: float, training: dict[str, Any] | None = None
) -> Path:
    """Write ``module``'s weights with its architecture, ``scale`` and ``shift``, atomically."""
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(shift)):
        raise OptionError(f"scale={scale} and shift={shift} must be finite, scale > 0")
    metadata = {
        "format": FORMAT,
        "config": json.dumps(architecture(module.config)),
        "scale": repr(float(scale)),
        "shift": repr(float(shift)),
        "training": json.dumps(training or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return atomic_write_bytes(Path(path), save_tensors(tensors, metadata=metadata))


def read(source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata with ``config`` and ``training`` parsed and ``scale``, ``shift`` as floats)."""
    path = resolve(source)
    data, meta = read_file(
        path, "no such autoencoder weights file (train one with `python -m difftk_autoencoder.train`)"
    )
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a kl autoencoder weights file (format {meta.get('format')!r}, expected {FORMAT!r})"
        )
    out: dict[str, Any] = {}
    for key in ("config", "training"):
        out[key] = read_json(meta.get(key, "{}"), what=f"{path}: metadata {key}", error=CheckpointError)
    for key in ("scale", "shift"):
        try:
            out[key] = float(meta[key])
        except (KeyError, ValueError):
            raise CheckpointError(f"{path}: metadata {key} is missing or not a number") from None
    if not (math.isfinite(out["scale"]) and out["scale"] > 0 and math.isfinite(out["shift"])):
        raise CheckpointError(
            f"{path}: metadata scale={out['scale']} and shift={out['shift']} must be finite, scale > 0"
        )
    try:
        tensors = load_tensors(data)
    except Exception as err:  # safetensors' own complaint about a damaged body
        raise CheckpointError(f"{path}: the tensors cannot be read ({' '.join(str(err).split())[:160]})") from None
    bad, total = count_non_finite(tensors)
    if bad:
        raise CheckpointError(f"{path}: {bad:,} of its {total:,} weights are NaN or infinite")
    return tensors, out


def load_into(module: torch.nn.Module, source: str) -> None:
    """Load the weights file ``source`` into ``module``, whose options must be the file's
    architecture, and set its ``scale`` and ``shift``."""
    tensors, meta = read(source)
    mine, theirs = architecture(module.config), meta["config"]
    for name in ARCHITECTURE:
        if name in theirs and theirs[name] != mine[name]:
            shown = ",".join(map(str, theirs[name])) if isinstance(theirs[name], list) else theirs[name]
            raise OptionError(
                f"autoencoder 'kl': {source} was trained with {name}={shown}, not {mine[name]}: set "
                f"autoencoder.{name}={shown}"
            )
    load_weights(module, tensors, source=str(source), what="autoencoder")
    module.scale, module.shift = meta["scale"], meta["shift"]
