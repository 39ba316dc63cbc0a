"""dit's CPU linear maps at inference: the oneDNN path equals F.linear (and GELU), is chosen per shape, and leaves training to autograd."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from difftk_dit import DiT
from difftk_dit import linear as fast
from hypothesis import given, settings
from hypothesis import strategies as st

needs_onednn = pytest.mark.skipif(not fast._onednn_ready(), reason="this torch build has no oneDNN")


@needs_onednn
@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 40),
    n_in=st.integers(1, 48),
    n_out=st.integers(1, 48),
    gelu=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_onednn_path_equals_f_linear(rows, n_in, n_out, gelu, seed):
    """Forced on, the values equal F.linear's (then GELU's, tanh form) to float32 rounding."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(n_in, n_out).requires_grad_(False)
    x = torch.randn(2, rows, n_in)
    ref = F.linear(x, layer.weight, layer.bias)
    ref = F.gelu(ref, approximate="tanh") if gelu else ref
    with fast.fused_linear(True):
        out = fast.linear(x, layer, gelu=gelu)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * (1 + float(ref.abs().max())))


@needs_onednn
def test_the_path_is_measured_once_per_shape_and_can_be_forced():
    fast._choice.clear()
    layer = torch.nn.Linear(8, 12)
    x = torch.randn(5, 8)
    with torch.no_grad():
        fast.linear(x, layer, gelu=True)
        fast.linear(x, layer, gelu=True)
        assert list(fast._choice) == [(5, 8, 12, "gelu")]
        with fast.fused_linear(False):
            fast.linear(torch.randn(7, 8), layer)
    assert len(fast._choice) == 1  # forced: nothing measured


@needs_onednn
def test_training_keeps_autograds_linear():
    """With a graph being recorded the path is F.linear's, whose backward autograd owns."""
    fast._choice.clear()
    layer = torch.nn.Linear(8, 12)
    with fast.fused_linear(True):
        out = fast.linear(torch.randn(5, 8), layer, gelu=True)
    assert type(out.grad_fn).__name__ == "GeluBackward0" and fast._choice == {}
    out.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.any()


def test_a_whole_dit_agrees_with_the_path_on_or_off():
    """The same network at inference with every linear map on oneDNN or on F.linear."""
    torch.manual_seed(0)
    model = DiT(image_size=8, patch_size=2, hidden_size=32, depth=2, num_heads=4, num_classes=3, learned_variance=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    x, t, y = torch.randn(4, 1, 8, 8), torch.rand(4), torch.tensor([0, 1, 2, 3])
    outs = []
    for enabled in (True, False):
        with fast.fused_linear(enabled), torch.no_grad():
            outs.append(model.eval()(x, t, y))
    assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5 * float(outs[1].abs().max()))
