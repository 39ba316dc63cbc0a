"""Component options: attrs fields that validate themselves and describe themselves.

A component's options are the fields of a frozen attrs class. :func:`option` adds to
``attrs.field`` the things a user needs to see: a help line, an allowed range or choices,
and a one-line error when a value is wrong. :func:`parse_value` turns the strings of the
command line (``--set sampler.eta=0.5``) into the field's type.
"""

from __future__ import annotations

import math
import os
import typing
from typing import Any

import attrs

from difftk.errors import OptionError, did_you_mean

_MISSING = attrs.NOTHING


def _describe_range(name, ge, gt, le, lt) -> str:
    lo = f"{ge:g} ≤ " if ge is not None else (f"{gt:g} < " if gt is not None else "")
    hi = f" ≤ {le:g}" if le is not None else (f" < {lt:g}" if lt is not None else "")
    return f"{lo}{name}{hi}"


def option(
    default: Any = _MISSING,
    *,
    help: str,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
    optional: bool = False,
) -> Any:
    """Declare one validated option of a component.

    :param default: the default value (options without one are required).
    :param help: one line shown by ``difftk plugins`` and in errors.
    :param ge, gt, le, lt: numeric bounds, inclusive (``ge``/``le``) or strict.
    :param choices: the allowed values, for string options.
    :param optional: ``None`` is allowed and means "off".
    """

    def validate(inst, attribute, value):
        if value is None and optional:
            return
        is_tuple = attribute.type is not None and _is_tuple(attribute.type)
        if is_tuple != isinstance(value, tuple):
            owner = getattr(type(inst), "component_label", type(inst).__name__)
            expected = "a list of values, e.g. 1,2,2" if is_tuple else "a single value"
            raise OptionError(f"{owner}: option {attribute.name}={value!r} must be {expected}")
        for item in value if is_tuple else (value,):
            validate_item(inst, attribute, item)

    def validate_item(inst, attribute, value):
        owner = getattr(type(inst), "component_label", type(inst).__name__)
        where = f"{owner}: option {attribute.name}={value!r}"
        typ = attribute.type
        if typ is not None:
            _check_type(where, typ, value)
        if choices is not None and value not in choices:
            hint = did_you_mean(str(value), [str(c) for c in choices])
            raise OptionError(f"{where} is not allowed{hint} (choose from {', '.join(map(str, choices))})")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise OptionError(f"{where} must be a finite number")
            bad = (ge is not None and value < ge) or (gt is not None and value <= gt) or (
                le is not None and value > le) or (lt is not None and value >= lt)
            if bad:
                raise OptionError(f"{where} is out of range: expected {_describe_range(attribute.name, ge, gt, le, lt)}")

    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "optional": optional}
    return attrs.field(default=default, validator=validate, converter=_normalise, metadata={"difftk": meta}, kw_only=True)


def _normalise(value: Any) -> Any:
    """Lists (from TOML) become tuples, so a tuple option compares equal after a round-trip;
    path-like objects become strings, so ``path=Path(...)`` works."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


_NAMES = {"float": float, "int": int, "str": str, "bool": bool,
          "tuple[int, ...]": tuple[int, ...], "tuple[float, ...]": tuple[float, ...]}


def _base_type(typ: Any) -> Any:
    """``float | None`` -> ``float``; ``tuple[int, ...]`` -> ``int`` (the type of each item)."""
    if isinstance(typ, str):
        typ = _NAMES.get(typ.split("|")[0].strip(), typ)
    if typing.get_origin(typ) is tuple:
        return typing.get_args(typ)[0]
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if typing.get_origin(typ) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return args[0]
    return typ


def _check_type(where: str, typ: Any, value: Any) -> None:
    base = _base_type(typ)
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base in (str, bool):
        ok = isinstance(value, base)
    else:
        return
    if not ok:
        raise OptionError(f"{where} has the wrong type: expected {base.__name__}")


def option_fields(cls: type) -> dict[str, attrs.Attribute]:
    """The option fields of an options class, in declaration order."""
    return {a.name: a for a in attrs.fields(cls) if a.init}


def option_info(attribute: attrs.Attribute) -> dict[str, Any]:
    """A plain description of one option: type, default, help, range, choices."""
    meta = dict(attribute.metadata.get("difftk", {}))
    base = _base_type(attribute.type)
    default = None if attribute.default is attrs.NOTHING else attribute.default
    return {
        "name": attribute.name,
        "type": getattr(base, "__name__", str(base)),
        "default": default,
        "required": attribute.default is attrs.NOTHING,
        **{k: v for k, v in meta.items() if v is not None and v is not False},
    }


def _is_tuple(typ: Any) -> bool:
    if isinstance(typ, str):
        return typ.strip().startswith("tuple[")
    return typing.get_origin(typ) is tuple


def parse_value(owner: str, attribute: attrs.Attribute, text: str) -> Any:
    """Convert a command-line string to the option's type, with a one-line error if it cannot.

    Tuple options take comma-separated items: ``--set denoiser.channel_mult=1,2,2``.
    """
    base = _base_type(attribute.type)
    meta = attribute.metadata.get("difftk", {})
    if meta.get("optional") and text.strip().lower() in ("none", "null", "off"):
        return None
    if _is_tuple(attribute.type):
        items = [part.strip() for part in text.strip("()[] ").split(",") if part.strip()]
        return tuple(_parse_scalar(owner, attribute, base, item) for item in items)
    return _parse_scalar(owner, attribute, base, text)


def _parse_scalar(owner: str, attribute: attrs.Attribute, base: Any, text: str) -> Any:
    try:
        if base is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if base is int:
            return int(text)
        if base is float:
            return float(text)
    except ValueError:
        raise OptionError(
            f"{owner}: option {attribute.name}={text!r} is not a valid {base.__name__}"
        ) from None
    return text


def option_error(component: Any, message: str) -> OptionError:
    """A one-line :class:`OptionError` about a combination of options of ``component``."""
    label = getattr(type(component), "component_label", type(component).__name__)
    return OptionError(f"{label}: {message}")
