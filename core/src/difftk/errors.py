"""Errors a user can cause. Each renders as one line that names the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DifftkError(Exception):
    """Base of every error difftk raises on purpose; ``str(err)`` is the one-line message."""


class UnknownComponentError(DifftkError, LookupError):
    """A component name that no loaded plugin registers."""


class OptionError(DifftkError, ValueError):
    """An option that a component does not have, or a value outside its allowed set."""


class IncompatibleError(DifftkError):
    """Components that cannot work together in one pipeline."""


class PluginError(DifftkError):
    """A plugin that failed to load or to register (raised only in strict mode)."""


class OutputError(DifftkError, OSError):
    """An output path that cannot be written, or whose writing would destroy a checkpoint."""


class SpecError(DifftkError, ValueError):
    """A pipeline file or checkpoint metadata that cannot be read as a pipeline."""


class CheckpointError(DifftkError):
    """A checkpoint that cannot be read, or that does not fit what it is loaded into."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
