"""Checking a checkpoint's metadata: checkpoints are untrusted input, so every field that sampling
or resuming reads is checked for its type and range before it is used.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from difftk.errors import CheckpointError


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
