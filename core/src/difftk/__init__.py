"""difftk: diffusion models as five swappable parts, every algorithm a plugin.

The public surface::

    import difftk
    difftk.available("schedule")                # registered names, sorted
    difftk.create("schedule", "linear", T=1000) # a component
    difftk.compose(schedule="linear", sampler="ddim")  # a Pipeline
    difftk.plugin_manager()                     # the pluggy PluginManager, plugins loaded
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from difftk.errors import DifftkError, IncompatibleError, OptionError, PluginError, SpecError, UnknownComponentError
from difftk.hookspecs import hookimpl
from difftk.pipeline import ComponentSpec, Pipeline, PipelineSpec, compose, load_pipeline
from difftk.plugins import plugin_manager
from difftk.registry import KINDS

try:
    __version__ = metadata.version("difftk-core")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"


def available(kind: str) -> list[str]:
    """The sorted names of the registered components of ``kind`` (one of :data:`KINDS`)."""
    from difftk.plugins import host

    return host().registry.names(kind)


def create(kind: str, name: str, **options: Any) -> Any:
    """Create component ``name`` of ``kind`` with ``options``.

    Raises :class:`UnknownComponentError` (with a did-you-mean) for a name no plugin
    registers and :class:`OptionError` for an unknown option or an invalid value.
    """
    from difftk.plugins import host

    return host().registry.get(kind, name).build(options)


__all__ = [
    "KINDS", "ComponentSpec", "DifftkError", "IncompatibleError", "OptionError", "Pipeline", "PipelineSpec",
    "PluginError", "SpecError", "UnknownComponentError", "__version__", "available", "compose", "create",
    "hookimpl", "load_pipeline", "plugin_manager",
]
