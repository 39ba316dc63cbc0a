"""3×3 convolutions that take, per shape, the algorithm measured fastest on the running CPU.

PyTorch sends a float32 CPU convolution to oneDNN. NNPACK's Winograd F(6×6, 3×3) transform
(Lavin & Gray 2016) needs fewer multiply-adds for the stride-1 3×3 convolutions of a U-Net, and
on some CPUs, thread counts and OpenMP wait policies it is faster, on others slower (it runs on
its own thread pool, which waits for cores while OpenMP's idle workers spin after every PyTorch
operation). So nothing is fixed here: each shape is timed once with both and takes the winner
(:mod:`difftk_unet_attn.conv_choice`). Training uses the same choice twice: the gradient with
respect to the input of a stride-1, padding-1 3×3 convolution is itself such a convolution — of
the output gradient with the kernel flipped in space and transposed in channels — so it takes
the algorithm chosen for that shape; the gradient with respect to the kernel stays with oneDNN.
Both algorithms compute the same convolution; results agree to float32 rounding (relative error
~1e-5), which a test checks for values and gradients.

NNPACK is a candidate only where it can run: CPU, float32 outside autocast, NCHW-contiguous input,
NNPACK in the torch build, outside torch.compile (which cannot trace NNPACK's op). Everything
else, GPUs included, goes through ``F.conv2d`` unchanged. ``DIFFTK_CONV3X3=onednn|nnpack|auto``
in the environment, or :func:`force_conv3x3` in code, forces a choice.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from difftk_unet_attn.conv_choice import ALGORITHMS, Chooser, Shape

ENV = "DIFFTK_CONV3X3"

_forced: str | None = None  # set by force_conv3x3; None: the environment, then measurement
_available: bool | None = None
_warned: set[str] = set()
#: The process's measured choices.
chooser = Chooser()


def _nnpack_ready() -> bool:
    """Whether this torch build has NNPACK; the first call also initialises it."""
    global _available
    if _available is None:
        probe = getattr(torch, "_nnpack_available", None)
        _available = bool(probe is not None and probe() and hasattr(torch, "_nnpack_spatial_convolution"))
    return _available


@contextlib.contextmanager
def force_conv3x3(algorithm: str | None) -> Iterator[None]:
    """Run every eligible 3×3 convolution with ``algorithm`` (``onednn`` or ``nnpack``) inside
    the block, or measure (``None`` or ``auto``). Process-wide: meant for benchmarks and tests."""
    global _forced
    if algorithm == "auto":
        algorithm = None
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ValueError(f"unknown 3×3 convolution algorithm {algorithm!r}: choose one of auto, {', '.join(ALGORITHMS)}")
    saved, _forced = _forced, algorithm
    try:
        yield
    finally:
        _forced = saved


def fast_cpu_conv(enabled: bool | None) -> contextlib.AbstractContextManager[None]:
    """Force NNPACK on (True) or off (False) inside the block, or leave it to measurement (None)."""
    return force_conv3x3(None if enabled is None else "nnpack" if enabled else "onednn")


def _env_choice() -> str | None:
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in ("", "auto"):
        return None
    if raw in ALGORITHMS:
        return raw
    if raw not in _warned:
        _warned.add(raw)
        warnings.warn(f"{ENV}={raw!r} is not one of auto, {', '.join(ALGORITHMS)}: measuring instead",
                      RuntimeWarning, stacklevel=3)
    return None


def _candidates(shape: Shape) -> Mapping[str, Callable[[], object]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape.N, shape.C_in, shape.H, shape.W, generator=g)
    w = torch.randn(shape.C_out, shape.C_in, 3, 3, generator=g)
    return {"onednn": lambda: F.conv2d(x, w, padding=1), "nnpack": lambda: _winograd(x, w, None)}


def algorithm(shape: Shape) -> str:
    """The algorithm for an eligible convolution of ``shape``: forced, or measured once."""
    forced = _forced or _env_choice()
    if forced is not None:
        return forced
    with torch.no_grad():
        return chooser.choose(shape, _candidates)


def _winograd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch._nnpack_spatial_convolution(x, weight, bias, [1, 1], [1, 1])


class _Conv3x3Function(torch.autograd.Function):
    """y = conv3x3(x, W) + b, forward and input gradient each by NNPACK or oneDNN as chosen, kernel
    gradient by oneDNN."""

    @staticmethod
    def forward(ctx, x, weight, bias, forward_nnpack: bool, input_grad_nnpack: bool):
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.input_grad_nnpack = bias is not None, input_grad_nnpack
        return _winograd(x, weight, bias) if forward_nnpack else F.conv2d(x, weight, bias, padding=1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x and ctx.input_grad_nnpack:
            # ∂L/∂x = conv3x3(∂L/∂y, W flipped in space, in/out channels swapped), padding 1.
            grad_x = _winograd(grad, weight.flip(2, 3).transpose(0, 1).contiguous(), None)
        onednn_x = need_x and not ctx.input_grad_nnpack
        if onednn_x or need_w or need_b:
            dx, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [1, 1], [1, 1],
                False, [0, 0], 1, [onednn_x, need_w, need_b and ctx.has_bias])
            grad_x = dx if onednn_x else grad_x
        return grad_x, grad_w, grad_b, None, None


def _nnpack_can_run(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous() and not torch.is_autocast_enabled("cpu") and _nnpack_ready()
            # torch.compile cannot trace NNPACK's op (it has no meta kernel): compiled code takes
            # oneDNN's convolution, and Inductor fuses around it
            and not torch.compiler.is_compiling())


class Conv3x3(nn.Conv2d):
    """A 3×3, stride-1, padding-1 convolution (an ``nn.Conv2d``) run by the algorithm chosen for its shape."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """conv3×3(x) + b, with ``bias`` in place of the module's own bias when given."""
        bias = self.bias if bias is None else bias
        if not _nnpack_can_run(x, self.weight):
            return F.conv2d(x, self.weight, bias, padding=1)
        N, _, H, W = x.shape
        forward_nnpack = algorithm(Shape(N, self.in_channels, self.out_channels, H, W)) == "nnpack"
        params = (x, self.weight) if bias is None else (x, self.weight, bias)
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            input_grad_nnpack = x.requires_grad and algorithm(Shape(N, self.out_channels, self.in_channels, H, W)) == "nnpack"
            if forward_nnpack or input_grad_nnpack:
                return _Conv3x3Function.apply(x, self.weight, bias, forward_nnpack, input_grad_nnpack)
            return F.conv2d(x, self.weight, bias, padding=1)
        return _winograd(x, self.weight, bias) if forward_nnpack else F.conv2d(x, self.weight, bias, padding=1)
