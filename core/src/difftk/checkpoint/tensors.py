"""Checking the tensors of a checkpoint or classifier file before they are used: the dtype each
network declares, and finite values (in every floating dtype, float8 included)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from difftk.errors import CheckpointError

#: elements converted to float32 at a time when counting non-finite values of a low-precision tensor
_CHUNK = 1 << 20


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "floating-point"
    if dtype.is_complex:
        return "complex"
    return "boolean" if dtype == torch.bool else "integer"


def check_weight_dtypes(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str, what: str) -> None:
    """Every tensor of ``state`` must be of the kind (floating point, integer, boolean) that the
    tensor of the same name in ``module`` declares: ``load_state_dict`` would otherwise cast, and a
    header relabelling F32 weights as I32 would load as garbage. Floating dtypes may differ in
    precision (float16 weights load into a float32 network)."""
    declared = module.state_dict()
    for name, tensor in state.items():
        want = declared.get(name)
        if want is None or _kind(want.dtype) == _kind(tensor.dtype):
            continue
        raise CheckpointError(f"{source}: {what} tensor '{name}' is stored as {tensor.dtype} ({_kind(tensor.dtype)}), "
                              f"but the network declares {want.dtype}: the file's header was edited or it is not "
                              "from difftk")


def count_non_finite(tensors: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(non-finite values, all values) over the floating-point tensors of ``tensors``. Dtypes that
    ``torch.isfinite`` does not take (float8) are converted to float32, a chunk at a time."""
    bad = total = 0
    for tensor in tensors.values():
        total += tensor.numel()
        if not tensor.is_floating_point():
            continue
        flat = tensor.reshape(-1)
        for start in range(0, flat.numel(), _CHUNK):
            part = flat[start:start + _CHUNK]
            if part.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
                part = part.to(torch.float32)
            bad += int((~torch.isfinite(part)).sum())
    return bad, total
