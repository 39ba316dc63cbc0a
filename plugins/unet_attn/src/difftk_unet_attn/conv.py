"""3×3 convolutions that run through NNPACK's Winograd kernels on the CPU when that is faster.

PyTorch sends a float32 CPU convolution to oneDNN. For the stride-1 3×3 convolutions of a
U-Net on batches of images at 14×14 and above, NNPACK's Winograd F(6×6, 3×3) transform
(Lavin & Gray 2016) needs about half the time; below that size its 8×8 tiles are mostly
padding and oneDNN wins. Training profits too: the gradient with respect to the input of a
stride-1, padding-1 3×3 convolution is itself such a convolution — of the output gradient with
the kernel flipped in space and transposed in channels — so it takes the same fast path; the
gradient with respect to the kernel stays with oneDNN. Results agree with ``F.conv2d`` to
float32 rounding (relative error ~1e-5); a test checks values and gradients.

The fast path is taken only where it is valid (CPU, float32, NCHW-contiguous input, NNPACK in
the torch build, outside torch.compile, which cannot trace NNPACK's op) and pays: batch ≥ 16 as
in PyTorch's own NNPACK heuristic, both spatial sizes ≥ 12, at least 8 input channels — and only
when NNPACK can have the cores. NNPACK runs on its
own thread pool (sized by ``torch.get_num_threads()`` at its first use), while after every
PyTorch operation OpenMP's idle workers keep spinning for several milliseconds (the default
``OMP_WAIT_POLICY``), holding the other cores: until they yield, the calling thread does
NNPACK's work alone. With two threads that still left NNPACK ahead of oneDNN (measured); with
N threads oneDNN's time shrinks as 1/N while that spin window does not, so a rough model puts
the break-even near 4–6 threads. By default the path is therefore on for at most 2 intra-op
threads, or for any number under ``OMP_WAIT_POLICY=PASSIVE`` (the workers sleep at once);
:func:`fast_cpu_conv` forces it either way. Everything else, GPUs included, goes through
``F.conv2d`` unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

#: Smallest batch and feature-map side for which the Winograd path is used (measured).
MIN_BATCH = 16
MIN_SIZE = 12
#: Fewest input channels for which it is used (an RGB or grey input layer is faster in oneDNN).
MIN_CHANNELS = 8
#: Most intra-op threads for which the path is used under OpenMP's default spin-waiting.
MAX_SPINNING_THREADS = 2

_forced: bool | None = None  # None: decide by the threading set-up
_available: bool | None = None


def _nnpack_ready() -> bool:
    """Whether this torch build has NNPACK; the first call also initialises it."""
    global _available
    if _available is None:
        probe = getattr(torch, "_nnpack_available", None)
        _available = bool(probe is not None and probe() and hasattr(torch, "_nnpack_spatial_convolution"))
    return _available


def fast_path_enabled() -> bool:
    """Whether the NNPACK path is in use now: forced by :func:`fast_cpu_conv`, else on with at
    most :data:`MAX_SPINNING_THREADS` intra-op threads or with OpenMP's passive wait policy."""
    if _forced is not None:
        return _forced
    return (torch.get_num_threads() <= MAX_SPINNING_THREADS
            or os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive")


@contextlib.contextmanager
def fast_cpu_conv(enabled: bool | None) -> Iterator[None]:
    """Force the NNPACK path on (True) or off (False), or leave it to the default (None), inside
    the block. Process-wide: meant for benchmarks and tests."""
    global _forced
    saved, _forced = _forced, enabled
    try:
        yield
    finally:
        _forced = saved


def _winograd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch._nnpack_spatial_convolution(x, weight, bias, [1, 1], [1, 1])


class _Conv3x3Function(torch.autograd.Function):
    """y = conv3x3(x, W) + b with Winograd forward and input gradient, oneDNN kernel gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _winograd(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = grad_w = grad_b = None
        if need_x:
            # ∂L/∂x = conv3x3(∂L/∂y, W flipped in space, in/out channels swapped), padding 1.
            grad_x = _winograd(grad, weight.flip(2, 3).transpose(0, 1).contiguous(), None)
        if need_w or need_b:
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [1, 1], [1, 1],
                False, [0, 0], 1, [False, need_w, need_b and ctx.has_bias])
        return grad_x, grad_w, grad_b


def _use_fast_path(x: torch.Tensor, in_channels: int) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.shape[0] >= MIN_BATCH and min(x.shape[2], x.shape[3]) >= MIN_SIZE and in_channels >= MIN_CHANNELS
            and x.is_contiguous() and fast_path_enabled() and _nnpack_ready()
            # torch.compile cannot trace NNPACK's op (it has no meta kernel): compiled code takes
            # oneDNN's convolution, and Inductor fuses around it
            and not torch.compiler.is_compiling())


class Conv3x3(nn.Conv2d):
    """A 3×3, stride-1, padding-1 convolution (an ``nn.Conv2d``) with the CPU fast path above."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """conv3×3(x) + b, with ``bias`` in place of the module's own bias when given."""
        bias = self.bias if bias is None else bias
        if not _use_fast_path(x, self.in_channels) or self.weight.dtype != torch.float32:
            return F.conv2d(x, self.weight, bias, padding=1)
        params = (x, self.weight) if bias is None else (x, self.weight, bias)
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return _Conv3x3Function.apply(x, self.weight, bias)
        return _winograd(x, self.weight, bias)
