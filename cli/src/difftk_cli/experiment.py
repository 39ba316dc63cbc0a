"""The ``[training]`` section of an experiment file: the settings of ``difftk train`` kept beside
the pipeline, so that ``difftk train exp.toml`` alone runs (and reruns) the experiment.

Each key is a ``difftk train`` option without its dashes (``batch_size`` or ``batch-size``),
checked as the command line checks it; a repeatable option takes a list, a flag true or false::

    [training]
    data = "two-moons"
    steps = 2000
    out = "runs/moons"
    batch_size = 128
    log_to = ["tensorboard", "mlflow"]

An option given on the command line overrides the file's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from difftk.errors import SpecError, did_you_mean
from difftk.pipeline.spec import TRAINING_SECTION
from difftk.runtime.untrusted import read_toml

#: command-line options that are an action of one invocation, not a setting of the experiment
NOT_SETTINGS: dict[str, str] = {"resume": "--resume continues a run: give it on the command line"}


def read_section(path: str | Path) -> Mapping[str, Any]:
    """The ``[training]`` table of ``path`` (empty when there is none); the file was read as a
    pipeline first, so it exists and is TOML."""
    data = read_toml(Path(path).read_text(encoding="utf-8"), what=str(path),
                     error=lambda reason: SpecError(reason))
    section = data.get(TRAINING_SECTION, {})
    if not isinstance(section, Mapping):
        raise SpecError(f"{path}: [{TRAINING_SECTION}] must be a table of difftk train options, e.g. steps = 2000")
    return section


def _convert(ctx: click.Context, param: click.Parameter, value: Any, where: str) -> Any:
    """``value`` from the file as the option's own type takes it (ranges, choices), in one line when wrong."""
    if param.multiple:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int | float | bool) for v in items):
            raise SpecError(f"{where}: {param.name} = {value!r} must be a value or a list of values")
        value = [str(v) for v in items]
    elif isinstance(value, list | dict):
        raise SpecError(f"{where}: {param.name} = {value!r} must be a single value")
    try:
        return param.type_cast_value(ctx, value)
    except click.BadParameter as err:
        raise SpecError(f"{where}: {param.name} = {value!r}: {err.message}") from None


def merge(ctx: click.Context, path: str | Path, values: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """``values`` (the command's parameters) with those of the file's ``[training]`` section that
    the command line left at their defaults; and the names the file set."""
    section = read_section(path)
    params = {p.name: p for p in ctx.command.params if isinstance(p, click.Option) and p.name in values}
    spellings = {o.lstrip("-").replace("-", "_"): p.name for p in params.values() for o in p.opts}
    where = f"{path} [{TRAINING_SECTION}]"
    merged, from_file = dict(values), set()
    for key, value in section.items():
        name = spellings.get(key.replace("-", "_"))
        if name is None:
            raise SpecError(f"{where}: unknown option '{key}'{did_you_mean(key.replace('-', '_'), spellings)} "
                            "(the options of difftk train, without their dashes: `difftk train --help`)")
        if name in NOT_SETTINGS:
            raise SpecError(f"{where}: {key} is not a setting of the experiment: {NOT_SETTINGS[name]}")
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
            continue  # the command line wins
        merged[name] = _convert(ctx, params[name], value, where)
        from_file.add(name)
    return merged, from_file
