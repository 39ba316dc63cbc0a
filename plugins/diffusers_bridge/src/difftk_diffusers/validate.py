"""The one validator of the JSON files the bridge reads: bounded before parsing, typed key by key.

Every file is untrusted. :func:`read_json` refuses a file over :data:`MAX_BYTES` or nested deeper
than :data:`MAX_DEPTH` before ``json.loads`` sees it (through :mod:`difftk.runtime.untrusted`;
a 100,000-deep array would otherwise end in a RecursionError), and the typed readers (:func:`integer`, :func:`number`, :func:`numbers`, …)
check a value's type and range before anything is built from it, so that no config can ask for
an allocation it did not bound. Each problem is one :class:`CheckpointError` line naming the
file, the key, what it holds and what would be right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from difftk.errors import CheckpointError
from difftk.runtime import untrusted

#: the largest JSON file read (a trained_betas list of 10⁶ values is about 25 MB)
MAX_BYTES = 32 * 2**20
#: the deepest nesting of arrays and objects a config may have (diffusers' own are at most 3 deep)
MAX_DEPTH = 32
#: the longest list a config key may hold, trained_betas aside (those are bounded by num_train_timesteps)
MAX_LIST = 64

def read_json(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` (``what`` names the file's role for the messages), bounded in
    size and depth by the core's untrusted-text reader before anything is parsed."""

    def error(reason: str) -> CheckpointError:
        return CheckpointError(f"{path}: {reason}")

    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise error(f"{size:,} bytes is too large for {what} (at most {MAX_BYTES:,})")
        text = path.read_bytes()
    except FileNotFoundError:
        raise error(f"no such file ({what})") from None
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read ({err.strerror or err})") from None
    data = untrusted.read_json(text, what=what, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH, error=error,
                               infinities=True)  # diffusers writes lambda_min_clipped = -inf
    if not isinstance(data, dict):
        raise error(f"{what} is a JSON object, not a {type(data).__name__}")
    return data


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(where: str, key: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi] (a float that is a whole number is accepted, as diffusers writes 1000.0)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise CheckpointError(f"{where}: {key} {_show(value)} must be an integer from {lo:,} to {hi:,}")
    return value


def number(where: str, key: str, value: Any, lo: float, hi: float, *, open_lo: bool = False) -> float:
    """``value`` as a finite float in [lo, hi] (or (lo, hi] with ``open_lo``)."""
    ok = _is_number(value) and math.isfinite(value) and (lo < value if open_lo else lo <= value) and value <= hi
    if not ok:
        bound = f"in ({lo:g}, {hi:g}]" if open_lo else f"from {lo:g} to {hi:g}"
        raise CheckpointError(f"{where}: {key} {_show(value)} must be a number {bound}")
    return float(value)


def numbers(where: str, key: str, value: Any, lo: float, hi: float, max_len: int) -> tuple[float, ...]:
    """``value`` as a list of at most ``max_len`` finite numbers in (lo, hi]."""
    if not isinstance(value, list) or not 0 < len(value) <= max_len \
            or not all(_is_number(v) and math.isfinite(v) and lo < v <= hi for v in value):
        raise CheckpointError(f"{where}: {key} must be a list of 1 to {max_len:,} numbers in ({lo:g}, {hi:g}]")
    return tuple(float(v) for v in value)


def boolean(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise CheckpointError(f"{where}: {key} {_show(value)} must be true or false")
    return value


def choice(where: str, key: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` if it is one of ``allowed`` (compared by type too: 1 is not true)."""
    if not any(type(value) is type(a) and value == a for a in allowed):
        shown = ", ".join("null" if a is None else str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
        raise CheckpointError(f"{where}: {key} {_show(value)} is not supported (supported: {shown})")
    return value


def integers(where: str, key: str, value: Any, lo: int, hi: int, max_len: int = MAX_LIST) -> tuple[int, ...]:
    """``value`` as a list of 1 to ``max_len`` integers in [lo, hi]."""
    if not isinstance(value, list | tuple) or not 0 < len(value) <= max_len:
        raise CheckpointError(f"{where}: {key} {_show(value)} must be a list of 1 to {max_len} integers")
    return tuple(integer(where, f"{key}[{i}]", v, lo, hi) for i, v in enumerate(value))


def strings(where: str, key: str, value: Any, max_len: int = MAX_LIST) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not 0 < len(value) <= max_len or not all(isinstance(v, str) for v in value):
        raise CheckpointError(f"{where}: {key} {_show(value)} must be a list of 1 to {max_len} names")
    return tuple(value)
