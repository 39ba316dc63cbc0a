"""Speed settings for training and sampling: precision (fp32, TF32, bf16 autocast), channels-last
memory format and torch.compile. Each changes how the arithmetic runs, not what is computed;
core/tests/runtime/test_fastpath.py bounds the difference to fp32 for each."""

from __future__ import annotations

import contextlib

import torch

#: ``auto``: bf16 autocast on CUDA, fp32 elsewhere; ``tf32``: fp32 tensors with TF32 matmuls and
#: convolutions on Ampere+ GPUs (no effect on the CPU); ``bf16``: autocast to bfloat16 (CPU or CUDA)
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "tf32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA, ``fp32`` elsewhere; others as given."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context the forward pass and the loss run in; TF32 is switched on (for CUDA) or off here."""
    precision = resolve_precision(precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare(module: torch.nn.Module, *, channels_last: bool = False, compile: bool = False):
    """``module`` in channels-last memory format (4-D weights) and/or compiled with torch.compile.
    Returns what to call: the module itself, or its compiled wrapper (which still exposes the
    denoiser's attributes through ``_orig_mod``)."""
    if channels_last:
        module.to(memory_format=torch.channels_last)
    if compile:
        compiled = torch.compile(module)
        return _Compiled(compiled, module)
    return module


class _Compiled(torch.nn.Module):
    """A compiled denoiser that still answers ``prediction``, ``learned_variance``, ``num_classes``…"""

    def __init__(self, compiled, original) -> None:
        super().__init__()
        self.compiled, self.original = compiled, original

    def forward(self, *args, **kwargs):
        return self.compiled(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.original, name)


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Images [B, C, H, W] in channels-last layout when asked (other shapes unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x
