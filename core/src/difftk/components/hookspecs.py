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
        ``add_guidance``, ``add_autoencoder``, ``add_classifier``, ``add_dataset``, ``add_metric``,
        ``add_logger`` and the generic ``add(kind, name, cls)``.
        Each takes a component name and a class whose options are attrs fields. Files the plugin
        ships go in with ``add_checkpoint`` (trained models) and ``add_weights`` (weights of a
        component, e.g. a first stage, taken by its ``weights`` option by name).
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


# -------------------------------------------------------------------------
# Models and files: when a trained model is loaded or exported.
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def difftk_load_model(source, device):
    """Load a trained model that is not a difftk checkpoint (another library's model folder).

    Called by :func:`difftk.load` only when ``source`` is neither a checkpoint file, a run
    directory nor a shipped model's name; the first plugin to return a model wins. Return
    ``None`` for a source this plugin does not recognise, so that difftk's own error (or
    another plugin) answers; raise :class:`difftk.errors.CheckpointError` with one line for a
    source it recognises but cannot load (a missing weight file, an unsupported setting).

    :param source: what the user gave, a ``str`` or ``pathlib.Path``.
    :param device: where the denoiser's weights go (a ``torch.device`` or a string).
    :return: a :class:`difftk.model.Model` whose pipeline is made of registered components, or ``None``.
    """


@hookspec(firstresult=True)
def difftk_export(model, format, output):
    """Write ``model`` in another library's format (``difftk export CHECKPOINT --format NAME -o OUT``).

    Return ``None`` when this plugin does not write ``format``; the first plugin that does
    writes ``output`` and returns what it wrote, in words, for the command to print. A model
    that cannot be written in the format is one :class:`difftk.errors.DifftkError` line.

    :param model: the :class:`difftk.model.Model` to export (as :func:`difftk.load` returns it).
    :param format: the format's name, e.g. ``"diffusers"``; ``"difftk"`` is the core's own.
    :param output: the ``pathlib.Path`` to write (a file or a directory, as the format wants).
    :return: a one-line (or few-line) report of what was written, or ``None``.
    """
