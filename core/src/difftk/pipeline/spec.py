"""Pipelines: one component per kind, assembled from names and options, stored as TOML.

A pipeline spec is ``{kind: {name, options}}``. It round-trips through TOML and is stored in
every checkpoint, together with the plugin (and version) each component came from, so a
checkpoint knows how it was made and what it needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from difftk.errors import IncompatibleError, OptionError, SpecError
from difftk.options import option_fields
from difftk.runtime.untrusted import read_json, read_toml

#: The kinds a pipeline holds, in order; schedule and sampler are required.
PIPELINE_KINDS: tuple[str, ...] = ("schedule", "denoiser", "objective", "sampler", "guidance", "autoencoder")
REQUIRED_KINDS: tuple[str, ...] = ("schedule", "sampler")
#: the section of an experiment file that holds the settings of ``difftk train``; a spec ignores it
TRAINING_SECTION = "training"
FORMAT = 1


def _freeze(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(options.items())


@attrs.frozen
class ComponentSpec:
    """A component by name with all its options resolved (defaults included)."""

    name: str
    # kept in declaration order for display; compared regardless of order
    options: tuple[tuple[str, Any], ...] = attrs.field(
        converter=lambda o: _freeze(dict(o)), eq=lambda o: tuple(sorted(o, key=lambda kv: kv[0]))
    )
    plugin: str | None = attrs.field(default=None, eq=False)
    version: str | None = attrs.field(default=None, eq=False)

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.plugin:
            out["plugin"] = self.plugin
        if self.version:
            out["version"] = self.version
        out["options"] = self.options_dict
        return out


def component_options(component: Any) -> dict[str, Any]:
    """The resolved options of a component instance (the fields of its options class)."""
    config = component if attrs.has(type(component)) else getattr(component, "config", None)
    if config is None or not attrs.has(type(config)):
        raise OptionError(f"{type(component).__name__} has no attrs options (nor a `config` attribute)")
    return {name: getattr(config, name) for name in option_fields(type(config))}


@attrs.frozen
class PipelineSpec:
    """The recipe of a pipeline: kind -> :class:`ComponentSpec`."""

    components: tuple[tuple[str, ComponentSpec], ...] = attrs.field(
        converter=lambda c: tuple(sorted(dict(c).items(), key=lambda kv: PIPELINE_KINDS.index(kv[0])))
    )

    def __getitem__(self, kind: str) -> ComponentSpec:
        return dict(self.components)[kind]

    def get(self, kind: str) -> ComponentSpec | None:
        return dict(self.components).get(kind)

    def __contains__(self, kind: str) -> bool:
        return kind in dict(self.components)

    @property
    def plugins(self) -> dict[str, str | None]:
        return {c.plugin: c.version for _, c in self.components if c.plugin}

    def to_dict(self) -> dict[str, Any]:
        return {"difftk": {"format": FORMAT}, **{kind: c.to_dict() for kind, c in self.components}}

    def to_toml(self) -> str:
        lines = ["# difftk pipeline: `difftk compose` wrote it, `difftk train` reads it", "", "[difftk]", f"format = {FORMAT}"]
        for kind, comp in self.components:
            lines += ["", f"[{kind}]", f"name = {_toml_value(comp.name)}"]
            if comp.plugin:
                lines.append(f"plugin = {_toml_value(comp.plugin)}")
            if comp.version:
                lines.append(f"version = {_toml_value(comp.version)}")
            if comp.options:
                lines += ["", f"[{kind}.options]"]
                lines += [f"{key} = {_toml_value(value)}" for key, value in comp.options]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def sampling_part(self, trained: PipelineSpec, *, source: str = "pipeline") -> PipelineSpec:
        """``trained`` (a model's pipeline) with the sampler and guidance of this spec. This spec's
        schedule, if it has one, must be ``trained``'s: a model samples with the schedule it learned."""
        mine, theirs = self.get("schedule"), trained.get("schedule")
        if mine is not None and theirs is not None and (mine.name, mine.options_dict) != (theirs.name, theirs.options_dict):
            said = ", ".join(f"{k}={v!r}" for k, v in theirs.options)
            raise IncompatibleError(f"{source} has schedule '{mine.name}' but the model was trained with '{theirs.name}' "
                                    f"({said}): compose it with schedule={theirs.name}, since a model samples with "
                                    "the schedule it learned")
        merged = dict(trained.components)
        merged.update({kind: self[kind] for kind in ("sampler", "guidance") if kind in self})
        return PipelineSpec(tuple(merged.items()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "pipeline") -> PipelineSpec:
        """The spec a parsed pipeline file (or a checkpoint's ``pipeline`` metadata) describes; its
        structure is checked, since the file is untrusted (each problem one :class:`SpecError` line)."""
        if not isinstance(data, Mapping):
            raise SpecError(f"{source}: a pipeline is a table of sections ([schedule], [sampler], …), "
                            f"not {type(data).__name__}")
        head = data.get("difftk", {})
        if not isinstance(head, Mapping):
            raise SpecError(f"{source}: difftk = {_shown(head)} must be a section: write [difftk] with format = {FORMAT}")
        fmt = head.get("format", FORMAT)
        if not isinstance(fmt, int) or isinstance(fmt, bool):
            raise SpecError(f"{source}: [difftk] format = {_shown(fmt)} is not a whole number: write format = {FORMAT}")
        if fmt != FORMAT:
            raise SpecError(f"{source}: pipeline format {fmt} is not supported (this difftk reads format {FORMAT})")
        unknown = [k for k in data if k not in PIPELINE_KINDS and k not in ("difftk", TRAINING_SECTION)]
        if unknown:
            raise SpecError(f"{source}: unknown section [{str(unknown[0])[:60]}] (sections: "
                            f"{', '.join(PIPELINE_KINDS)}, and {TRAINING_SECTION} for difftk train)")
        comps = {}
        for kind in PIPELINE_KINDS:
            if kind not in data:
                continue
            table = data[kind]
            if not isinstance(table, Mapping) or not isinstance(table.get("name"), str):
                raise SpecError(f"{source}: section [{kind}] needs a name, e.g. name = \"...\"")
            for key in ("plugin", "version"):
                if table.get(key) is not None and not isinstance(table[key], str):
                    raise SpecError(f"{source}: [{kind}] {key} = {_shown(table[key])} must be a string")
            options = table.get("options", {})
            if not isinstance(options, Mapping):
                raise SpecError(f"{source}: [{kind}.options] must be a table")
            for key, value in options.items():
                if not _storable(value):
                    raise SpecError(f"{source}: [{kind}.options] {key} = {_shown(value)} is not an option value (a "
                                    "number, string, true/false or a list of them)")
            comps[kind] = ComponentSpec(table["name"], options, table.get("plugin"), table.get("version"))
        return cls(comps)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "pipeline") -> PipelineSpec:
        data = read_toml(text, what=source, error=SpecError)
        for kind in PIPELINE_KINDS:  # TOML has no null: "none" stands for an option that is off
            options = data.get(kind, {}).get("options") if isinstance(data.get(kind), Mapping) else None
            if isinstance(options, dict):
                data[kind]["options"] = {k: (None if v == "none" else v) for k, v in options.items()}
        return cls.from_dict(data, source=source)

    @classmethod
    def from_json(cls, text: str, *, source: str = "pipeline") -> PipelineSpec:
        return cls.from_dict(read_json(text, what=source, error=SpecError), source=source)

    @classmethod
    def load(cls, path: str | Path) -> PipelineSpec:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"{path}: no such pipeline file (make one with `difftk compose ... -o {path}`)") from None
        except (OSError, UnicodeDecodeError) as err:
            raise SpecError(f"{path}: cannot be read as a pipeline ({err})") from None
        return cls.from_toml(text, source=str(path))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _storable(value: Any) -> bool:
    """A value an option may hold in a stored spec: a scalar, or a list of scalars (one level)."""
    def scalar(v: Any) -> bool:
        return v is None or isinstance(v, bool | int | float | str)
    return scalar(value) or (isinstance(value, list | tuple) and all(scalar(v) for v in value))


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise SpecError(f"option value {value!r} of type {type(value).__name__} cannot be stored in a pipeline file")




















__all__ = ["FORMAT", "PIPELINE_KINDS", "REQUIRED_KINDS", "TRAINING_SECTION", "ComponentSpec", "PipelineSpec",
           "component_options"]
