"""Classifier files are validated as model files are: metadata field by field (JSON, types, bounds),
the network's size before it is built, the dtype of every tensor against the network, finite
weights. Any file loads or is one CheckpointError line."""

import json

import attrs
import pytest
import torch
from difftk.checkpoint.classifier_file import CLASSIFIER_FIELDS, load_classifier, save_classifier
from difftk.components.hookspecs import hookimpl
from difftk.errors import CheckpointError, DifftkError
from difftk.options import option
from difftk.pipeline.spec import ComponentSpec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


@attrs.frozen
class LinearConfig:
    features: int = option(4, help="inputs", ge=1)
    num_classes: int = option(2, help="classes", ge=2)


class LinearClassifier(torch.nn.Module):
    Config = LinearConfig

    def __init__(self, config: LinearConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = torch.nn.Linear(config.features, config.num_classes)

    def forward(self, x, t):
        return self.layer(x.flatten(1))


class Plugin:
    @hookimpl
    def difftk_register_components(self, register):
        register.add_classifier("linear-test", LinearClassifier)


@pytest.fixture
def classifier_file(register_plugin, tmp_path):
    assert register_plugin(Plugin(), "linear-test")
    torch.manual_seed(0)
    net = LinearClassifier(LinearConfig())
    spec = ComponentSpec("linear-test", {"features": 4, "num_classes": 2})
    path = save_classifier(tmp_path / "c.safetensors", net, spec, schedule=ComponentSpec("linear", {"T": 50}),
                           dataset={"kind": "points", "shape": [4], "num_classes": 2}, step=3, metrics={"accuracy": 0.5})
    return path


def rewrite(path, tensors=None, **metadata):
    data = path.read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    path.write_bytes(st_save(tensors or st_load(data), metadata={k: v for k, v in {**header, **metadata}.items()
                                                                 if v is not None}))
    return path


def test_a_classifier_file_loads(classifier_file):
    net = load_classifier(classifier_file)
    assert isinstance(net, LinearClassifier) and not net.training
    assert net.schedule_spec["name"] == "linear"


BAD = {  # metadata field -> values its check refuses (a new field needs a row)
    "classifier": ["not json", "null", "[1]", '{"name": 5}', '{"name": "linear-test", "options": []}',
                   '{"name": "linear-test", "options": {"features": {"a": 1}}}', "[" * 100_000],
    "schedule": ["[]", '{"name": []}', "{"],
    "dataset": ['{"shape": [1, 65536, 65536], "kind": "image"}', "5"],
    "metrics": ['{"accuracy": "high"}', "[]"],
    "step": ["-1", "x"], "format_version": ["0", "2"], "difftk_version": ["{}"], "format": ["difftk-classifier "],
}


def test_every_classifier_field_has_bad_examples():
    assert set(BAD) == set(CLASSIFIER_FIELDS)


@pytest.mark.parametrize("field, value", [(f, v) for f, values in BAD.items() for v in values])
def test_each_field_is_checked(classifier_file, field, value):
    with pytest.raises(CheckpointError) as err:
        load_classifier(rewrite(classifier_file, **{field: value}))
    assert "\n" not in str(err.value) and (field in str(err.value) or "classifier format" in str(err.value))


def test_missing_metadata(classifier_file):
    with pytest.raises(CheckpointError, match="lacks 'classifier'"):
        load_classifier(rewrite(classifier_file, classifier=None))


def test_size_options_are_bounded_before_the_network_is_built(classifier_file):
    spec = json.dumps({"name": "linear-test", "options": {"features": 100_000, "num_classes": 100_000}})
    with pytest.raises(CheckpointError, match="cannot be built: classifier 'linear-test' with these options would hold"):
        load_classifier(rewrite(classifier_file, classifier=spec))


def test_nan_weights_are_refused(classifier_file):
    tensors = st_load(classifier_file.read_bytes())
    tensors["classifier/layer.weight"] = torch.full((2, 4), float("nan"))
    with pytest.raises(CheckpointError, match="8 of its 10 classifier weights are NaN or infinite"):
        load_classifier(rewrite(classifier_file, tensors))


def test_a_header_that_relabels_f32_as_i32_is_refused(classifier_file):
    data = classifier_file.read_bytes()
    assert data.count(b'"dtype":"F32"') == 2
    classifier_file.write_bytes(data.replace(b'"dtype":"F32"', b'"dtype":"I32"', 1))
    with pytest.raises(CheckpointError, match=r"is stored as torch.int32 \(integer\), but the network declares torch.float32"):
        load_classifier(classifier_file)


def test_float8_weights_are_checked_for_nan(classifier_file):
    tensors = st_load(classifier_file.read_bytes())
    tensors["classifier/layer.weight"] = torch.full((2, 4), float("nan")).to(torch.float8_e4m3fn)
    with pytest.raises(CheckpointError, match="8 of its 10 classifier weights are NaN"):
        load_classifier(rewrite(classifier_file, tensors))


values = st.sampled_from(["", "null", "{}", "[]", "1", '"x"', '{"name": "linear-test"}', "[" * 3000, "NaN",
                          '{"name": "linear-test", "options": {"features": -1}}', '{"accuracy": 1e999}'])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(sorted(CLASSIFIER_FIELDS)), values | st.text(max_size=12), max_size=3))
def test_fuzzed_classifier_files_load_or_are_one_line(classifier_file, changes):
    path = classifier_file.with_name("fuzz.safetensors")
    path.write_bytes(classifier_file.read_bytes())
    try:
        load_classifier(rewrite(path, **changes))
    except DifftkError as err:
        assert "\n" not in str(err)
