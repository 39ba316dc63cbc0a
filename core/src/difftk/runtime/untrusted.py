"""Reading structured text that difftk did not write itself: bounded JSON and TOML.

Every file difftk reads is untrusted. Python's ``json`` and ``tomllib`` recurse once per level
of nesting, so 100,000 nested ``[`` raise ``RecursionError``; ``json`` also accepts ``NaN`` and
``Infinity``, which no difftk file holds, and turns ``1e999`` into ``inf``. The readers here check
the size and the nesting depth *before* the parser runs (one linear scan that skips strings),
and refuse non-finite numbers, so that a hostile file costs a bounded amount of work and gives
one line naming what is wrong. Every JSON and TOML reader in difftk goes through them.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable
from typing import Any

from difftk.errors import DifftkError

#: the deepest nesting any difftk file needs (a pipeline spec in a checkpoint is 3 levels deep)
MAX_DEPTH = 32
#: the largest JSON text read by default (a checkpoint's whole header is under 1 MB for a large U-Net)
MAX_JSON_BYTES = 16 << 20
#: the largest pipeline or experiment TOML file read
MAX_TOML_BYTES = 1 << 20

# what a depth scan skips: strings (an unclosed one runs to the end of the text, so the scan stays
# linear) and, in TOML, comments; what is left of the text is its brackets
_JSON_SKIP = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\Z)|[^"\[\]{}]++', re.S)
_TOML_SKIP = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*+(?:"""|\Z)|\'\'\'(?:[^\']|\'(?!\'\'))*+(?:\'\'\'|\Z)'
                        r'|"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+(?:"|$)|\'[^\'\n]*+(?:\'|$)|#[^\n]*+|[^"\'#\[\]{}]++', re.S | re.M)
_PAIR = re.compile(r"\[\]|\{\}")

Raise = Callable[[str], Exception]


def _default_error(reason: str) -> Exception:
    return DifftkError(reason)


def _within_depth(brackets: str, limit: int) -> bool:
    """Whether a string of brackets nests at most ``limit`` deep: each pass removes the innermost
    pairs, so a well-nested string is empty after as many passes as it is deep. Unpaired brackets
    are left for the parser to reject, unless there are more of them than ``limit``."""
    for _ in range(limit):
        brackets, removed = _PAIR.subn("", brackets)
        if not brackets or not removed:
            break
    return len(brackets) <= limit and _PAIR.search(brackets) is None


def json_within_depth(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests arrays and objects at most ``limit`` deep (brackets inside strings
    do not count). Linear in the length of ``text``; nothing is parsed."""
    return _within_depth(_JSON_SKIP.sub("", text), limit)


def toml_within_depth(text: str, limit: int) -> bool:
    """Whether TOML ``text`` nests arrays and inline tables at most ``limit`` deep (a ``[table]``
    header counts 1, ``[[array.of.tables]]`` 2; brackets in strings and comments do not count)."""
    return _within_depth(_TOML_SKIP.sub("", text), limit)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number difftk writes")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond the range of a float")
    return value


def _infinity(name: str) -> float:
    if name == "NaN":
        return _reject_constant(name)
    return float("inf") if name == "Infinity" else float("-inf")


def read_json(text: str | bytes, *, what: str = "the JSON", max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_DEPTH, error: Raise = _default_error, infinities: bool = False) -> Any:
    """``json.loads(text)`` for untrusted text: at most ``max_bytes`` long and ``max_depth`` deep
    (checked before parsing), UTF-8, finite numbers only — or, with ``infinities``, also the
    ``Infinity`` and ``-Infinity`` that Python's json writes for ±inf (other libraries' configs hold
    them: diffusers' ``lambda_min_clipped = -inf``); never NaN. Any problem raises ``error(reason)``,
    the reason a phrase that starts with ``what`` (e.g. ``"metadata 'dataset' is not JSON (…)"``)."""
    size = len(text)
    if size > max_bytes:
        raise error(f"{what} is {size:,} bytes long; at most {max_bytes:,} are read")
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            raise error(f"{what} is not UTF-8 text (byte {err.start})") from None
    if not json_within_depth(text, max_depth):
        raise error(f"{what} is nested more than {max_depth} level{'s' if max_depth != 1 else ''} deep")
    try:
        return json.loads(text, parse_constant=_infinity if infinities else _reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, a rejected number, an over-long integer
        raise error(f"{what} is not JSON ({' '.join(str(err).split())[:160]})") from None


def read_toml(text: str, *, what: str = "the TOML", max_bytes: int = MAX_TOML_BYTES, max_depth: int = MAX_DEPTH,
              error: Raise = _default_error) -> dict[str, Any]:
    """``tomllib.loads(text)`` for untrusted text, bounded like :func:`read_json` (TOML has no
    NaN-free mode: ``nan`` and ``inf`` are refused after parsing)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise error(f"{what} is {size:,} bytes long; at most {max_bytes:,} are read")
    if not toml_within_depth(text, max_depth):
        raise error(f"{what} is nested more than {max_depth} level{'s' if max_depth != 1 else ''} deep")
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError) as err:
        raise error(f"{what} is not valid TOML ({' '.join(str(err).split())[:160]})") from None
    bad = _non_finite(data)
    if bad is not None:
        raise error(f"{what} holds {bad} = {data_at(data, bad)}: give a finite number")
    return data


def _non_finite(value: Any, where: str = "") -> str | None:
    """The dotted key of the first non-finite float in ``value``, or ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "a value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def data_at(data: Any, dotted: str) -> Any:
    """The value at a dotted key path of nested tables and arrays (``"a.0.b"``)."""
    for part in dotted.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data
