"""Command-line parsing the commands share: ``--set``, ``--data``, ``--data-option``, metric options, and
the output guard every command runs before its work (:class:`OutputPath`, :class:`Command`).

Each rule is written once here; a command imports these, never another command.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from difftk.components import plugins
from difftk.errors import OptionError
from difftk.runtime.files import guard_output


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
        registry.get("metric", name).instantiate(options, from_strings=True)
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


class OutputPath(click.Path):
    """The type of every option or argument that names an output. ``purpose`` is a key of
    :data:`difftk.runtime.files.PURPOSES`, or a function of the command's parameters that gives one
    (export writes a checkpoint or a folder as --format says). :class:`Command` checks the path with
    :func:`~difftk.runtime.files.guard_output` before the command runs."""

    def __init__(self, purpose: str | Callable[[dict[str, Any]], str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.purpose = purpose

    def purpose_for(self, params: dict[str, Any]) -> str:
        return self.purpose(params) if callable(self.purpose) else self.purpose


def _label(param: click.Parameter) -> str:
    return param.human_readable_name if isinstance(param, click.Argument) else max(param.opts, key=len)


class Command(click.Command):
    """A command whose outputs are checked before it runs: every parameter of type
    :class:`OutputPath` goes through :func:`~difftk.runtime.files.guard_output`, with every path the
    command reads (its other path parameters, and those named in ``reads``) as the inputs it may
    not replace. So no work is lost to an output that cannot be written."""

    def __init__(self, *args: Any, reads: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads = reads

    def inputs(self, params: dict[str, Any]) -> dict[str, str]:
        """``{label: path}`` of every path this command reads."""
        found: dict[str, str] = {}
        for param in self.params:
            value = params.get(param.name)
            if value is None or isinstance(param.type, OutputPath):
                continue
            if isinstance(param.type, click.Path) or param.name in self.reads:
                for i, v in enumerate(value if isinstance(value, (tuple, list)) else (value,)):
                    found[_label(param) + (f" #{i + 1}" if isinstance(value, (tuple, list)) and len(value) > 1 else "")] = str(v)
        return found

    def outputs(self, params: dict[str, Any]) -> list[tuple[click.Parameter, str, str]]:
        """(parameter, path, purpose) of every output given."""
        return [(p, str(params[p.name]), p.type.purpose_for(params)) for p in self.params
                if isinstance(p.type, OutputPath) and params.get(p.name) is not None]

    def invoke(self, ctx: click.Context) -> Any:
        self.check_outputs(ctx.params)
        return super().invoke(ctx)

    def check_outputs(self, params: dict[str, Any]) -> None:
        """Guard every output among ``params``; a command whose values also come from elsewhere (an
        experiment file's ``[training]``) calls this again with them before its work."""
        inputs = self.inputs(params)
        seen: dict[Path, str] = {}
        for param, path, purpose in self.outputs(params):
            guard_output(path, purpose, inputs=inputs)
            key = Path(path).absolute()
            if key in seen:
                raise OptionError(f"{_label(param)} {path} is the {seen[key]} output too: give each output its own path")
            seen[key] = _label(param)
