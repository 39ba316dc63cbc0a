"""Checking a checkpoint's metadata: checkpoints are untrusted input, so every field that sampling
or resuming reads is parsed with a bound on its size and depth and checked for its type and
range before it is used.

The checks are tables: :data:`CHECKPOINT_FIELDS` (the header's string values) and
:data:`DATASET_FIELDS` (the entries of ``dataset``). A field is one :class:`Field`: whether its
text is JSON, how long and how deep it may be, and one check that returns what is wrong (or
``None``). :func:`parse_fields` runs a table over a header; a new field gets a row, not a new
``if``. Classifier files (:mod:`difftk.checkpoint.classifier_file`) use the same machinery.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from difftk.errors import CheckpointError
from difftk.runtime.untrusted import read_json

#: the most elements one example may have (4 × 2048 × 2048): a file asking for more would make the
#: shape probe and every batch allocate without bound
MAX_EXAMPLE_ELEMENTS = 1 << 24
#: the most classes a dataset may record
MAX_CLASSES = 1 << 16
#: the largest whole numbers a count in metadata may hold (a step, a dataset size)
MAX_COUNT = 1 << 53

Check = Callable[[Any], "str | None"]


@attrs.frozen
class Field:
    """One metadata field: its text read as ``form`` (``json``, ``text`` or ``int``), bounded in
    bytes and nesting depth, then checked by ``check`` (which returns what is wrong, ``None`` when
    it is fine)."""

    check: Check
    form: str = attrs.field(default="json", validator=attrs.validators.in_(("json", "text", "int")))
    max_bytes: int = 64 << 10
    max_depth: int = 4


# --- checks: each returns a phrase that follows the field's name, or None ------------------------


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def count(low: int = 0, high: int = MAX_COUNT) -> Check:
    """A whole number in [low, high]."""
    def check(value: Any) -> str | None:
        if not is_int(value) or not low <= value <= high:
            return f"is {_show(value)}; expected a whole number in [{low:,}, {high:,}]"
        return None
    return check


def text(max_chars: int = 256, choices: tuple[str, ...] | None = None) -> Check:
    """A string of at most ``max_chars`` characters (one of ``choices`` when given)."""
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or len(value) > max_chars:
            return f"is {_show(value)}; expected a string of at most {max_chars} characters"
        if choices is not None and value not in choices:
            return f"is {value!r}; expected {' or '.join(map(repr, choices))}"
        return None
    return check


def table(values: Check | None = None, max_items: int = 4096) -> Check:
    """A JSON object of string keys (each value passing ``values`` when given)."""
    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"is {type(value).__name__}, not an object"
        if len(value) > max_items:
            return f"has {len(value):,} entries; at most {max_items:,} are read"
        if values is not None:
            for key, item in value.items():
                why = values(item)
                if why is not None:
                    return f"entry {key!r} {why}"
        return None
    return check


def listing(items: Check, max_items: int, *, min_items: int = 0) -> Check:
    """A JSON array of ``min_items`` to ``max_items`` entries, each passing ``items``."""
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or not min_items <= len(value) <= max_items:
            return f"is {_show(value)}; expected a list of {min_items} to {max_items:,} entries"
        for i, item in enumerate(value):
            why = items(item)
            if why is not None:
                return f"entry {i} {why}"
        return None
    return check


def optional(inner: Check) -> Check:
    return lambda value: None if value is None else inner(value)


_VERSION = re.compile(r"[\w.+!-]{1,64}")


def version(value: Any) -> str | None:
    """A version string as packages write them (``0.1.0``, ``2.13.0+cpu``)."""
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        return f"is {_show(value)}; expected a version such as '0.1.0'"
    return None


def version_of_plugin(value: Any) -> str | None:
    return None if value is None else version(value)


def example_shape(value: Any) -> str | None:
    """[C, H, W] or [D]: positive sizes whose product (the elements of one example) is bounded."""
    why = listing(count(1, 1 << 16), 3, min_items=1)(value)
    if why is not None:
        return f"is {_show(value)}; expected a list of positive sizes ([channels, height, width] or [dimensions])"
    if math.prod(value) > MAX_EXAMPLE_ELEMENTS:
        return (f"is {value}, {math.prod(value):,} values per example; at most {MAX_EXAMPLE_ELEMENTS:,} are allowed "
                "(4 × 2048 × 2048)")
    return None


def bounds(value: Any) -> str | None:
    if not (isinstance(value, list) and len(value) == 4 and all(is_number(b) for b in value)):
        return f"is {_show(value)}; expected 4 finite numbers"
    return None


def scalar_or_list(value: Any) -> str | None:
    """An option value as pipeline and training settings store it: a scalar, null, or a list of them."""
    scalar = lambda v: v is None or isinstance(v, str | bool) or is_number(v)  # noqa: E731
    if scalar(value) or (isinstance(value, list) and len(value) <= 4096 and all(scalar(v) for v in value)):
        return None
    return f"is {_show(value)}; expected a number, string, true/false or a list of them"


# --- the tables -----------------------------------------------------------------------------------

#: the entries of metadata ``dataset`` (what :func:`difftk.data.pipeline_data.describe_dataset` writes)
DATASET_FIELDS: dict[str, Check] = {
    "kind": text(16, ("image", "points")),
    "shape": example_shape,
    "size": count(0, MAX_COUNT),
    "num_classes": count(0, MAX_CLASSES),
    "class_names": listing(text(256), MAX_CLASSES),
    "bounds": bounds,
    "name": text(256),
    "plugin": text(256),
    "fingerprint": text(256),
    "options": table(scalar_or_list, 256),
}


def check_dataset(dataset: Any) -> tuple[str, str] | None:
    """(field, why) for the first entry of ``dataset`` that is wrong, or ``None``; unknown entries
    are kept but not read."""
    why = table(None, 256)(dataset)
    if why is not None:
        return "'dataset'", why
    for key, check in DATASET_FIELDS.items():
        if key in dataset:
            why = check(dataset[key])
            if why is not None:
                return f"dataset.{key}", why
    kind, shape = dataset.get("kind", "image"), dataset.get("shape")
    if shape is not None and kind == "image" and len(shape) != 3:
        return "dataset.shape", f"is {shape!r}; an image is [channels, height, width]"
    if shape is not None and kind == "points" and len(shape) != 1:
        return "dataset.shape", f"is {shape!r}; points are [dimensions]"
    names, classes = dataset.get("class_names"), dataset.get("num_classes")
    if names and classes is not None and len(names) != classes:
        return "dataset.class_names", f"names {len(names)} classes but num_classes is {classes}"
    return None


def _dataset_check(value: Any) -> str | None:
    found = check_dataset(value)
    if found is None:
        return None
    field, why = found
    return why if field == "'dataset'" else f"has {field} that {why}"


def _data_order(value: Any) -> str | None:
    why = table(count(0, MAX_COUNT), 8)(value)
    if why is None and not {"epoch", "position"} <= value.keys():
        why = f"is {_show(value)}; expected {{\"epoch\": N, \"position\": N}}"
    return why


#: the header's string values, by key; those absent here are kept as they are but never read
CHECKPOINT_FIELDS: dict[str, Field] = {
    "format": Field(text(64), form="text"),
    "format_version": Field(count(1, 1 << 16), form="int"),
    "difftk_version": Field(version, form="text"),
    "step": Field(count(0, MAX_COUNT), form="int"),
    "contents": Field(text(64, ("ema",)), form="text"),
    "pipeline": Field(table(None, 16), max_depth=4),
    "plugins": Field(table(version_of_plugin, 1024), max_depth=1),
    "train_config": Field(table(scalar_or_list, 256), max_depth=2),
    "dataset": Field(_dataset_check, max_bytes=4 << 20, max_depth=3),
    # param_groups list every parameter's index, so this grows with the network
    "optimizer": Field(table(None, 16), max_bytes=8 << 20, max_depth=5),
    "data_order": Field(_data_order, max_depth=1),
}


def parse_fields(path: Path, metadata: Mapping[str, str], fields: Mapping[str, Field]) -> dict[str, Any]:
    """Every field of ``fields`` present in ``metadata``, parsed (JSON within its bounds) and checked:
    a field that is not valid is one :class:`CheckpointError` line naming it."""
    def bad(key: str, why: str) -> CheckpointError:
        return CheckpointError(f"{path}: metadata '{key}' {why}; the file was edited or is not from difftk")

    parsed: dict[str, Any] = {}
    for key, field in fields.items():
        if key not in metadata:
            continue
        raw = metadata[key]
        if len(raw) > field.max_bytes:
            raise bad(key, f"is {len(raw):,} characters long; at most {field.max_bytes:,} are read")
        if field.form == "json":
            value = read_json(raw, what="", max_depth=field.max_depth,
                              error=lambda reason, key=key: bad(key, reason.strip()))
        elif field.form == "int":
            digits = raw.strip()
            if not (digits.isascii() and digits.removeprefix("-").isdigit() and len(digits) <= 20):
                raise bad(key, f"is {_show(raw)}; expected a whole number")
            value = int(digits)
        else:
            value = raw
        why = field.check(value)
        if why is not None:
            raise bad(key, why)
        parsed[key] = value
    return parsed


def check_metadata(path: Path, dataset: Any, train_config: Any, plugin_versions: Any) -> None:
    """Already-parsed ``dataset``, ``train_config`` and ``plugins`` checked by their rows of
    :data:`CHECKPOINT_FIELDS` (for callers that hold the values rather than the header)."""
    for key, value in (("dataset", dataset), ("train_config", train_config), ("plugins", plugin_versions)):
        why = CHECKPOINT_FIELDS[key].check(value)
        if why is not None:
            raise CheckpointError(f"{path}: metadata '{key}' {why}; the file was edited or is not from difftk")
