"""The public Python surface of DESIGN.md and the pipeline spec round-trip."""

import difftk
import numpy as np
import pytest
import torch
from difftk.errors import OptionError, SpecError, UnknownComponentError
from difftk.pipeline.compose import compose_spec
from difftk.pipeline.spec import PipelineSpec
from hypothesis import given
from hypothesis import strategies as st


def test_design_surface():
    s = difftk.create("schedule", "linear")
    t = torch.rand(5)
    assert s.alpha_bar(t).shape == t.shape
    d = s.discretize(1000)
    assert d.betas.dtype == np.float64 and len(d.alphas_cumprod) == 1000
    sampler = difftk.create("sampler", "ddim", eta=0.0)
    from difftk.testing import GaussianOracle

    x = sampler.sample(GaussianOracle(s, shape=(3,)), s, torch.randn(4, 3), steps=50, cond=None, generator=None, callback=None)
    assert x.shape == (4, 3)
    p = difftk.compose(schedule="linear", sampler="ddim")
    assert p.schedule == s and p.sampler == sampler
    assert isinstance(difftk.plugin_manager().hook.difftk_register_components, object)



def test_the_earlier_names_still_work():
    """Renamed so that each name says its job (docs/architecture.md, Names); code written against the
    earlier names runs unchanged, and the alias builds what the new name builds."""
    from difftk.components.registry import ComponentInfo
    from difftk.model import Model
    from difftk.pipeline import compose as pipeline_compose
    from difftk.sampling import steps

    assert pipeline_compose.build is pipeline_compose.compose_spec
    assert pipeline_compose.build_component is pipeline_compose.create_component
    assert ComponentInfo.build is ComponentInfo.instantiate and Model.guided is Model.guided_denoiser
    assert steps.AffineSteps is steps.AffinePlan
    spec = difftk.compose(schedule="linear", sampler="ddim").spec
    assert pipeline_compose.build(spec).spec == pipeline_compose.compose_spec(spec).spec
    info = difftk.registry().get("sampler", "ddim")
    assert info.build({"eta": 0.5}) == info.instantiate({"eta": 0.5}) == difftk.create("sampler", "ddim", eta=0.5)

def test_components_are_frozen_and_validated():
    s = difftk.create("schedule", "linear")
    with pytest.raises(AttributeError):
        s.T = 10
    with pytest.raises(OptionError, match="has no option 'etta'; did you mean 'eta'"):
        difftk.create("sampler", "ddim", etta=0.1)
    with pytest.raises(OptionError, match="wrong type: expected float"):
        difftk.create("sampler", "ddim", eta="0.1")
    with pytest.raises(UnknownComponentError, match="did you mean 'ddim'"):
        difftk.create("sampler", "dddim")
    with pytest.raises(UnknownComponentError, match="unknown component kind 'schedul'; did you mean 'schedule'"):
        difftk.available("schedul")


def test_missing_components_are_all_named():
    with pytest.raises(UnknownComponentError, match=r"not installed: schedule 'laplace', guidance 'nosuch'"):
        difftk.compose(schedule="laplace", sampler="ddim", guidance="nosuch")


def test_compose_requires_schedule_and_sampler():
    with pytest.raises(OptionError, match="a pipeline needs a sampler"):
        difftk.compose(schedule="linear")
    with pytest.raises(OptionError, match="pipeline has no guidance"):
        difftk.compose(schedule="linear", sampler="ddim", options={"guidance": {"scale": "1"}})


@given(
    T=st.integers(25, 5000),
    eta=st.floats(0, 1),
    spacing=st.sampled_from(["linspace", "leading", "trailing"]),
    clip=st.one_of(st.none(), st.floats(0.1, 10)),
    schedule=st.sampled_from(["linear", "quadratic", "sigmoid"]),
)
def test_toml_round_trip(T, eta, spacing, clip, schedule):
    p = difftk.compose(schedule={"name": schedule, "options": {"T": T}}, sampler="ddim",
                       options={"sampler": {"eta": eta, "spacing": spacing, "clip_x0": clip}})
    spec = PipelineSpec.from_toml(p.to_toml())
    assert spec == p.spec
    again = compose_spec(spec)
    assert again.schedule == p.schedule and again.sampler == p.sampler
    assert PipelineSpec.from_json(p.spec.to_json()) == p.spec


def test_options_from_strings():
    p = difftk.compose(schedule="linear", sampler="ddim", options={"sampler": {"eta": "0.5", "clip_x0": "none"}, "schedule": {"T": "500"}},
                       from_strings=True)
    assert p.sampler.eta == 0.5 and p.sampler.clip_x0 is None and p.schedule.T == 500
    with pytest.raises(OptionError, match="T='5x' is not a valid int"):
        difftk.compose(schedule="linear", sampler="ddim", options={"schedule": {"T": "5x"}}, from_strings=True)


def test_spec_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[schedule\nname=1")
    with pytest.raises(SpecError, match="not valid TOML"):
        difftk.load_pipeline(bad)
    with pytest.raises(SpecError, match="no such pipeline file"):
        difftk.load_pipeline(tmp_path / "missing.toml")
    (tmp_path / "x.toml").write_text('[schedul]\nname = "linear"\n')
    with pytest.raises(SpecError, match=r"unknown section \[schedul\]"):
        difftk.load_pipeline(tmp_path / "x.toml")
    (tmp_path / "y.toml").write_text('[schedule]\nname = "laplace"\nplugin = "laplace_schedules"\nversion = "0.3"\n[sampler]\nname = "ddim"\n')
    with pytest.raises(UnknownComponentError, match="needs schedule 'laplace' from plugin 'laplace_schedules' 0.3, which is not installed"):
        difftk.load_pipeline(tmp_path / "y.toml")


def test_save_is_atomic_and_readable(tmp_path):
    p = difftk.compose(schedule="sigmoid", sampler="ancestral")
    path = p.save(tmp_path / "p.toml")
    assert difftk.load_pipeline(path).spec == p.spec
    assert [f.name for f in tmp_path.iterdir()] == ["p.toml"]  # no temporary left behind


def test_tuple_options_validate_each_item():

    net = difftk.create("denoiser", "unet-attn", base_channels=32, channel_mult=(1, 2), attention_resolutions=(14,))
    assert net.config.channel_mult == (1, 2)
    with pytest.raises(OptionError, match=r"channel_mult=0 is out of range"):
        difftk.create("denoiser", "unet-attn", channel_mult=(1, 0))
    with pytest.raises(OptionError, match="must be a list of values"):
        difftk.create("denoiser", "unet-attn", channel_mult=2)
    with pytest.raises(OptionError, match="must be a single value"):
        difftk.create("sampler", "ddim", eta=(0.1,))
