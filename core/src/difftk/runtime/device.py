"""Choosing the device to compute on.
"""

from __future__ import annotations

import torch

from difftk.errors import OptionError


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``auto`` (or ``None``): CUDA when available, else the CPU; ``cuda`` without a GPU is an error."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(f"device={name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device={name}: CUDA is not available on this machine (use cpu or auto)")
    return device
