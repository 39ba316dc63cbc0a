"""difftk: diffusion models as five swappable parts, every algorithm a plugin.

The public surface::

    import difftk
    difftk.available("schedule")                # registered names, sorted
    difftk.create("schedule", "linear", T=1000) # a component
    difftk.compose(schedule="linear", sampler="ddim")  # a Pipeline
    difftk.plugin_manager()                     # the pluggy PluginManager, plugins loaded
    model = difftk.load("mnist-cfg")            # a trained Model: .pipeline, .schedule, .denoiser
    x0 = model.sample(16, sampler="ddim", steps=25, guidance="cfg", scale=3)

The core, floor by floor (a module imports only from its own floor and those below):

0. :mod:`difftk.errors`, :mod:`difftk.options` — one-line errors; component options.
1. :mod:`difftk.maths` — the shared maths: schedules, conversions, posteriors, ODE solvers.
2. :mod:`difftk.runtime` — devices, precision, processes, atomic files.
3. :mod:`difftk.components` — protocols, hook specs, the registry, plugin loading.
4. :mod:`difftk.pipeline` — pipeline specs (TOML) and composing live pipelines.
5. :mod:`difftk.data` — arrays of examples, images, a pipeline sized to its data.
6. :mod:`difftk.checkpoint` — the checkpoint file format.
7. :mod:`difftk.sampling` — what samplers share, and the batch loop.
8. :mod:`difftk.model` — the trained model, the one way anything samples.
9. :mod:`difftk.training`, :mod:`difftk.evaluation` — the training engine; metrics and grids.
10. this package — the public surface.
11. :mod:`difftk.testing` — the conformance kit for plugin authors.
"""

from __future__ import annotations

from typing import Any

from difftk.components.hookspecs import hookimpl
from difftk.components.plugins import plugin_manager, registry
from difftk.components.registry import KINDS
from difftk.errors import DifftkError, IncompatibleError, OptionError, PluginError, SpecError, UnknownComponentError
from difftk.model import Model, load
from difftk.pipeline.compose import Pipeline, compose, create_component, load_pipeline
from difftk.pipeline.spec import ComponentSpec, PipelineSpec
from difftk.version import __version__


def available(kind: str) -> list[str]:
    """The sorted names of the registered components of ``kind`` (one of :data:`KINDS`)."""
    return registry().names(kind)


def create(kind: str, name: str, **options: Any) -> Any:
    """Create component ``name`` of ``kind`` with ``options``.

    Raises :class:`UnknownComponentError` (with a did-you-mean) for a name no plugin
    registers and :class:`OptionError` for an unknown option or an invalid value.
    """
    return create_component(kind, name, options, from_strings=False)


__all__ = [
    "KINDS", "ComponentSpec", "DifftkError", "IncompatibleError", "Model", "OptionError", "Pipeline", "PipelineSpec",
    "PluginError", "SpecError", "UnknownComponentError", "__version__", "available", "compose", "create",
    "hookimpl", "load", "load_pipeline", "plugin_manager",
]
