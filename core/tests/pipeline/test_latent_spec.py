"""An autoencoder in a pipeline: composed by name with options, checked, stored in TOML and built back."""

import difftk
import difftk.testing.toys as toys
import pytest
from difftk.pipeline.compose import build
from difftk.pipeline.spec import PIPELINE_KINDS, PipelineSpec


@pytest.fixture
def toy(register_plugin):
    assert register_plugin(toys, "toys")


def latent_pipeline(**options):
    return difftk.compose(
        schedule={"name": "linear", "options": {"T": 50}},
        sampler="ddim",
        denoiser="tiny",
        objective="simple",
        autoencoder="blocks",
        options={"autoencoder": options} if options else None,
        from_strings=True,
    )


def test_the_autoencoder_is_a_part_of_the_pipeline_and_its_toml(toy):
    pipeline = latent_pipeline(factor="4", scale="0.5")
    assert "autoencoder" in PIPELINE_KINDS and pipeline.autoencoder.config.factor == 4
    assert pipeline.spec["autoencoder"].options_dict == {"factor": 4, "scale": 0.5, "shift": 0.25}
    assert pipeline.spec["autoencoder"].plugin == "toys"
    text = pipeline.to_toml()
    assert "[autoencoder]" in text and 'name = "blocks"' in text
    again = PipelineSpec.from_toml(text)
    assert again == pipeline.spec
    rebuilt = build(again)
    assert rebuilt.autoencoder.config == pipeline.autoencoder.config and not rebuilt.autoencoder.training


def test_a_pipeline_without_an_autoencoder_has_none(toy):
    pipeline = difftk.compose(schedule={"name": "linear", "options": {"T": 50}}, sampler="ddim")
    assert pipeline.autoencoder is None and "autoencoder" not in pipeline.spec


def test_a_wrong_autoencoder_name_or_option_is_one_line(toy):
    with pytest.raises(difftk.UnknownComponentError, match="unknown autoencoder 'blok'.*did you mean 'blocks'"):
        difftk.compose(schedule="linear", sampler="ddim", autoencoder="blok")
    with pytest.raises(difftk.OptionError, match="autoencoder 'blocks' has no option 'facter'.*did you mean 'factor'"):
        latent_pipeline(facter="2")
    with pytest.raises(difftk.OptionError, match="but the pipeline has no autoencoder"):
        difftk.compose(schedule="linear", sampler="ddim", options={"autoencoder": {"factor": 2}})
