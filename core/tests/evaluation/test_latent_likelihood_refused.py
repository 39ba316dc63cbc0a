"""A likelihood metric (bits/dim of the data, a class with ``likelihood = True``) is refused for a latent
model before any work: the likelihood of latents is not bits/dim of the images. Other metrics, and
likelihoods of pixel-space models, go through."""

from typing import ClassVar

import attrs
import difftk
import difftk.testing.toys as toys
import pytest
from difftk.data.pipeline_data import load_dataset
from difftk.errors import IncompatibleError
from difftk.evaluation.compare import compare, context_for, measure
from difftk.evaluation.context import MetricResult, refuse_unmeasurable
from difftk.training.config import TrainConfig
from difftk.training.job import train

CALLS: list[str] = []


@attrs.frozen
class ToyBits:
    """A likelihood metric that records being run."""

    likelihood: ClassVar[bool] = True

    def evaluate(self, context):
        CALLS.append("toy-bits")
        return MetricResult("toy-bits", 1.0, 0.0, n=1)


@attrs.frozen
class ToyCount:
    """A metric of samples that records being run."""

    def evaluate(self, context):
        CALLS.append("toy-count")
        return MetricResult("toy-count", 1.0, 0.0, n=1)


class Metrics:
    @difftk.hookimpl
    def difftk_register_components(self, register):
        register.add_metric("toy-bits", ToyBits)
        register.add_metric("toy-count", ToyCount)


@pytest.fixture
def plugins(register_plugin):
    assert register_plugin(toys, "toys") and register_plugin(Metrics(), "toy-metrics")
    CALLS.clear()


def spec(latent: bool):
    first = {"autoencoder": {"name": "blocks", "options": {"factor": 2}}} if latent else {}
    return toys.toy_spec(**first)


def config(**overrides):
    return TrainConfig(**{"steps": 2, "batch_size": 4, "checkpoint_every": 100, "sample_every": 0, **overrides})


def test_only_likelihoods_of_latent_models_are_refused(plugins):
    refuse_unmeasurable(["toy-bits", "toy-count"], latent=False)
    refuse_unmeasurable(["toy-count"], latent=True)
    with pytest.raises(IncompatibleError, match="metric 'toy-bits' is a likelihood of the images .* latents of an autoencoder"):
        refuse_unmeasurable(["toy-count", "toy-bits"], latent=True)


def test_a_latent_run_measuring_a_likelihood_stops_before_its_first_step(plugins, tmp_path):
    with pytest.raises(IncompatibleError, match="metric 'toy-bits' is a likelihood"):
        train(spec(True), load_dataset("toy-images")[0], config(eval_every=1, eval_metrics=("toy-bits",)),
              out=tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists() and CALLS == []


def test_measuring_a_latent_model_refuses_the_likelihood_and_runs_the_rest(plugins, tmp_path):
    data = load_dataset("toy-images")[0]
    train(spec(True), data, config(), out=tmp_path / "latent")
    train(spec(False), data, config(), out=tmp_path / "pixels")
    latent = difftk.load(tmp_path / "latent")
    with pytest.raises(IncompatibleError, match="metric 'toy-bits'"):
        measure("toy-bits", {}, context_for(latent, None))
    assert CALLS == []
    measure("toy-count", {}, context_for(latent, None))
    measure("toy-bits", {}, context_for(difftk.load(tmp_path / "pixels"), None))
    assert CALLS == ["toy-count", "toy-bits"]
    CALLS.clear()
    with pytest.raises(IncompatibleError, match="metric 'toy-bits'"):  # the latent checkpoint second: no cell runs
        compare([str(tmp_path / "pixels"), str(tmp_path / "latent")], ["toy-count", "toy-bits"])
    assert CALLS == []
