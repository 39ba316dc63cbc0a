"""Tensors read from a file are checked against the network that declares them (the kind of dtype)
and counted for NaN and ∞ in every floating dtype, float8 included."""

import pytest
import torch
from difftk.checkpoint.files import load_weights
from difftk.checkpoint.tensors import check_weight_dtypes, count_non_finite
from difftk.errors import CheckpointError
from hypothesis import given, settings
from hypothesis import strategies as st

FLOATS = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(FLOATS), st.lists(st.sampled_from([0.0, 1.5, -2.0, float("nan"), float("inf"), -float("inf")]),
                                         min_size=1, max_size=20))
def test_non_finite_values_are_counted_in_every_float_dtype(dtype, values):
    t = torch.tensor(values, dtype=torch.float64).to(dtype)
    exact = sum(not torch.isfinite(torch.tensor(v)) for v in t.to(torch.float64).tolist())
    assert count_non_finite({"w": t, "i": torch.zeros(3, dtype=torch.int64)}) == (exact, len(values) + 3)


@pytest.mark.parametrize("stored, ok", [(torch.float32, True), (torch.float16, True), (torch.float8_e4m3fn, True),
                                        (torch.int32, False), (torch.uint8, False), (torch.bool, False)])
def test_the_kind_of_dtype_must_match_the_network(stored, ok):
    net = torch.nn.Linear(2, 2)
    state = {k: v.to(stored) for k, v in net.state_dict().items()}
    if ok:
        check_weight_dtypes(net, state, source="f", what="EMA")
        load_weights(net, state, source="f", what="EMA")
    else:
        with pytest.raises(CheckpointError, match=f"f: EMA tensor 'weight' is stored as {stored}"):
            load_weights(net, state, source="f", what="EMA")
