"""Hook specifications: what a difftk plugin may implement.

A plugin is a module (or object) registered under the entry-point group ``difftk``. It
implements hooks with the :data:`hookimpl` marker::

    import difftk

    @difftk.hookimpl
    def difftk_register_components(register):
        register.add_sampler("my-sampler", MySampler)
"""

from __future__ import annotations

import pluggy

PROJECT = "difftk"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------
# Registration: called once per plugin when the plugin manager is built.
# -------------------------------------------------------------------------


@hookspec
def difftk_register_components(register):
    """Register the components this plugin provides.

    Called once per plugin, in its own guard: if it raises, or registers something invalid,
    that plugin is reported by name and none of its components are registered; the other
    plugins are unaffected.

    :param register: a :class:`difftk.components.registry.Registrar` bound to this plugin, with
        ``add_schedule``, ``add_denoiser``, ``add_objective``, ``add_sampler``,
        ``add_guidance``, ``add_classifier``, ``add_dataset``, ``add_metric`` and the generic
        ``add(kind, name, cls)``.
        Each takes a component name and a class whose options are attrs fields.
    """


# -------------------------------------------------------------------------
# Composition: called every time a pipeline is assembled.
# -------------------------------------------------------------------------


@hookspec
def difftk_check_pipeline(pipeline):
    """Veto a combination of components that cannot work together.

    Called by :func:`difftk.compose` after every component was created. Raise
    :class:`difftk.errors.IncompatibleError` with one line naming the components and the fix;
    return nothing when the pipeline is fine. A component may also define
    ``check_pipeline(self, pipeline)`` for checks that concern itself only.

    :param pipeline: the :class:`difftk.pipeline.compose.Pipeline` being assembled.
    """
