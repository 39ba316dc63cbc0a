"""The training state of a checkpoint is checked as a whole before a resumed run applies any of
it: every hand edit is one CheckpointError line, and whatever passes the check resumes."""

import json

import difftk.testing.toys as toys
import pytest
import torch
from difftk.checkpoint.files import read_checkpoint, save_checkpoint
from difftk.checkpoint.training_state import TrainingState, check_training_state, generator_state_size
from difftk.errors import DifftkError
from difftk.training.config import TrainConfig
from difftk.training.job import train
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture
def run(register_plugin, tmp_path):
    """A 2-step run on toy images: (pipeline spec, data, data spec, run directory)."""
    assert register_plugin(toys, "toys")
    spec, data, data_spec, _ = toys.train_toy(tmp_path / "run", steps=2, batch_size=4, sample_every=0, log_every=1)
    return spec, data, data_spec, tmp_path / "run"


def edited(run, tensors=None, **metadata):
    """The run's checkpoint with tensors replaced (``None`` drops one) and metadata changed, read back."""
    path = run[3] / "checkpoint.safetensors"
    ckpt = read_checkpoint(path)
    new = {k: v for k, v in {**ckpt.tensors, **(tensors or {})}.items() if v is not None}
    meta = {k: v for k, v in {**ckpt.metadata, **metadata}.items() if k not in ("format", "format_version")}
    save_checkpoint(path, new, meta, replaces="run")
    return read_checkpoint(path)


def test_a_run_checkpoint_passes(run):
    state = check_training_state(read_checkpoint(run[3]), data_size=64)
    assert isinstance(state, TrainingState) and state.step == 2
    assert state.rng["torch"].numel() == generator_state_size() and state.data_order == {"epoch": 0, "position": 8}
    assert state.optimizer["param_groups"][0]["params"] == list(range(len(state.optimizer["param_groups"][0]["params"])))


CASES = [  # (tensors, metadata, what the line says): the issue's cases first
    ({}, {"data_order": '{"position": "x"}'}, "metadata 'data_order'"),
    ({}, {"data_order": "[]"}, "metadata 'data_order' is list"),
    ({}, {"data_order": '{"epoch": 0, "position": -1}'}, "metadata 'data_order' entry 'position'"),
    ({"rng/torch": torch.zeros(10, dtype=torch.uint8)}, {}, "rng/torch holds 10 bytes"),
    ({"rng/noise": torch.zeros(10, dtype=torch.uint8)}, {}, "rng/noise holds 10 bytes"),
    ({"rng/data": torch.zeros(5056)}, {}, "rng/data is a torch.float32 tensor"),
    ({}, {"optimizer": '{"param_groups": "x"}'}, "optimizer.param_groups is 'x'"),
    ({}, {"optimizer": '{"param_groups": [1, 2]}'}, "optimizer.param_groups is '\\[1, 2\\]'"),
    ({}, {"data_order": '{"epoch": 0, "position": 65}'}, "past the 64 examples"),
    ({"rng/noise": None}, {}, "lacks RNG states"),
    ({"optim/99/exp_avg": torch.zeros(1)}, {}, "tensor optim/99/exp_avg is not named"),
    ({}, {"optimizer": '{"param_groups": [{"params": [0, 0]}]}'}, "repeats a parameter index"),
    ({}, {"optimizer": '{"param_groups": [{"params": [0], "lr": "fast"}]}'}, "param_groups\\[0\\].lr"),
    ({"model/net.0.weight": torch.full((16, 2), float("nan"))}, {}, "model weights are NaN"),
    ({}, {"contents": "ema"}, "exported for sampling"),
]


def restore(out, good):
    save_checkpoint(out / "checkpoint.safetensors", good.tensors,
                    {k: v for k, v in good.metadata.items() if k not in ("format", "format_version")}, replaces="run")


def test_every_hand_edit_is_one_line(run):
    good = read_checkpoint(run[3])
    for tensors, metadata, said in CASES:
        if "model/net.0.weight" in tensors:
            shape = read_checkpoint(run[3]).tensors.get("model/net.0.weight")
            assert shape is not None, "the toy network's first layer was renamed: update the case"
            tensors = {"model/net.0.weight": torch.full(shape.shape, float("nan"))}
        with pytest.raises(DifftkError, match=said) as err:  # at reading (the metadata table) or in the check
            check_training_state(edited(run, tensors, **metadata), data_size=64)
        assert "\n" not in str(err.value)
        restore(run[3], good)


def test_resume_refuses_the_issue_cases_in_one_line(run):
    spec, data, data_spec, out = run
    good = read_checkpoint(out)
    for tensors, metadata, said in CASES[:8]:
        with pytest.raises(DifftkError, match=said):
            edited(run, tensors, **metadata)
            train(spec, data, TrainConfig(steps=3, batch_size=4, sample_every=0), out=out, resume=True,
                  dataset_spec=data_spec)
        restore(out, good)


rng_edits = st.sampled_from(["torch", "data", "noise"]).flatmap(lambda key: st.tuples(
    st.just(f"rng/{key}"),
    st.sampled_from([torch.uint8, torch.float32, torch.int64]),
    st.sampled_from([0, 10, generator_state_size()])))
metadata_edits = st.tuples(st.sampled_from(["optimizer", "data_order"]), st.recursive(
    st.none() | st.integers(-2, 70) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(
        st.sampled_from(["param_groups", "params", "scalars", "epoch", "position", "lr"]), inner, max_size=3),
    max_leaves=6).map(json.dumps))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(rng_edits | metadata_edits, min_size=1, max_size=2))
def test_fuzzed_state_is_refused_in_one_line_or_resumes(run, edits):
    spec, data, data_spec, out = run
    tensors, metadata = {}, {}
    for key, *what in edits:
        if key.startswith("rng/"):
            dtype, size = what
            tensors[key] = torch.zeros(size, dtype=dtype)
        else:
            metadata[key] = what[0]
    good = read_checkpoint(out)
    try:
        ckpt = edited(run, tensors, **metadata)
        check_training_state(ckpt, data_size=64)
    except DifftkError as err:
        assert "\n" not in str(err)
    else:  # what the check passes, a resumed run applies without a traceback
        train(spec, data, TrainConfig(steps=3, batch_size=4, sample_every=0), out=out, resume=True,
              dataset_spec=data_spec, checkpoint=ckpt)
    finally:
        restore(out, good)
