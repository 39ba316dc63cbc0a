"""Command-line parsing the commands share: ``--set``, ``--data``, ``--data-option`` and metric options.

Each rule is written once here; a command imports these, never another command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import click
from difftk.components import plugins
from difftk.errors import OptionError


def parse_sets(pairs: Sequence[str], allowed: Sequence[str] | None = None, *, why: str = "") -> dict[str, dict[str, str]]:
    """``("sampler.eta=0.5",)`` -> ``{"sampler": {"eta": "0.5"}}``, with one-line errors.

    ``allowed`` lists the kinds this command may change; ``why`` says why the others are fixed.
    """
    options: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        kind, dot, name = key.partition(".")
        if not sep or not dot or not kind.strip() or not name.strip():
            example = f"{allowed[0]}.OPTION=VALUE" if allowed else "sampler.eta=0.5"
            raise OptionError(f"--set {pair!r} is not KIND.OPTION=VALUE (e.g. --set {example})")
        kind = kind.strip()
        if allowed is not None and kind not in allowed:
            kinds = " and ".join(allowed) if len(allowed) < 3 else ", ".join(allowed)
            raise OptionError(f"--set {kind}.…: only {kinds} options can be set here{why}")
        options.setdefault(kind, {})[name.strip()] = value.strip()
    return options


def metric_options(metric_names: Sequence[str], given: Mapping[str, str], *, n_flag: bool = False) -> dict[str, dict[str, str]]:
    """``--set metric.KEY=VALUE`` (and ``-n``) split per metric: each metric gets the keys it has.
    A key no metric has is an error; every metric is built once, so each value is checked
    before any work."""
    registry = plugins.registry()
    fields = {name: registry.get("metric", name).option_fields() for name in metric_names}
    for key in given:
        if not any(key in f for f in fields.values()):
            what = "-n" if key == "n" and n_flag else f"--set metric.{key}"
            known = "; ".join(f"{m}: {', '.join(f) or 'none'}" for m, f in fields.items())
            raise OptionError(f"{what}: no metric among {', '.join(metric_names)} has option {key} (options: {known})")
    per_metric = {name: {k: v for k, v in given.items() if k in fields[name]} for name in metric_names}
    for name, options in per_metric.items():
        registry.get("metric", name).build(options, from_strings=True)
    return per_metric


def argv_without(flag: str, argv: Sequence[str]) -> list[str]:
    """``argv`` without ``flag VALUE`` (or ``flag=VALUE``): the command a launcher re-runs in each process."""
    argv = list(argv)
    i = next((k for k, a in enumerate(argv) if a == flag or a.startswith(f"{flag}=")), None)
    if i is not None:
        del argv[i:i + (1 if "=" in argv[i] else 2)]
    return argv


def parse_data(text: str) -> tuple[str, str | None]:
    """``mnist`` -> (mnist, None); ``cifar10:/data/cifar`` -> (cifar10, /data/cifar)."""
    name, sep, path = text.partition(":")
    name = name.strip()
    if not name:
        raise OptionError(f"--data {text!r} names no dataset: use --data NAME or NAME:PATH (e.g. --data mnist)")
    if sep and not path.strip():
        raise OptionError(f"--data {text!r} has an empty path after ':': use --data {name} or {name}:PATH")
    return name, path.strip() or None


def parse_data_options(items: Sequence[str]) -> dict[str, str]:
    """``("image_size=32", "holdout=0.1")`` -> ``{"image_size": "32", "holdout": "0.1"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--data-option {item!r} must be KEY=VALUE, e.g. --data-option image_size=32")
        out[key.strip()] = value.strip()
    return out


#: the dataset's own options, for datasets that have them (image-folder: image_size, channels, holdout)
DATA_OPTION = click.option("--data-option", "data_options", metavar="KEY=VALUE", multiple=True,
                           help="Set an option of the dataset, e.g. image_size=32 for image-folder; repeatable.")

#: where to compute, for every command that does
DEVICE_OPTION = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
