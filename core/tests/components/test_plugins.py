"""Plugin discovery and isolation: entry points, guards, conflicts, switches."""

from importlib import metadata

import attrs
import difftk
import pytest
from difftk.components import plugins
from difftk.components.plugins import PluginWarning
from difftk.errors import IncompatibleError, PluginError, UnknownComponentError
from difftk.options import option
from difftk.testing import plugin_host


@attrs.frozen
class ConstantSchedule:
    """A test schedule."""

    level: float = option(0.5, help="constant", gt=0, lt=1)

    def alpha_bar(self, t):
        return t * 0 + self.level

    def discretize(self, T):
        raise RuntimeError("not needed")


class GoodPlugin:
    @difftk.hookimpl
    def difftk_register_components(self, register):
        register.add_schedule("constant", ConstantSchedule)


def test_builtin_plugins_load_through_entry_points():
    eps = {ep.name for ep in metadata.entry_points(group="difftk")}
    assert {"ddpm", "ddim"} <= eps
    assert {"linear", "quadratic", "sigmoid"} <= set(difftk.available("schedule"))
    assert "ddim" in difftk.available("sampler") and "ancestral" in difftk.available("sampler")
    assert difftk.available("schedule") == sorted(difftk.available("schedule"))
    pm = difftk.plugin_manager()
    assert pm.has_plugin("ddpm") and pm.has_plugin("ddim")
    assert plugins.records()["ddpm"].version == metadata.version("difftk-ddpm")


def test_a_plugin_defined_in_a_test(register_plugin):
    assert register_plugin(GoodPlugin(), "good")
    assert "constant" in difftk.available("schedule")
    assert difftk.create("schedule", "constant", level=0.25).level == 0.25
    pipeline = difftk.compose(schedule="constant", sampler="ddim")
    assert pipeline.spec["schedule"].plugin == "good"


def test_plugins_are_gone_after_the_test():
    assert "constant" not in difftk.available("schedule")


def test_a_plugin_whose_hook_raises_is_named_and_skipped(difftk_host):
    class Broken:
        @difftk.hookimpl
        def difftk_register_components(self, register):
            register.add_schedule("half", ConstantSchedule)
            raise RuntimeError("boom")

    with pytest.warns(PluginWarning, match=r'plugin "broken" skipped: registration failed: RuntimeError: boom'):
        assert not difftk_host.register(Broken(), name="broken")
    assert difftk_host.records["broken"].status == "skipped"
    assert "half" not in difftk.available("schedule")  # nothing half-registered
    assert "linear" in difftk.available("schedule")  # the others keep working
    assert not difftk_host.pm.has_plugin("broken")


def test_a_bad_registration_is_named_and_skipped(difftk_host):
    class NotAttrs:
        pass

    class BadReg:
        @difftk.hookimpl
        def difftk_register_components(self, register):
            register.add_sampler("nope", NotAttrs)

    with pytest.warns(PluginWarning, match=r'"badreg" skipped: .*NotAttrs is neither an attrs class'):
        difftk_host.register(BadReg(), name="badreg")


def test_a_misspelt_hook_is_named_and_skipped(difftk_host):
    class Typo:
        @difftk.hookimpl
        def difftk_register_componets(self, register):
            pass

    with pytest.warns(PluginWarning, match=r'"typo" skipped: invalid hooks: .*difftk_register_componets'):
        assert not difftk_host.register(Typo(), name="typo")


def test_strict_mode_raises():
    class Broken:
        @difftk.hookimpl
        def difftk_register_components(self, register):
            raise ValueError("bad")

    with plugin_host(strict=True) as host, pytest.raises(PluginError, match='plugin "broken" skipped'):
        host.register(Broken(), name="broken")


def test_an_entry_point_that_fails_to_import(monkeypatch):
    real = metadata.entry_points

    def fake(group=None, **kw):
        eps = list(real(group=group, **kw))
        return eps + [metadata.EntryPoint("ghost", "difftk_no_such_module_xyz", group)]

    monkeypatch.setattr(plugins.metadata, "entry_points", fake)
    with pytest.warns(PluginWarning, match=r'plugin "ghost" skipped: import failed: ModuleNotFoundError'), plugin_host() as host:
        assert host.records["ghost"].status == "skipped"
        assert "linear" in difftk.available("schedule")


def test_two_plugins_registering_one_name_is_an_error_naming_both(difftk_host):
    class Other:
        @difftk.hookimpl
        def difftk_register_components(self, register):
            register.add_schedule("linear", ConstantSchedule)
            register.add_schedule("flat", ConstantSchedule)

    difftk_host.register(Other(), name="other")
    with pytest.raises(UnknownComponentError, match=r"schedule 'linear' is registered by two plugins, 'ddpm' and 'other'"):
        difftk.create("schedule", "linear")
    assert "flat" in difftk.available("schedule")  # its other components work
    assert "quadratic" in difftk.available("schedule")


@pytest.mark.parametrize("value, expected", [("", set()), ("ddpm", {"ddpm"}), ("ddim, ddpm", {"ddim", "ddpm"})])
def test_load_plugins_switch(monkeypatch, value, expected):
    monkeypatch.setenv("DIFFTK_LOAD_PLUGINS", value)
    with plugin_host() as host:
        loaded = {n for n, r in host.records.items() if r.status == "loaded"}
        assert loaded == expected


def test_block_plugins_switch(monkeypatch):
    monkeypatch.setenv("DIFFTK_BLOCK_PLUGINS", "ddim")
    with plugin_host() as host:
        assert host.records["ddim"].status == "blocked"
        assert "ddim" not in difftk.available("sampler")
        with pytest.raises(UnknownComponentError, match="unknown sampler 'ddim'"):
            difftk.create("sampler", "ddim")


def test_pipeline_check_hook_can_veto(register_plugin):
    class Veto:
        @difftk.hookimpl
        def difftk_check_pipeline(self, pipeline):
            if pipeline.spec["sampler"].name == "ancestral" and pipeline.spec["schedule"].name == "sigmoid":
                raise IncompatibleError("sampler 'ancestral' cannot run schedule 'sigmoid' (test veto)")

    register_plugin(Veto(), "veto")
    difftk.compose(schedule="sigmoid", sampler="ddim")
    with pytest.raises(IncompatibleError, match="test veto"):
        difftk.compose(schedule="sigmoid", sampler="ancestral")


def test_component_level_check(register_plugin):
    @attrs.frozen
    class PickySampler:
        """Refuses the quadratic schedule."""

        def sample(self, *a, **k):
            raise AssertionError

        def check_pipeline(self, pipeline):
            if pipeline.spec["schedule"].name == "quadratic":
                raise IncompatibleError("sampler 'picky' does not work with schedule 'quadratic': use linear")

    class P:
        @difftk.hookimpl
        def difftk_register_components(self, register):
            register.add_sampler("picky", PickySampler)

    register_plugin(P(), "picky")
    difftk.compose(schedule="linear", sampler="picky")
    with pytest.raises(IncompatibleError, match="use linear"):
        difftk.compose(schedule="quadratic", sampler="picky")
