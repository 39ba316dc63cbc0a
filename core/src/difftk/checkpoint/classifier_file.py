"""The classifier file: a noise-aware classifier's weights and how it was made, one safetensors file.

Weights are under ``classifier/…``; the string metadata records ``format`` (``difftk-classifier``),
``classifier`` and ``schedule`` (component specs as JSON, with plugin and version), ``dataset``,
``step``, ``metrics`` and ``difftk_version``. Written atomically, never pickle, and read as untrusted
input: the metadata is checked field by field as a checkpoint's is. Classifier guidance reads these
files, and so do the metrics that take a classifier as their feature network; training one is
:mod:`difftk.training.classifier`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load

from difftk.checkpoint.files import load_weights, read_file, save_checkpoint
from difftk.checkpoint.metadata import (
    CHECKPOINT_FIELDS,
    Field,
    is_number,
    optional,
    parse_fields,
    scalar_or_list,
    table,
    text,
)
from difftk.checkpoint.tensors import count_non_finite
from difftk.components import plugins
from difftk.errors import CheckpointError, OptionError
from difftk.pipeline.spec import ComponentSpec
from difftk.version import __version__

FORMAT = "difftk-classifier"
FORMAT_VERSION = 1


def save_classifier(path: str | Path, classifier: torch.nn.Module, spec: ComponentSpec, *,
                    schedule: ComponentSpec | None, dataset: dict[str, Any], step: int,
                    metrics: dict[str, float] | None = None) -> Path:
    """Write the classifier's weights and how it was made as one safetensors file, atomically."""
    tensors = {f"classifier/{k}": v for k, v in classifier.state_dict().items()}
    metadata = {
        "format": FORMAT, "format_version": str(FORMAT_VERSION), "difftk_version": __version__,
        "classifier": json.dumps(spec.to_dict()), "schedule": json.dumps(schedule.to_dict() if schedule else None),
        "dataset": json.dumps(dataset, sort_keys=True), "step": str(step),
        "metrics": json.dumps(metrics or {}, sort_keys=True),
    }
    return save_checkpoint(path, tensors, metadata)


def _component(value: Any) -> str | None:
    """A component spec as a file stores it: {name, options, plugin, version}."""
    if value is None:
        return None
    why = table(None, 8)(value)
    if why is None and not isinstance(value.get("name"), str):
        why = f"is {str(value)[:40]!r}; expected {{\"name\": …, \"options\": {{…}}}}"
    for key, check in (("name", text(256)), ("plugin", optional(text(256))), ("version", optional(text(64))),
                       ("options", table(scalar_or_list, 256))):
        if why is None and key in value:
            inner = check(value[key])
            why = None if inner is None else f"has {key} that {inner}"
    return why


#: the metadata of a classifier file, checked field by field as a checkpoint's is
CLASSIFIER_FIELDS: dict[str, Field] = {
    "format": CHECKPOINT_FIELDS["format"],
    "format_version": CHECKPOINT_FIELDS["format_version"],
    "difftk_version": CHECKPOINT_FIELDS["difftk_version"],
    "step": CHECKPOINT_FIELDS["step"],
    "dataset": CHECKPOINT_FIELDS["dataset"],
    "classifier": Field(lambda v: "is null; expected the classifier's spec" if v is None else _component(v), max_depth=3),
    "schedule": Field(_component, max_depth=3),
    "metrics": Field(table(lambda v: None if is_number(v) else f"is {v!r}; expected a finite number", 64), max_depth=1),
}


def read_classifier_metadata(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """The checked metadata of a classifier file (:data:`CLASSIFIER_FIELDS`, parsed) and its bytes;
    one-line errors for anything else."""
    path = Path(path)
    data, metadata = read_file(path, "no such classifier file (make one with `difftk train-classifier`)")
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a difftk classifier file (format {metadata.get('format', 'none')!r}): "
                              "make one with `difftk train-classifier`")
    if "classifier" not in metadata:
        raise CheckpointError(f"{path} is not a complete classifier file: its metadata lacks 'classifier' (which "
                              "network it is)")
    fields = parse_fields(path, metadata, CLASSIFIER_FIELDS)
    if fields.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise CheckpointError(f"{path} is classifier format {fields['format_version']}; this difftk reads format "
                              f"{FORMAT_VERSION}: upgrade difftk-core")
    return fields, data


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Build the classifier a file describes, load its weights, and return it in eval mode
    without gradients for its parameters (guidance differentiates with respect to x_t only).

    The file is untrusted: its metadata is checked (:data:`CLASSIFIER_FIELDS`), the network's size
    bounded before it is built, and weights of another dtype or not finite are refused."""
    fields, data = read_classifier_metadata(path)
    spec = fields["classifier"]
    try:
        tensors = st_load(data)
    except Exception as err:
        raise CheckpointError(f"{path} is corrupt: {' '.join(str(err).split())}") from None
    state = {k.removeprefix("classifier/"): v for k, v in tensors.items() if k.startswith("classifier/")}
    bad, total = count_non_finite(state)
    if bad:
        raise CheckpointError(f"{path}: {bad:,} of its {total:,} classifier weights are NaN or infinite (its training "
                              "diverged): train it again, with a lower learning rate")
    info = plugins.registry().get("classifier", spec["name"])
    try:
        classifier = info.instantiate(dict(spec.get("options", {})))
    except OptionError as err:
        raise CheckpointError(f"{path}: the stored classifier cannot be built: {err}") from None
    load_weights(classifier, state, source=str(path), what="classifier")
    classifier.schedule_spec = fields.get("schedule")
    return classifier.to(device).eval().requires_grad_(False)
