"""A checkpoint's metadata is untrusted: every field of the tables is bounded in size and depth and
checked, and any header, however hostile, reads as a checkpoint or as one CheckpointError line."""

import json
import struct

import pytest
import torch
from difftk.checkpoint.files import read_checkpoint, save_checkpoint
from difftk.checkpoint.metadata import CHECKPOINT_FIELDS, DATASET_FIELDS, MAX_EXAMPLE_ELEMENTS
from difftk.errors import CheckpointError, DifftkError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

PIPELINE = {"difftk": {"format": 1}, "schedule": {"name": "linear", "options": {"T": 50}},
            "sampler": {"name": "ddim", "options": {}}, "denoiser": {"name": "tiny", "options": {"hidden": 16}}}
DATASET = {"name": "toy-images", "kind": "image", "shape": [1, 8, 8], "size": 64, "num_classes": 2,
           "class_names": ["a", "b"], "plugin": "toys", "fingerprint": "f00d", "options": {"n": 64}}
#: metadata a run writes (the header's string values)
METADATA = {
    "difftk_version": "0.1.0", "pipeline": json.dumps(PIPELINE), "plugins": json.dumps({"ddpm": "0.1.0"}),
    "step": "4", "train_config": json.dumps({"steps": 4, "seed": 1, "eval_metrics": []}),
    "dataset": json.dumps(DATASET), "optimizer": json.dumps({"param_groups": [{"params": [0], "lr": 1e-3}]}),
    "data_order": json.dumps({"epoch": 0, "position": 16}),
}
TENSORS = {"ema/w": torch.zeros(2)}


def write(path, **changes):
    save_checkpoint(path, TENSORS, {**METADATA, **changes})
    return path


def test_the_baseline_reads(tmp_path):
    ckpt = read_checkpoint(write(tmp_path / "c.safetensors"))
    assert ckpt.step == 4 and ckpt.dataset == DATASET and ckpt.json("data_order") == {"epoch": 0, "position": 16}


#: for every dataset field, values its check must refuse (a new field needs a row here)
BAD_DATASET = {
    "kind": ["video", 3], "shape": [[1, 65536, 65536], [0, 8, 8], "8x8", [1.5, 8, 8], [], [1, 2, 3, 4]],
    "size": [-1, 2 ** 60, "64"], "num_classes": [True, -2, 10 ** 9], "class_names": [[1], "ab", [["a"]]],
    "bounds": [[0, 1, 2], ["a", 0, 0, 0]], "name": [5, "x" * 300], "plugin": [None, 5],
    "fingerprint": [{}, 1], "options": [[], {"k": {"deep": 1}}],
}


def test_every_dataset_field_has_bad_examples():
    assert set(BAD_DATASET) == set(DATASET_FIELDS)


@pytest.mark.parametrize("key, value", [(k, v) for k, values in BAD_DATASET.items() for v in values])
def test_each_dataset_field_is_checked(tmp_path, key, value):
    path = write(tmp_path / "c.safetensors", dataset=json.dumps({**DATASET, key: value}))
    with pytest.raises(CheckpointError, match=rf"metadata 'dataset' has dataset\.{key} that "):
        read_checkpoint(path)


def test_the_size_of_an_example_is_bounded_before_anything_allocates(tmp_path):
    path = write(tmp_path / "c.safetensors", dataset=json.dumps({**DATASET, "shape": [1, 65536, 65536]}))
    with pytest.raises(CheckpointError, match=f"at most {MAX_EXAMPLE_ELEMENTS:,} are allowed"):
        read_checkpoint(path)


@pytest.mark.parametrize("key", sorted(set(CHECKPOINT_FIELDS) - {"format"}))  # another format: not a checkpoint
@pytest.mark.parametrize("bad", ["[" * 100_000, "x" * 70_000, '[1, "a"]'])
def test_each_header_field_is_bounded_and_checked(tmp_path, key, bad):
    path = write(tmp_path / "c.safetensors", **{key: bad})
    with pytest.raises(CheckpointError, match=f"metadata '{key}' ") as err:
        read_checkpoint(path).json(key)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("field, value, said", [
    ("step", "-1", "metadata 'step' is -1"), ("step", "1e3", "expected a whole number"),
    ("format_version", "0", "'format_version' is 0"), ("data_order", '{"position": "x"}', "'data_order' entry"),
    ("data_order", "[]", "not an object"), ("data_order", '{"epoch": 0, "position": -1}', "'data_order' entry"),
    ("plugins", '{"ddpm": 1}', "'plugins' entry 'ddpm'"), ("train_config", '{"seed": {"a": 1}}', "'train_config'"),
    ("pipeline", '{"difftk": 1, "schedule": {"name": "linear"}}', "difftk = 1 must be a section"),
    ("pipeline", '{"difftk": {"format": "1"}}', "format = '1' is not a whole number"),
])
def test_hand_edited_values(tmp_path, field, value, said):
    with pytest.raises(CheckpointError, match=said):
        read_checkpoint(write(tmp_path / "c.safetensors", **{field: value})).json(field)


def raw_file(path, header: bytes, body: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + body)
    return path


def test_a_deep_safetensors_header_is_one_line(tmp_path):
    path = raw_file(tmp_path / "deep.safetensors", b'{"__metadata__": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(CheckpointError, match="the header is nested more than"):
        read_checkpoint(path)


json_text = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                         max_leaves=8).map(json.dumps)
field_values = json_text | st.text(max_size=30) | st.sampled_from(["[" * 5000, '{"a": NaN}', "1e999", "-4", "0"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(sorted(CHECKPOINT_FIELDS) + ["other"]), field_values, max_size=4),
       drop=st.sets(st.sampled_from(sorted(METADATA)), max_size=2))
@example(changes={"dataset": json.dumps({**DATASET, "shape": [1, 65536, 65536]})}, drop=set())
def test_fuzzed_metadata_reads_or_is_one_line(tmp_path, changes, drop):
    metadata = {k: v for k, v in {**METADATA, **changes}.items() if k not in drop}
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(st_save(TENSORS, metadata={"format": "difftk-checkpoint", "format_version": "1", **metadata}))
    try:
        ckpt = read_checkpoint(path)
        for key in ("optimizer", "data_order"):
            ckpt.json(key)
    except DifftkError as err:
        assert "\n" not in str(err) and str(path) in str(err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64) | json_text.map(str.encode) | st.dictionaries(
    st.just("__metadata__"), st.dictionaries(st.text(max_size=4), json_text | st.integers(), max_size=3)
).map(lambda h: json.dumps(h).encode()))
def test_fuzzed_headers_are_one_line(tmp_path, header):
    path = raw_file(tmp_path / "h.safetensors", header)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert "\n" not in str(err.value)


@pytest.fixture
def toy_run(register_plugin, tmp_path):
    """The checkpoint of a 1-step run of the tiny denoiser on toy images."""
    import difftk.testing.toys as toys

    assert register_plugin(toys, "toys")
    return toys.train_toy(tmp_path / "run", steps=1, batch_size=4, sample_every=0)[3].checkpoint


option_values = st.none() | st.booleans() | st.integers(-1, 64) | st.floats() | st.text(max_size=3) | st.lists(
    st.integers(-1, 4), max_size=3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(denoiser=st.dictionaries(st.sampled_from(["hidden", "in_channels", "num_classes", "prediction", "nope"]),
                                option_values, max_size=2),
       dataset=st.dictionaries(st.sampled_from(sorted(DATASET_FIELDS)), option_values, max_size=2))
@example(denoiser={"hidden": 10 ** 10}, dataset={})  # 50 billion weights: refused before allocating
@example(denoiser={}, dataset={"shape": [1, 65536, 65536]})
def test_a_fuzzed_checkpoint_loads_and_samples_or_is_one_line(toy_run, denoiser, dataset):
    import difftk

    ckpt = read_checkpoint(toy_run)
    pipeline = json.loads(ckpt.metadata["pipeline"])
    pipeline["denoiser"]["options"].update(denoiser)
    meta = {k: v for k, v in ckpt.metadata.items() if k not in ("format", "format_version")}
    meta.update(pipeline=json.dumps(pipeline), dataset=json.dumps({**ckpt.dataset, **dataset}))
    path = save_checkpoint(toy_run.with_name("fuzzed.safetensors"), ckpt.tensors, meta, replaces="run")
    try:
        model = difftk.load(path)
        x = model.sample(2, steps=2, labels=[0, 1] if model.num_classes else None)
    except DifftkError as err:
        assert "\n" not in str(err)
    else:
        assert x.shape == (2, *model.data_shape) and torch.isfinite(x).all()


def test_parsed_values_are_checked_by_the_same_rows():
    from difftk.checkpoint.metadata import check_metadata

    check_metadata("c", DATASET, {"seed": 1}, {"ddpm": "0.1.0"})
    with pytest.raises(CheckpointError, match="c: metadata 'dataset' has dataset.kind that is 'video'"):
        check_metadata("c", {**DATASET, "kind": "video"}, {}, {})
