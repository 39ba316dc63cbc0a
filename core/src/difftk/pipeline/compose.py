"""Live pipelines: components built from names and options (one path for all of them), checked
against each other, and built again from a stored spec.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from difftk.components import plugins
from difftk.errors import DifftkError, IncompatibleError, OptionError, UnknownComponentError
from difftk.maths.terminal import ZeroTerminalSNR
from difftk.pipeline.spec import PIPELINE_KINDS, REQUIRED_KINDS, ComponentSpec, PipelineSpec, component_options


@attrs.frozen
class Pipeline:
    """Live components, one per kind, and the spec they were made from."""

    spec: PipelineSpec
    schedule: Any
    sampler: Any
    denoiser: Any = None
    objective: Any = None
    guidance: Any = None
    #: the first stage: with one, the other parts work on its scaled latents (``difftk.components.autoencoding``)
    autoencoder: Any = None

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
        from difftk.runtime.files import atomic_write_text

        return atomic_write_text(Path(path), self.to_toml())


def create_component(kind: str, name: str | None, options: Mapping[str, Any] | None = None, *,
                     base: ComponentSpec | None = None, from_strings: bool = True) -> Any:
    """Create the ``kind`` component ``name`` (default: ``base``'s, a pipeline's own) with ``options``.

    The one path every component is built by. When ``name`` is ``base``'s, ``options`` override
    ``base``'s options; otherwise they are the whole set. With ``from_strings``, string values
    are parsed as their option's type (``eta="0.5"`` from a command line).
    """
    if name is None and base is None:
        raise OptionError(f"options are set for the {kind}, but the model's pipeline has none: give {kind}=NAME")
    if name is not None and not name.strip():
        raise OptionError(f"an empty {kind} name: give a registered one (`difftk plugins` lists them)")
    name = name or base.name
    info = plugins.registry().get(kind, name)
    merged: dict[str, Any] = dict(base.options_dict) if base is not None and base.name == name else {}
    merged.update(options or {})
    return info.instantiate(merged, from_strings=from_strings)


def spec_of(kind: str, component: Any) -> ComponentSpec:
    """The :class:`ComponentSpec` of a live component: its registered name, its resolved options,
    and the plugin (and version) that registered it (a :class:`ZeroTerminalSNR` schedule is its base's,
    whose ``zero_terminal_snr`` option is on)."""
    if isinstance(component, ZeroTerminalSNR):
        component = component.base
    candidates = [info for info in plugins.registry() if info.kind == kind and isinstance(component, info.cls)]
    exact = [info for info in candidates if type(component) is info.cls]
    for info in exact or candidates:
        record = plugins.records().get(info.plugin)
        return ComponentSpec(info.name, component_options(component), info.plugin, record.version if record else None)
    raise UnknownComponentError(
        f"{type(component).__name__} is not a registered {kind}: register it from a plugin's difftk_register_components"
    )


def _resolve(kind: str, value: Any, extra: Mapping[str, Any], from_strings: bool) -> tuple[Any, ComponentSpec]:
    """One component from a name, a mapping {name, options}, a ComponentSpec or an instance."""
    if isinstance(value, ComponentSpec):
        value = {"name": value.name, "options": value.options_dict}
    if isinstance(value, str):
        component = create_component(kind, value, extra, from_strings=from_strings)
    elif isinstance(value, Mapping):
        if "name" not in value:
            raise OptionError(f"{kind} given as a mapping needs a 'name' key")
        options = {**dict(value.get("options", {})), **extra}
        component = create_component(kind, value["name"], options, from_strings=from_strings)
    else:
        if extra:
            raise OptionError(f"{kind} was given as an instance; options cannot be applied to it")
        spec = spec_of(kind, value)
        finish = plugins.registry().get(kind, spec.name).finish  # as if built by name (idempotent)
        return (value if finish is None else finish(value)), spec
    return component, spec_of(kind, component)


def compose(
    schedule: Any = None,
    sampler: Any = None,
    *,
    denoiser: Any = None,
    objective: Any = None,
    guidance: Any = None,
    autoencoder: Any = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    from_strings: bool = False,
) -> Pipeline:
    """Assemble a :class:`Pipeline` and check that its components work together.

    ``autoencoder`` adds a first stage: training encodes, sampling decodes, and every other part works
    unchanged on its latents (Rombach et al. 2022). Each component is a registered name, a mapping ``{"name": ..., "options": {...}}``, a
    :class:`ComponentSpec`, or an instance. ``options`` maps a kind to extra options for it
    (what ``--set KIND.OPTION=VALUE`` gives on the command line); with ``from_strings`` the
    values are parsed from text. Every error is a one-line :class:`~difftk.errors.DifftkError`.
    """
    given = {"schedule": schedule, "denoiser": denoiser, "objective": objective, "sampler": sampler, "guidance": guidance,
             "autoencoder": autoencoder}
    options = dict(options or {})
    for kind in options:
        if kind not in PIPELINE_KINDS:
            raise OptionError(f"options name kind '{kind}', which a pipeline does not have (kinds: {', '.join(PIPELINE_KINDS)})")
        if given.get(kind) is None:
            raise OptionError(f"options are set for the {kind}, but the pipeline has no {kind}: give {kind}=NAME")
    for kind in REQUIRED_KINDS:
        if given[kind] is None:
            raise OptionError(f"a pipeline needs a {kind}: give {kind}=NAME (`difftk plugins` lists them)")
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
    registry = plugins.registry()
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


@attrs.frozen
class Absent:
    """A part of a stored pipeline whose plugin is not installed. A model loads without it (any other
    sampler samples it); using the part itself raises the one-line error that names the plugin."""

    kind: str
    name: str
    message: str

    #: nothing to check against the other parts
    check_pipeline = None

    def error(self) -> UnknownComponentError:
        return UnknownComponentError(f"{self.message}: install it, or choose another {self.kind} "
                                     "(`difftk plugins` lists the installed ones)")

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise self.error()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error()


def compose_spec(spec: PipelineSpec, *, source: str = "pipeline", absent_ok: tuple[str, ...] = ()) -> Pipeline:
    """:func:`compose` of a stored spec (a pipeline file's, a checkpoint's): the live pipeline it describes; a missing plugin is named. A part of a kind in
    ``absent_ok`` whose plugin is missing becomes an :class:`Absent`, which names it when used."""
    absent: dict[str, Absent] = {}
    for kind, comp in spec.components:
        try:
            plugins.registry().get(kind, comp.name)
        except UnknownComponentError as err:
            if comp.plugin and comp.plugin not in plugins.records():
                message = (f"{source} needs {kind} '{comp.name}' from plugin '{comp.plugin}'"
                           f"{' ' + comp.version if comp.version else ''}, which is not installed")
            else:
                message = f"{source}: {err}"
            if kind not in absent_ok:
                raise UnknownComponentError(message) from None
            absent[kind] = Absent(kind, comp.name, message)
    present = {kind: {"name": c.name, "options": c.options_dict} for kind, c in spec.components if kind not in absent}
    if not absent:
        return compose(**present)
    live = {kind: _resolve(kind, value, {}, False)[0] for kind, value in present.items()}
    pipeline = Pipeline(spec=spec, **live, **absent)
    check_pipeline(pipeline)
    return pipeline


def load_pipeline(path: str | Path) -> Pipeline:
    """Read a pipeline TOML file (as written by ``difftk compose -o``) and build it."""
    return compose_spec(PipelineSpec.load(path), source=str(path))


#: earlier names, kept for code written against them: components are created, pipelines composed
build_component = create_component
build = compose_spec
