"""Linear maps of the transformer on the CPU: oneDNN's matrix product with the bias (and GELU) fused, where measured faster.

``F.linear`` on a float32 CPU tensor copies the bias into the output and accumulates an MKL
sgemm onto it, and GELU is one more pass over the MLP's widest activation. oneDNN's
``_linear_pointwise`` (the kernel torch.compile's CPU backend emits) adds the bias and applies
GELU in the product's epilogue. Which is faster depends on the shapes and the machine, so the
choice is made by measurement: the first time a shape (rows, in, out, activation) is seen, both
are timed (best of a few calls) and the faster one is kept for that shape in this process.
The two agree to float32 rounding, not bit for bit: a process that must repeat another's
results exactly pins the path with :func:`fused_linear`.

Training takes the fast path too: the forward product and the backward's two (∂L/∂x = g·W,
∂L/∂W = gᵀ·x; ∂L/∂b = Σ g) through oneDNN, timed together against ``F.linear`` and autograd's
products; GELU then stays a separate op, so autograd keeps its input. Results agree with ``F.linear`` to float32 rounding (a test checks
values and gradients). The path is taken only where valid — CPU, float32, oneDNN in the torch
build, outside torch.compile — and :func:`fused_linear` forces it on or off.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

_forced: bool | None = None  # None: decide by measurement
_choice: dict[tuple[int, int, int, str, bool], bool] = {}  # shape → whether oneDNN was faster
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


class _OneDNNLinear(torch.autograd.Function):
    """y = x·Wᵀ + b through oneDNN, with the backward as plain matrix products."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = _product(grad, weight.t().contiguous()) if need_x else None  # g·W
        grad_w = _product(grad.t(), x.t()) if need_w else None  # gᵀ·x
        grad_b = grad.sum(0) if need_b else None
        return grad_x, grad_w, grad_b


def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a·bᵀ through oneDNN (a and b may be transposed views)."""
    return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")


def _faster(x: torch.Tensor, layer: nn.Linear, gelu: bool, grad: bool, key: tuple) -> bool:
    """Whether oneDNN is faster for this shape: the forward (and, for training, the two backward
    products) timed both ways on ``x``, alternating, best of 5 after one call each. The time is
    the process's CPU time, which other processes on shared cores disturb far less than the
    wall clock."""
    if key not in _choice:
        w = layer.weight.detach()
        # an output gradient of the right shape, drawn from its own generator (the global RNG is left alone)
        g = torch.randn(x.shape[0], layer.out_features, generator=torch.Generator().manual_seed(0)) if grad else None

        def onednn() -> None:
            _onednn(x, layer, gelu)
            if grad:
                _product(g, w.t().contiguous())
                _product(g.t(), x.t())

        def reference() -> None:
            _reference(x, layer, gelu)
            if grad:
                g.mm(w)
                g.t().mm(x)

        best = {onednn: float("inf"), reference: float("inf")}
        with torch.no_grad():
            onednn(), reference()
            for _ in range(5):  # alternating, so that load from other processes hits both alike
                for f in (onednn, reference):
                    start = time.process_time()
                    f()
                    best[f] = min(best[f], time.process_time() - start)
        _choice[key] = best[onednn] < best[reference]
    return _choice[key]


def linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False) -> torch.Tensor:
    """``layer(x)`` (then GELU, tanh form, with ``gelu``) for x of any leading shape."""
    usable = (
        _forced is not False
        and x.device.type == "cpu"
        and x.dtype == layer.weight.dtype == torch.float32
        and layer.bias is not None
        and _onednn_ready()
        and not torch.compiler.is_compiling()
    )
    if not usable:
        return _reference(x, layer, gelu)
    rows = x.reshape(-1, x.shape[-1])
    grad = torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad or layer.bias.requires_grad)
    key = (rows.shape[0], layer.in_features, layer.out_features, "gelu" if gelu else "none", grad)
    if _forced is None and not _faster(rows.detach(), layer, gelu and not grad, grad, key):
        return _reference(x, layer, gelu)
    if grad:
        y = _OneDNNLinear.apply(rows, layer.weight, layer.bias)
        y = F.gelu(y, approximate="tanh") if gelu else y
    else:
        y = _onednn(rows, layer, gelu)
    return y.view(*x.shape[:-1], layer.out_features)
