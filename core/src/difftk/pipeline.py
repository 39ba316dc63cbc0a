"""Pipelines: one component per kind, assembled from names and options, stored as TOML.

A pipeline spec is ``{kind: {name, options}}``. It round-trips through TOML and is stored in
every checkpoint, together with the plugin (and version) each component came from, so a
checkpoint knows how it was made and what it needs.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from difftk import plugins
from difftk.errors import DifftkError, IncompatibleError, OptionError, SpecError, UnknownComponentError
from difftk.options import option_fields
from difftk.registry import ComponentInfo, options_class

#: The kinds a pipeline holds, in order; schedule and sampler are required.
PIPELINE_KINDS: tuple[str, ...] = ("schedule", "denoiser", "objective", "sampler", "guidance")
REQUIRED_KINDS: tuple[str, ...] = ("schedule", "sampler")
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "pipeline") -> PipelineSpec:
        fmt = data.get("difftk", {}).get("format", FORMAT)
        if fmt != FORMAT:
            raise SpecError(f"{source}: pipeline format {fmt} is not supported (this difftk reads format {FORMAT})")
        unknown = [k for k in data if k not in PIPELINE_KINDS and k != "difftk"]
        if unknown:
            raise SpecError(f"{source}: unknown section [{unknown[0]}] (sections: {', '.join(PIPELINE_KINDS)})")
        comps = {}
        for kind in PIPELINE_KINDS:
            if kind not in data:
                continue
            table = data[kind]
            if not isinstance(table, Mapping) or not isinstance(table.get("name"), str):
                raise SpecError(f"{source}: section [{kind}] needs a name, e.g. name = \"...\"")
            options = table.get("options", {})
            if not isinstance(options, Mapping):
                raise SpecError(f"{source}: [{kind}.options] must be a table")
            comps[kind] = ComponentSpec(table["name"], options, table.get("plugin"), table.get("version"))
        return cls(comps)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "pipeline") -> PipelineSpec:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise SpecError(f"{source}: not valid TOML ({err})") from None
        for kind in PIPELINE_KINDS:  # TOML has no null: "none" stands for an option that is off
            options = data.get(kind, {}).get("options") if isinstance(data.get(kind), Mapping) else None
            if isinstance(options, dict):
                data[kind]["options"] = {k: (None if v == "none" else v) for k, v in options.items()}
        return cls.from_dict(data, source=source)

    @classmethod
    def from_json(cls, text: str, *, source: str = "pipeline") -> PipelineSpec:
        try:
            return cls.from_dict(json.loads(text), source=source)
        except json.JSONDecodeError as err:
            raise SpecError(f"{source}: not valid JSON ({err})") from None

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


@attrs.frozen
class Pipeline:
    """Live components, one per kind, and the spec they were made from."""

    spec: PipelineSpec
    schedule: Any
    sampler: Any
    denoiser: Any = None
    objective: Any = None
    guidance: Any = None

    def __getitem__(self, kind: str) -> Any:
        if kind not in PIPELINE_KINDS:
            raise KeyError(kind)
        return getattr(self, kind)

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in PIPELINE_KINDS if getattr(self, k) is not None]

    def to_toml(self) -> str:
        return self.spec.to_toml()

    def save(self, path: str | Path) -> Path:
        """Write the spec as TOML, atomically."""
        from difftk.fileio import atomic_write_text

        return atomic_write_text(Path(path), self.to_toml())


def _info_for_instance(component: Any, kind: str) -> ComponentInfo:
    registry = plugins.host().registry
    for info in registry:
        if info.kind == kind and isinstance(component, info.cls):
            return info
    raise UnknownComponentError(
        f"{type(component).__name__} is not a registered {kind}: register it from a plugin's difftk_register_components"
    )


def _resolve(kind: str, value: Any, extra: Mapping[str, Any], from_strings: bool) -> tuple[Any, ComponentSpec]:
    """Create one component from a name, a mapping {name, options}, a ComponentSpec or an instance."""
    registry = plugins.host().registry
    if isinstance(value, ComponentSpec):
        value = {"name": value.name, "options": value.options_dict}
    if isinstance(value, str):
        name, options = value, {}
    elif isinstance(value, Mapping):
        if "name" not in value:
            raise OptionError(f"{kind} given as a mapping needs a 'name' key")
        name, options = value["name"], dict(value.get("options", {}))
    else:
        info = _info_for_instance(value, kind)
        if extra:
            raise OptionError(f"{kind} was given as an instance; options cannot be applied to it")
        return value, _spec_for(info, component_options(value))
    info = registry.get(kind, name)
    component = info.build({**options, **extra}, from_strings=from_strings)
    return component, _spec_for(info, component_options(component))


def _spec_for(info: ComponentInfo, options: dict[str, Any]) -> ComponentSpec:
    record = plugins.host().records.get(info.plugin)
    return ComponentSpec(info.name, options, info.plugin, record.version if record else None)


def compose(
    schedule: Any = None,
    sampler: Any = None,
    *,
    denoiser: Any = None,
    objective: Any = None,
    guidance: Any = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    from_strings: bool = False,
) -> Pipeline:
    """Assemble a :class:`Pipeline` and check that its components work together.

    Each component is a registered name, a mapping ``{"name": ..., "options": {...}}``, a
    :class:`ComponentSpec`, or an instance. ``options`` maps a kind to extra options for it
    (what ``--set KIND.OPTION=VALUE`` gives on the command line); with ``from_strings`` the
    values are parsed from text. Every error is a one-line :class:`~difftk.errors.DifftkError`.
    """
    given = {"schedule": schedule, "denoiser": denoiser, "objective": objective, "sampler": sampler, "guidance": guidance}
    options = dict(options or {})
    for kind in options:
        if kind not in PIPELINE_KINDS:
            raise OptionError(f"--set names kind '{kind}', which a pipeline does not have (kinds: {', '.join(PIPELINE_KINDS)})")
        if given.get(kind) is None:
            raise OptionError(f"options are set for the {kind}, but the pipeline has no {kind}: add --{kind} NAME")
    for kind in REQUIRED_KINDS:
        if given[kind] is None:
            raise OptionError(f"a pipeline needs a {kind}: add --{kind} NAME (see `difftk plugins`)")
    _check_names(given)
    live, specs = {}, {}
    for kind in PIPELINE_KINDS:
        if given[kind] is not None:
            live[kind], specs[kind] = _resolve(kind, given[kind], options.get(kind, {}), from_strings)
    pipeline = Pipeline(spec=PipelineSpec(specs), **live)
    check_pipeline(pipeline)
    return pipeline


def _check_names(given: Mapping[str, Any]) -> None:
    """Report every component name no plugin registers in one line, not just the first."""
    registry = plugins.host().registry
    problems = []
    for kind, value in given.items():
        name = value if isinstance(value, str) else value.get("name") if isinstance(value, Mapping) else None
        if isinstance(name, str):
            try:
                registry.get(kind, name)
            except UnknownComponentError as err:
                problems.append(str(err))
    if len(problems) == 1:
        raise UnknownComponentError(problems[0])
    if problems:
        short = [p.split(" (")[0].removeprefix("unknown ") for p in problems]
        limits = [f"{v}={os.environ[v]!r}" for v in ("DIFFTK_LOAD_PLUGINS", "DIFFTK_BLOCK_PLUGINS") if v in os.environ]
        why = f"; {' and '.join(limits)} limits which plugins load" if limits else ""
        raise UnknownComponentError(
            f"not installed: {', '.join(short)} (`difftk plugins` lists what is installed; install the plugins that "
            f"provide them{why})"
        )


def check_pipeline(pipeline: Pipeline) -> None:
    """Run every component's ``check_pipeline`` and the plugins' ``difftk_check_pipeline`` hooks."""
    for _, component in pipeline.items():
        check = getattr(component, "check_pipeline", None)
        if callable(check):
            check(pipeline)
    try:
        plugins.plugin_manager().hook.difftk_check_pipeline(pipeline=pipeline)
    except DifftkError:
        raise
    except Exception as err:
        raise IncompatibleError(f"a plugin's pipeline check failed: {type(err).__name__}: {err}") from None


def build(spec: PipelineSpec, *, source: str = "pipeline") -> Pipeline:
    """Create the live pipeline a spec describes; a missing plugin is named."""
    for kind, comp in spec.components:
        try:
            plugins.host().registry.get(kind, comp.name)
        except UnknownComponentError as err:
            if comp.plugin and comp.plugin not in plugins.host().records:
                raise UnknownComponentError(
                    f"{source} needs {kind} '{comp.name}' from plugin '{comp.plugin}'"
                    f"{' ' + comp.version if comp.version else ''}, which is not installed"
                ) from None
            raise UnknownComponentError(f"{source}: {err}") from None
    return compose(**{kind: {"name": c.name, "options": c.options_dict} for kind, c in spec.components})


def load_pipeline(path: str | Path) -> Pipeline:
    """Read a pipeline TOML file (as written by ``difftk compose -o``) and build it."""
    return build(PipelineSpec.load(path), source=str(path))


__all__ = [
    "ComponentSpec", "Pipeline", "PipelineSpec", "PIPELINE_KINDS", "build", "check_pipeline",
    "component_options", "compose", "load_pipeline", "options_class",
]
