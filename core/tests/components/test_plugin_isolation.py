"""A third party's plugin fails alone (issue 31, item 11): installed as a real distribution (a
dist-info with its entry point, found by importlib.metadata as pip's would be), it may exit, hang or
raise at import, raise in difftk_load_model, or sample garbage; each is one line naming it."""

import importlib
import textwrap
import time
import warnings

import attrs
import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.components.plugins import PluginHost, PluginWarning, env_switch
from difftk.errors import CheckpointError, PluginError
from difftk.testing import plugin_host

#: plugin module: what is wrong with it
THIRD_PARTY = {
    "exits_at_import": "import sys\nsys.exit(0)\n",
    "hangs_at_import": "import threading\nthreading.Event().wait(30)\n",
    "fails_to_load": textwrap.dedent('''
        import difftk

        @difftk.hookimpl
        def difftk_load_model(source, device):
            raise ValueError("the plugin's own bug")
    '''),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder holding the three plugins as installed distributions (module + dist-info)."""
    root = tmp_path_factory.mktemp("site")
    for name, text in THIRD_PARTY.items():
        (root / f"{name}.py").write_text(text)
        info = root / f"{name}-0.0.1.dist-info"  # the wheel spelling: "-" only before the version
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text(f"[difftk]\n{name} = {name}\n")
    return root


@pytest.fixture
def installed(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setenv("DIFFTK_PLUGIN_TIMEOUT", "1")
    return site


def test_exit_hang_and_raise_at_import_are_each_one_line_and_the_rest_load(installed):
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        host = PluginHost(strict=False)
        host.load_entry_points()
    said = {str(w.message) for w in caught if issubclass(w.category, PluginWarning)}
    assert time.monotonic() - start < 20  # the hanging import is given 1 s, not forever
    assert 'plugin "exits_at_import" skipped: import failed: SystemExit(0) at import' in said
    assert any(s.startswith('plugin "hangs_at_import" skipped: its import did not finish in 1 s')
               and "DIFFTK_BLOCK_PLUGINS=hangs_at_import" in s for s in said)
    assert host.records["fails_to_load"].status == "loaded"
    assert host.records["ddim"].status == "loaded"  # everyone else is unaffected
    assert "ddim" in host.registry.names("sampler")


def test_a_plugin_whose_load_model_raises_does_not_take_other_paths_down(installed, tmp_path):
    """The path's own error stands, and the plugin that failed to read it is named in the same line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the plugins that exit and hang at import are the test above
        with plugin_host():
            with pytest.raises(CheckpointError) as err:
                difftk.load(tmp_path / "nope.safetensors")
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "nope.safetensors"))
    assert 'plugin "fails_to_load" failed in difftk_load_model: ValueError: the plugin\'s own bug' in message
    assert "DIFFTK_BLOCK_PLUGINS=fails_to_load leaves it out" in message


@pytest.mark.parametrize("value, strict", [("1", True), ("true", True), ("YES", True), ("on", True), ("", False),
                                           ("0", False), ("false", False), ("no", False), ("Off", False)])
def test_the_strict_switch_reads_yes_and_no(monkeypatch, value, strict):
    monkeypatch.setenv("DIFFTK_STRICT_PLUGINS", value)
    assert env_switch("DIFFTK_STRICT_PLUGINS") is strict


def test_a_strict_switch_that_is_neither_says_so_and_is_off(monkeypatch):
    monkeypatch.setenv("DIFFTK_STRICT_PLUGINS", "maybe")
    with pytest.warns(PluginWarning, match="neither on .* nor off .*: taken as off"):
        assert env_switch("DIFFTK_STRICT_PLUGINS") is False


@attrs.frozen
class BadSampler:
    """A third party's sampler gone wrong in one of four ways."""

    way: str = "raise"

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None, callback=None):
        if self.way == "raise":
            raise ZeroDivisionError("division by zero in its step")
        if self.way == "none":
            return None
        if self.way == "nan":
            return torch.full_like(x_T, float("nan"))
        return x_T[:, :1]  # the wrong shape


class BadSamplerPlugin:
    @difftk.hookimpl
    def difftk_register_components(self, register):
        register.add_sampler("bad", BadSampler)


@pytest.mark.parametrize("way, said", [
    ("raise", "failed while sampling: ZeroDivisionError: division by zero in its step"),
    ("none", "returned NoneType, not a tensor of samples: nothing was written"),
    ("nan", "returned 16 NaN or infinite values of 16 in batch 0: nothing was written"),
    ("shape", "returned samples of shape [2, 1] for a batch of [2, 2]: nothing was written"),
])
def test_a_sampler_that_fails_is_one_line_naming_it(register_plugin, way, said):
    assert register_plugin(toys, "toys") and register_plugin(BadSamplerPlugin(), "bad_samplers")
    pipeline = difftk.compose(schedule={"name": "linear", "options": {"T": 50}}, sampler={"name": "bad", "options": {"way": way}},
                              denoiser="tiny", objective="simple")
    model = difftk.Model(pipeline=pipeline, denoiser=pipeline.denoiser, data={"shape": [2], "kind": "points"})
    n = 8 if way == "nan" else 2
    with pytest.raises(PluginError) as err:
        model.sample(n, steps=2)
    assert str(err.value).startswith("sampler 'bad' (plugin bad_samplers) ")
    assert said in str(err.value) and "\n" not in str(err.value)

