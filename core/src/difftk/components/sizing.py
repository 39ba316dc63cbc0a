"""Bounding what a component's options ask for before anything is allocated.

Options come from files difftk did not write (a checkpoint's pipeline, a classifier file, a
pipeline TOML) as well as from flags: ``base_channels = 100000`` would allocate 160 GB of weights
before any check ran. A network is first built on PyTorch's ``meta`` device, where tensors have
shapes but no storage, and its parameters and buffers are counted; more than
:data:`MAX_PARAMETERS` is refused in one line. The real build follows.
"""

from __future__ import annotations

from typing import Any

import torch

from difftk.errors import DifftkError, OptionError

#: the most parameters and buffers one network may hold: 2³¹ (8.6 GB in float32), above the
#: largest network difftk trains or loads and far below what a hostile size option asks for
MAX_PARAMETERS = 1 << 31


def network_size(cls: type, config: Any) -> int | None:
    """The parameters and buffers of ``cls(config)``, counted on the meta device without allocating;
    ``None`` when ``cls`` is not a network or cannot be built there (then the real build decides)."""
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        return None
    try:
        with torch.device("meta"):
            probe = cls(config)
    except DifftkError:
        raise
    except Exception:  # e.g. a constructor that reads a value back (.item()) cannot run on meta tensors
        return None
    return sum(t.numel() for t in probe.parameters()) + sum(t.numel() for t in probe.buffers())


#: (class, options) -> size, so that a network built again with the same options is counted once
_SIZES: dict[tuple[type, Any], int | None] = {}


def check_network_size(label: str, cls: type, config: Any) -> None:
    """Refuse options that make ``cls(config)`` hold more than :data:`MAX_PARAMETERS` values."""
    try:
        key = (cls, config)
        if key not in _SIZES and len(_SIZES) >= 256:
            _SIZES.clear()
        size = _SIZES[key] if key in _SIZES else _SIZES.setdefault(key, network_size(cls, config))
    except TypeError:  # options that cannot be hashed: count every time
        size = network_size(cls, config)
    if size is not None and size > MAX_PARAMETERS:
        raise OptionError(f"{label} with these options would hold {size:,} parameters ({4 * size / 1e9:,.0f} GB in "
                          f"float32); at most {MAX_PARAMETERS:,} are allowed: lower its size options (channels, "
                          "depth, classes)")
