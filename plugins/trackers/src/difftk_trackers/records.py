"""What every tracker does alike: check that its library is installed, name the scalars of a
log.jsonl record, and choose where it writes."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from difftk.errors import DifftkError


class TrackerError(DifftkError):
    """A tracker cannot run: its library is not installed, or it cannot write where it should."""


def require(module: str, package: str, extra: str, logger: str) -> None:
    """One line naming the extra to install when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise TrackerError(f"the {logger} logger needs the {package} package, which is not installed: "
                           f"pip install 'difftk[{extra}]' (in a clone of difftk: pip install '.[{extra}]'), "
                           f"or pip install {package}")


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of one log.jsonl record by tracker key: ``loss``, ``lr`` and ``grad_norm`` of a
    loss record; ``metric/NAME`` and ``metric/NAME.spread`` of a measurement."""
    if "metric" in record:
        name = f"metric/{record['metric']}"
        found = {name: record.get("value"), f"{name}.spread": record.get("spread")}
    else:
        found = {key: record.get(key) for key in ("loss", "lr", "grad_norm")}
    return {key: float(value) for key, value in found.items() if isinstance(value, int | float)}


def flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"lr": 1e-3}}`` as ``{"training.lr": 1e-3}``: the form of key–value params."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def folder(given: str | None, directory: Path | None, name: str) -> Path:
    """``given``, else ``name`` inside the run directory (the current directory for a run that writes none)."""
    if given is not None:
        return Path(given)
    return (directory if directory is not None else Path.cwd()) / name
