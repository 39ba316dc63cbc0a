"""Linear maps of the transformer at inference on the CPU: oneDNN's product with the bias and GELU fused, where measured faster.

``F.linear`` on a float32 CPU tensor copies the bias into the output and accumulates an MKL
sgemm onto it, and GELU (tanh form) is one more pass over the MLP's widest activation. oneDNN's
``_linear_pointwise`` (the kernel torch.compile's CPU backend emits) adds the bias and applies
GELU in the product's epilogue. Which is faster depends on the shapes and the machine, so the
choice is made by measurement: the first time a shape (rows, in, out, activation) is seen, both
are timed, alternating, and oneDNN is kept for that shape in this process only if it is faster
both by the wall clock (which sees how well the product uses the threads) and by the process's
CPU time (which other processes on shared cores disturb far less).

The path is for inference only (no autograd graph being recorded): the forward through oneDNN
with the backward as matrix products measured no faster in a training step than autograd's own
``F.linear``, whose backward stays. The path is taken only where valid — CPU, float32, oneDNN in
the torch build, outside torch.compile. Results agree with ``F.linear`` to float32 rounding, not
bit for bit (a test checks): a process that must repeat another's results exactly pins the path
with :func:`fused_linear`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_forced: bool | None = None  # None: decide by measurement
_choice: dict[tuple[int, int, int, str], bool] = {}  # shape → whether oneDNN was faster
_available: bool | None = None


def _onednn_ready() -> bool:
    global _available
    if _available is None:
        _available = bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
    return _available


@contextlib.contextmanager
def fused_linear(enabled: bool | None) -> Iterator[None]:
    """Force the oneDNN path on (True) or off (False), or leave it to measurement (None), inside
    the block. Process-wide: meant for benchmarks and tests."""
    global _forced
    saved, _forced = _forced, enabled
    try:
        yield
    finally:
        _forced = saved


def _onednn(x: torch.Tensor, layer: nn.Linear, gelu: bool) -> torch.Tensor:
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu", [], "tanh")
    return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")


def _reference(x: torch.Tensor, layer: nn.Linear, gelu: bool) -> torch.Tensor:
    y = F.linear(x, layer.weight, layer.bias)
    return F.gelu(y, approximate="tanh") if gelu else y


def _faster(x: torch.Tensor, layer: nn.Linear, gelu: bool, key: tuple) -> bool:
    """Whether oneDNN is faster for this shape by both clocks: both paths timed on ``x``,
    alternating, best of 10 after one call each."""
    if key not in _choice:
        wall = {_onednn: float("inf"), _reference: float("inf")}
        cpu = dict(wall)
        with torch.no_grad():
            _onednn(x, layer, gelu), _reference(x, layer, gelu)
            for _ in range(10):  # alternating, so that load from other processes hits both alike
                for f in (_onednn, _reference):
                    start, used = time.perf_counter(), time.process_time()
                    f(x, layer, gelu)
                    wall[f] = min(wall[f], time.perf_counter() - start)
                    cpu[f] = min(cpu[f], time.process_time() - used)
        _choice[key] = wall[_onednn] < wall[_reference] and cpu[_onednn] < cpu[_reference]
    return _choice[key]


def linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False) -> torch.Tensor:
    """``layer(x)`` (then GELU, tanh form, with ``gelu``) for x of any leading shape."""
    usable = (
        _forced is not False
        and x.device.type == "cpu"
        and x.dtype == layer.weight.dtype == torch.float32
        and layer.bias is not None
        and not (
            torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad or layer.bias.requires_grad)
        )
        and _onednn_ready()
        and not torch.compiler.is_compiling()
    )
    if not usable:
        return _reference(x, layer, gelu)
    rows = x.reshape(-1, x.shape[-1])
    key = (rows.shape[0], layer.in_features, layer.out_features, "gelu" if gelu else "none")
    if _forced is None and not _faster(rows, layer, gelu, key):
        return _reference(x, layer, gelu)
    return _onednn(rows, layer, gelu).view(*x.shape[:-1], layer.out_features)
