"""Plugin loading: every plugin, ours included, arrives through the ``difftk`` entry points.

Each entry point is imported, registered with pluggy, and asked to register its components,
one plugin at a time inside its own guard. A plugin that fails is recorded by name with the
reason and skipped; the others keep working. Environment switches:

``DIFFTK_LOAD_PLUGINS``
    unset: load every installed plugin; empty: load none; ``a,b``: load only these.
``DIFFTK_BLOCK_PLUGINS``
    ``a,b``: never load these.
``DIFFTK_PLUGIN_TIMEOUT``
    seconds one plugin's import may take (default 60); one that takes longer is skipped with a
    line naming it and ``DIFFTK_BLOCK_PLUGINS``, and the others load.
``DIFFTK_STRICT_PLUGINS``
    ``1`` (or true, yes, on): a plugin that fails to load is an error instead of a warning; unset,
    empty, ``0``, false, no or off: a warning. Any other value is a warning, and not strict.
"""

from __future__ import annotations

import os
import threading
import warnings
from importlib import metadata
from typing import Any

import attrs
import pluggy

from difftk.components import hookspecs
from difftk.components.registry import Registrar, Registry
from difftk.errors import DifftkError, PluginError

ENTRY_POINT_GROUP = "difftk"


class PluginWarning(UserWarning):
    """A plugin was skipped because it failed to load or to register."""


@attrs.frozen
class PluginRecord:
    """What happened to one plugin: ``loaded``, ``skipped`` (with the error) or ``blocked``."""

    name: str
    status: str
    version: str | None = None
    distribution: str | None = None
    error: str | None = None


def _env_list(var: str) -> list[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


#: the values of a yes/no switch such as DIFFTK_STRICT_PLUGINS (case-insensitive)
YES, NO = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def env_switch(var: str) -> bool:
    """Whether the yes/no environment switch ``var`` is on; a value that is neither yes nor no is
    one warning line and counts as off."""
    raw = os.environ.get(var, "").strip().lower()
    if raw in YES:
        return True
    if raw not in NO:
        warnings.warn(f"{var}={os.environ[var]!r} is neither on (1, true, yes, on) nor off (0, false, no, off): "
                      "taken as off", PluginWarning, stacklevel=3)
    return False


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, DifftkError) else f"{type(err).__name__}: {text}"


class PluginHost:
    """The pluggy manager, the component registry and the record of every plugin."""

    def __init__(self, *, strict: bool | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.records: dict[str, PluginRecord] = {}
        self._registered: dict[str, list] = {}
        self.strict = env_switch("DIFFTK_STRICT_PLUGINS") if strict is None else strict

    # -- loading ---------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Load every entry point of the ``difftk`` group that the environment allows."""
        only = _env_list("DIFFTK_LOAD_PLUGINS")
        blocked = set(_env_list("DIFFTK_BLOCK_PLUGINS") or [])
        points = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        known = [ep.name for ep in points]
        for variable, names in (("DIFFTK_LOAD_PLUGINS", only or []), ("DIFFTK_BLOCK_PLUGINS", blocked)):
            unknown = sorted(set(names) - set(known))
            if unknown:  # a typo would otherwise block (or fail to block) plugins without a word
                message = (f"{variable} names {', '.join(repr(u) for u in unknown)}, which no installed plugin is "
                           f"(installed: {', '.join(known) or 'none'})")
                if self.strict:
                    raise PluginError(message + " (strict mode)")
                warnings.warn(message, PluginWarning, stacklevel=3)
        for ep in points:
            if ep.name in self.records:
                continue
            dist = getattr(ep, "dist", None)
            info = {"version": getattr(dist, "version", None), "distribution": getattr(dist, "name", None)}
            if (only is not None and ep.name not in only) or ep.name in blocked:
                self.records[ep.name] = PluginRecord(ep.name, "blocked", **info)
                continue
            try:
                module = _import(ep)
            except _ImportTimeout as late:
                self._fail(ep.name, f"its import did not finish in {late.seconds:g} s (block it with "
                                    f"DIFFTK_BLOCK_PLUGINS={ep.name}, or raise DIFFTK_PLUGIN_TIMEOUT)", info)
                continue
            except (Exception, SystemExit) as err:  # a broken plugin must not break the others, nor end the process
                said = f"SystemExit({err.code!r}) at import" if isinstance(err, SystemExit) else _one_line(err)
                self._fail(ep.name, f"import failed: {said}", info)
                continue
            self.register(module, name=ep.name, **info)

    def register(self, plugin: Any, name: str, version: str | None = None, distribution: str | None = None) -> bool:
        """Register one plugin object and its components; return whether it loaded.

        This is the same path for entry points and for plugins defined in code (tests).
        """
        info = {"version": version, "distribution": distribution}
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()  # a misspelt difftk_* hook is an error, not silently ignored
        except Exception as err:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            self._fail(name, f"invalid hooks: {_one_line(err)}", info)
            return False
        registrar = Registrar(name)
        for impl in self.pm.hook.difftk_register_components.get_hookimpls():
            if impl.plugin_name != name:
                continue
            try:
                impl.function(register=registrar)
            except Exception as err:
                self.pm.unregister(name=name)
                self._fail(name, f"registration failed: {_one_line(err)}", info)
                return False
        self._registered[name] = registrar.staged
        self.registry._commit(registrar.staged)
        self.records[name] = PluginRecord(name, "loaded", **info)
        return True

    def unregister(self, name: str) -> None:
        """Remove a plugin and its components (used by tests that register plugins in code)."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self.records.pop(name, None)
        self._registered.pop(name, None)
        self.registry = Registry()
        for staged in self._registered.values():
            self.registry._commit(staged)

    def _fail(self, name: str, reason: str, info: dict) -> None:
        self.records[name] = PluginRecord(name, "skipped", error=reason, **info)
        message = f'plugin "{name}" skipped: {reason}'
        if self.strict:
            raise PluginError(message + " (strict mode: unset DIFFTK_STRICT_PLUGINS to skip it instead)")
        warnings.warn(message, PluginWarning, stacklevel=3)


class _ImportTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


def _timeout() -> float:
    try:
        seconds = float(os.environ.get("DIFFTK_PLUGIN_TIMEOUT", "60"))
    except ValueError:
        return 60.0
    return seconds if seconds > 0 else 60.0


def _import(ep: metadata.EntryPoint) -> Any:
    """``ep.load()`` in a daemon thread that may take :func:`_timeout` seconds: a plugin whose import
    hangs is skipped (its thread is left behind, and ends with the process) instead of hanging every
    command. Its errors, ``SystemExit`` included, are raised here."""
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            done["module"] = ep.load()
        except BaseException as err:  # noqa: BLE001 - handed to the caller, which reports it
            done["error"] = err

    thread = threading.Thread(target=run, name=f"difftk-import-{ep.name}", daemon=True)
    thread.start()
    thread.join(_timeout())
    if thread.is_alive():
        raise _ImportTimeout(_timeout())
    if "error" in done:
        raise done["error"]
    return done["module"]


def first_result(hook: str, *, failures: list[str] | None = None, **kwargs: Any) -> Any:
    """Call the ``firstresult`` hook ``hook`` one implementation at a time, in pluggy's order (the last
    registered first), and return the first result that is not ``None``. A plugin's own
    :class:`DifftkError` stands; any other exception is one line naming the plugin: a
    :class:`PluginError`, or, given a ``failures`` list, appended to it while the next plugin is asked
    (the caller says what failed when no plugin answers, and warns when another one did)."""
    caller = getattr(plugin_manager().hook, hook)
    for impl in reversed(caller.get_hookimpls()):
        try:
            result = impl.function(*[kwargs[name] for name in impl.argnames])
        except (DifftkError, KeyboardInterrupt):
            raise
        except (Exception, SystemExit) as err:
            said = f"SystemExit({err.code!r})" if isinstance(err, SystemExit) else _one_line(err)
            message = (f'plugin "{impl.plugin_name}" failed in {hook}: {said} '
                       f"(DIFFTK_BLOCK_PLUGINS={impl.plugin_name} leaves it out)")
            if failures is None:
                raise PluginError(message) from None
            failures.append(message)
            continue
        if result is not None:
            return result
    return None


_HOST: PluginHost | None = None


def host() -> PluginHost:
    """The process-wide plugin host, created and loaded on first use."""
    global _HOST
    if _HOST is None:
        new = PluginHost()
        new.load_entry_points()
        _HOST = new
    return _HOST


def reset() -> None:
    """Forget the loaded plugins; the next :func:`host` call loads them again."""
    global _HOST
    _HOST = None


def registry() -> Registry:
    """The registry of the process-wide host: every component the loaded plugins registered."""
    return host().registry


def records() -> dict[str, PluginRecord]:
    """What happened to each plugin of the process-wide host (loaded, skipped, blocked)."""
    return host().records


def plugin_manager() -> pluggy.PluginManager:
    """The pluggy ``PluginManager`` with every allowed plugin loaded."""
    return host().pm
