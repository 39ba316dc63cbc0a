"""How a conformance check fails: :class:`ConformanceError`, one line naming the component and the
property it broke, and the protocol check that registration also makes."""

from __future__ import annotations

from typing import Any

from difftk.components.protocols import protocol_problem


class ConformanceError(AssertionError):
    """A component broke its protocol's contract; the message says which property and where."""


def _label(component: Any, default: str) -> str:
    return getattr(type(component), "component_label", None) or getattr(
        getattr(component, "config", None).__class__, "component_label", None) or default


def fail_as(component: Any, kind: str, message: str) -> None:
    raise ConformanceError(f"{_label(component, kind + ' ' + type(component).__name__)}: {message}")


def check_protocol(component: Any, kind: str) -> None:
    """The class has the methods of ``kind``'s protocol, with the parameters its callers pass."""
    problem = protocol_problem(kind, type(component))
    if problem is not None:
        fail_as(component, kind, problem)
