"""The registry of components, and the typed object plugins register through.

Plugins never touch a dict: their ``difftk_register_components(register)`` hook receives a
:class:`Registrar` bound to the plugin, with one ``add_<kind>`` method per component kind.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from difftk.components.autoencoding import frozen
from difftk.components.protocols import protocol_problem
from difftk.components.sizing import check_network_size
from difftk.errors import DifftkError, OptionError, UnknownComponentError, did_you_mean
from difftk.maths.terminal import with_zero_terminal_snr
from difftk.options import option_fields, parse_value

#: The component kinds, in the order a pipeline lists them.
KINDS: tuple[str, ...] = ("schedule", "denoiser", "objective", "sampler", "guidance", "autoencoder", "classifier",
                         "dataset", "metric", "logger")


class RegistrationError(DifftkError):
    """A plugin registered something the registry cannot accept."""


def options_class(cls: type) -> type:
    """The attrs class whose fields are ``cls``'s options: ``cls`` itself, or ``cls.Config``.

    Plain components (schedules, samplers, ...) are frozen attrs classes. Components that must
    be something else — a denoiser is a ``torch.nn.Module`` — carry a frozen attrs ``Config``
    and are built as ``cls(cls.Config(**options))``.
    """
    config = getattr(cls, "Config", None)
    if config is not None and attrs.has(config):
        return config
    if attrs.has(cls):
        return cls
    raise RegistrationError(
        f"{cls.__qualname__} is neither an attrs class nor has an attrs 'Config': "
        "decorate it with @attrs.frozen or give it a Config"
    )


@attrs.frozen
class ShippedCheckpoint:
    """A trained checkpoint a plugin ships inside its package: ``difftk sample NAME`` finds it."""

    name: str
    path: Path
    plugin: str
    summary: str = ""


@attrs.frozen
class ShippedWeights:
    """A weights file a plugin ships for one component, e.g. ``mnist-kl`` for the ``kl`` autoencoder:
    that component's ``weights`` option takes the name (:mod:`difftk.components.weights`)."""

    kind: str
    component: str
    name: str
    path: Path
    plugin: str
    summary: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """Its key in :attr:`Registry.conflicts`."""
        return (f"{self.kind} '{self.component}' weights", self.name)


@attrs.frozen
class ComponentInfo:
    """One registered component: where it comes from and how to build it."""

    kind: str
    name: str
    cls: type
    plugin: str
    #: what the built instance becomes (a schedule: :func:`~difftk.maths.terminal.with_zero_terminal_snr`)
    finish: Any = None

    @property
    def options_cls(self) -> type:
        return options_class(self.cls)

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}'"

    def option_fields(self) -> dict[str, attrs.Attribute]:
        return option_fields(self.options_cls)

    def check_options(self, options: dict[str, Any], *, from_strings: bool = False) -> dict[str, Any]:
        """Return ``options`` with unknown names rejected and strings parsed (one-line errors)."""
        fields = self.option_fields()
        out = {}
        for key, value in options.items():
            if key not in fields:
                known = ", ".join(fields) or "none"
                raise OptionError(
                    f"{self.label} has no option '{key}'{did_you_mean(key, fields)} (options: {known})"
                )
            if from_strings and isinstance(value, str):
                value = parse_value(self.label, fields[key], value)
            out[key] = value
        return out

    def instantiate(self, options: dict[str, Any] | None = None, *, from_strings: bool = False) -> Any:
        """An instance of the class with ``options``, checked (every invalid option is one :class:`OptionError`
        line), then finished (:attr:`finish`). Callers go through :func:`~difftk.pipeline.compose.create_component`,
        which adds a pipeline's own options; this is the step below it."""
        opts = self.check_options(dict(options or {}), from_strings=from_strings)
        missing = [n for n, a in self.option_fields().items() if a.default is attrs.NOTHING and n not in opts]
        if missing:
            raise OptionError(f"{self.label} needs option(s) {', '.join(missing)}: set it with {self.kind}.{missing[0]}=VALUE")
        config = self.options_cls(**opts)  # validators raise one-line OptionErrors
        if self.options_cls is self.cls:
            component = config
        else:
            check_network_size(self.label, self.cls, config)  # before the real build allocates
            component = self.cls(config)
        return component if self.finish is None else self.finish(component)

    #: the earlier name of :meth:`instantiate`
    build = instantiate


class Registry:
    """All components registered by the loaded plugins, by kind and name."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], ComponentInfo] = {}
        #: (kind, name) -> the plugins that all claimed it; such names are withdrawn.
        self.conflicts: dict[tuple[str, str], list[str]] = {}
        #: name -> a checkpoint shipped by a plugin (``Registrar.add_checkpoint``)
        self.checkpoints: dict[str, ShippedCheckpoint] = {}
        #: (kind, component, name) -> weights shipped by a plugin (``Registrar.add_weights``)
        self.weights: dict[tuple[str, str, str], ShippedWeights] = {}

    def __iter__(self) -> Iterator[ComponentInfo]:
        return iter(sorted(self._items.values(), key=lambda i: (KINDS.index(i.kind), i.name)))

    def names(self, kind: str) -> list[str]:
        _check_kind(kind)
        return sorted(name for (k, name) in self._items if k == kind)

    def by_plugin(self, plugin: str) -> list[ComponentInfo]:
        return [info for info in self if info.plugin == plugin]

    def get(self, kind: str, name: str) -> ComponentInfo:
        _check_kind(kind)
        info = self._items.get((kind, name))
        if info is not None:
            return info
        if (kind, name) in self.conflicts:
            a, b = self.conflicts[(kind, name)][:2]
            raise UnknownComponentError(
                f"{kind} '{name}' is registered by two plugins, '{a}' and '{b}': "
                f"uninstall one or block it with DIFFTK_BLOCK_PLUGINS={b}"
            )
        names = self.names(kind)
        hint = did_you_mean(name, names)
        listing = f"installed: {', '.join(names)}" if names else "none installed"
        limits = [f"{v}={os.environ[v]!r}" for v in ("DIFFTK_LOAD_PLUGINS", "DIFFTK_BLOCK_PLUGINS") if v in os.environ]
        if limits:
            listing += f", with {' and '.join(limits)} limiting which plugins load"
        raise UnknownComponentError(
            f"unknown {kind} '{name}'{hint} ({listing}; `difftk plugins` lists what each plugin provides)"
        )

    def checkpoint(self, name: str) -> ShippedCheckpoint:
        """The shipped checkpoint ``name``; an :class:`UnknownComponentError` with a did-you-mean otherwise."""
        found = self.checkpoints.get(name)
        if found is not None:
            return found
        names = sorted(self.checkpoints)
        listing = f"shipped: {', '.join(names)}" if names else "no plugin ships a checkpoint"
        raise UnknownComponentError(f"no checkpoint file or shipped model '{name}'{did_you_mean(name, names)} "
                                    f"({listing}; give the path of a checkpoint.safetensors or a run directory)")

    def shipped_weights(self, kind: str, component: str, name: str) -> ShippedWeights:
        """The weights shipped as ``name`` for the ``kind`` component ``component``; an
        :class:`UnknownComponentError` with a did-you-mean otherwise."""
        found = self.weights.get((kind, component, name))
        if found is not None:
            return found
        label = f"{kind} '{component}'"
        if (key := ShippedWeights(kind, component, name, Path(), "").key) in self.conflicts:
            a, b = self.conflicts[key][:2]
            raise UnknownComponentError(f"{label} weights '{name}' are shipped by two plugins, '{a}' and '{b}': "
                                        f"uninstall one or block it with DIFFTK_BLOCK_PLUGINS={b}")
        names = sorted(n for (k, c, n) in self.weights if (k, c) == (kind, component))
        listing = f"shipped: {', '.join(names)}" if names else "no plugin ships weights for it"
        raise UnknownComponentError(f"no weights file or shipped {label} weights '{name}'{did_you_mean(name, names)} "
                                    f"({listing}; give the path of a weights file, e.g. ./{name}.safetensors)")

    def _commit(self, staged: list[ComponentInfo | ShippedCheckpoint | ShippedWeights]) -> None:
        for info in staged:
            if isinstance(info, ShippedWeights):
                key = (info.kind, info.component, info.name)
                if key in self.weights:  # two plugins ship the same weights name: neither wins
                    first = self.weights.pop(key)
                    self.conflicts[info.key] = [first.plugin, info.plugin]
                elif info.key in self.conflicts:
                    self.conflicts[info.key].append(info.plugin)
                else:
                    self.weights[key] = info
                continue
            if isinstance(info, ShippedCheckpoint):
                if info.name in self.checkpoints:  # two plugins ship the same name: neither wins
                    first = self.checkpoints.pop(info.name)
                    self.conflicts[("checkpoint", info.name)] = [first.plugin, info.plugin]
                elif ("checkpoint", info.name) in self.conflicts:
                    self.conflicts[("checkpoint", info.name)].append(info.plugin)
                else:
                    self.checkpoints[info.name] = info
                continue
            key = (info.kind, info.name)
            if key in self.conflicts:
                self.conflicts[key].append(info.plugin)
            elif key in self._items:
                first = self._items.pop(key)
                self.conflicts[key] = [first.plugin, info.plugin]
            else:
                self._items[key] = info


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UnknownComponentError(f"unknown component kind '{kind}'{did_you_mean(kind, KINDS)} (kinds: {', '.join(KINDS)})")


class Registrar:
    """What a plugin's ``difftk_register_components`` hook receives.

    Example::

        @difftk.hookimpl
        def difftk_register_components(register):
            register.add_schedule("linear", LinearSchedule)
            register.add_sampler("ancestral", AncestralSampler)
    """

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.staged: list[ComponentInfo | ShippedCheckpoint | ShippedWeights] = []

    def add(self, kind: str, name: str, cls: type) -> None:
        """Register ``cls`` as component ``name`` of ``kind`` (one of :data:`KINDS`)."""
        self._add(kind, name, cls)

    def _add(self, kind: str, name: str, cls: type, finish: Any = None) -> None:
        """:meth:`add`; ``finish``, if given, turns each built instance into the component."""
        _check_kind(kind)
        if not isinstance(name, str) or not name or name != name.strip() or " " in name:
            raise RegistrationError(f"{kind} name {name!r} must be a non-empty string without spaces")
        if not inspect.isclass(cls):
            raise RegistrationError(f"{kind} '{name}' must be registered as a class, got {cls!r}")
        ocls = options_class(cls)  # raises if it has no options class
        problem = protocol_problem(kind, cls)
        if problem is not None:
            raise RegistrationError(f"{kind} '{name}' ({cls.__qualname__}) cannot be registered: {problem}")
        if any(isinstance(i, ComponentInfo) and i.kind == kind and i.name == name for i in self.staged):
            raise RegistrationError(f"{kind} '{name}' is registered twice by the same plugin")
        ocls.component_label = f"{kind} '{name}'"
        self.staged.append(ComponentInfo(kind=kind, name=name, cls=cls, plugin=self.plugin, finish=finish))

    def add_schedule(self, name: str, cls: type) -> None:
        """Register a NoiseSchedule; a continuous one with ``zero_terminal_snr`` on is built wrapped in
        :class:`~difftk.maths.terminal.ZeroTerminalSNR`."""
        self._add("schedule", name, cls, finish=with_zero_terminal_snr)

    def add_denoiser(self, name: str, cls: type) -> None:
        """Register a Denoiser (a ``torch.nn.Module`` with an attrs ``Config``)."""
        self.add("denoiser", name, cls)

    def add_objective(self, name: str, cls: type) -> None:
        """Register an Objective (a training loss)."""
        self.add("objective", name, cls)

    def add_sampler(self, name: str, cls: type) -> None:
        """Register a Sampler."""
        self.add("sampler", name, cls)

    def add_guidance(self, name: str, cls: type) -> None:
        """Register a Guidance (wraps a denoiser, returns a denoiser)."""
        self.add("guidance", name, cls)

    def add_autoencoder(self, name: str, cls: type) -> None:
        """Register an Autoencoder: a first stage (a ``torch.nn.Module`` with an attrs ``Config``) that
        encodes data to latents and decodes them back; the rest of a pipeline then works on latents. It is
        built frozen (:func:`~difftk.components.autoencoding.frozen`: eval mode, no gradients)."""
        self._add("autoencoder", name, cls, finish=frozen)

    def add_classifier(self, name: str, cls: type) -> None:
        """Register a Classifier (a noise-aware ``torch.nn.Module`` with an attrs ``Config``)."""
        self.add("classifier", name, cls)

    def add_dataset(self, name: str, cls: type) -> None:
        """Register a Dataset."""
        self.add("dataset", name, cls)

    def add_metric(self, name: str, cls: type) -> None:
        """Register a Metric."""
        self.add("metric", name, cls)

    def add_logger(self, name: str, cls: type) -> None:
        """Register a Logger: a tracker that ``difftk train --log-to NAME`` sends the run's records to."""
        self.add("logger", name, cls)

    def add_checkpoint(self, name: str, path: str | Path, summary: str = "") -> None:
        """Register a trained checkpoint shipped inside the plugin's package (a file written by
        ``difftk train`` or ``difftk export``), so ``difftk sample NAME`` finds it by name."""
        if not isinstance(name, str) or not name or name != name.strip() or " " in name or "/" in name:
            raise RegistrationError(f"checkpoint name {name!r} must be a non-empty string without spaces or '/'")
        path = Path(path)
        if not path.is_file():
            raise RegistrationError(f"checkpoint '{name}': {path} is not a file (is it included in the package data?)")
        if any(isinstance(i, ShippedCheckpoint) and i.name == name for i in self.staged):
            raise RegistrationError(f"checkpoint '{name}' is registered twice by the same plugin")
        self.staged.append(ShippedCheckpoint(name=name, path=path, plugin=self.plugin, summary=summary))

    def add_weights(self, kind: str, component: str, name: str, path: str | Path, summary: str = "") -> None:
        """Register a weights file shipped inside the plugin's package for the ``kind`` component
        ``component`` (which another plugin may provide), so its ``weights`` option takes ``name``, e.g.
        ``register.add_weights("autoencoder", "kl", "mnist-kl", DATA / "mnist-kl.safetensors")``. A spec
        then records the name, not a path of this machine (:mod:`difftk.components.weights`)."""
        _check_kind(kind)
        for what, value in (("component", component), ("weights", name)):
            if not isinstance(value, str) or not value or value != value.strip() or " " in value or "/" in value \
                    or "\\" in value or value.endswith(".safetensors"):
                raise RegistrationError(f"{kind} {what} name {value!r} must be a non-empty string without spaces, "
                                        "'/' or a .safetensors ending (it would read as a path)")
        path = Path(path)
        if not path.is_file():
            raise RegistrationError(f"{kind} '{component}' weights '{name}': {path} is not a file (is it included in "
                                    "the package data?)")
        if any(isinstance(i, ShippedWeights) and (i.kind, i.component, i.name) == (kind, component, name)
               for i in self.staged):
            raise RegistrationError(f"{kind} '{component}' weights '{name}' are registered twice by the same plugin")
        self.staged.append(ShippedWeights(kind=kind, component=component, name=name, path=path, plugin=self.plugin,
                                          summary=summary))
