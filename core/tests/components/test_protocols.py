"""Protocols do work: a component is checked against its kind's protocol when a plugin registers it."""

import attrs
import difftk
import pytest
import torch
from difftk.components.plugins import PluginWarning
from difftk.components.protocols import PROTOCOLS, protocol_problem
from difftk.components.registry import KINDS
from difftk.errors import PluginError
from difftk.testing import plugin_host


def plugin_with(kind: str, cls: type):
    class Plugin:
        @difftk.hookimpl
        def difftk_register_components(self, register):
            register.add(kind, "candidate", cls)

    return Plugin()


@attrs.frozen
class NoSample:
    """A sampler without its one method."""


@attrs.frozen
class NoCallback:
    """A sampler whose sample() cannot take the callback every caller passes."""

    def sample(self, denoiser, schedule, x_T, steps=None, cond=None, generator=None):
        return x_T


@attrs.frozen
class NeedsMore:
    """A sampler whose sample() requires an argument no caller gives."""

    def sample(self, denoiser, schedule, x_T, temperature, steps=None, cond=None, generator=None, callback=None):
        return x_T


@attrs.frozen
class TakesKeywords:
    """A sampler that takes everything through **kwargs: callers' keywords reach it."""

    def sample(self, denoiser, schedule, x_T, **kwargs):
        return x_T


class NoForward(torch.nn.Module):
    """A denoiser that never says how it is called."""

    @attrs.frozen
    class Config:
        prediction: str = "eps"

    def __init__(self, config):
        super().__init__()


@pytest.mark.parametrize(("kind", "cls", "why"), [
    ("sampler", NoSample, r"it has no method sample\(denoiser, schedule, x_T, steps=None, cond=None, generator=None, "
                          r"callback=None\) \(Sampler protocol\)"),
    ("sampler", NoCallback, r"its sample\(\) has no keyword parameter 'callback'"),
    ("sampler", NeedsMore, r"its sample\(\) requires temperature, which the Sampler protocol never passes"),
    ("denoiser", NoForward, r"it has no method forward\(x_t, t, cond=None\) \(Denoiser protocol\)"),
    ("schedule", NoSample, r"it has no method alpha_bar\(t\) \(NoiseSchedule protocol\)"),
    ("metric", NoSample, r"it has no method evaluate\(context\) \(Metric protocol\)"),
])
def test_a_component_missing_its_protocol_is_one_line_naming_the_plugin(difftk_host, kind, cls, why):
    with pytest.warns(PluginWarning) as caught:
        assert not difftk_host.register(plugin_with(kind, cls), name="thirdparty")
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f'plugin "thirdparty" skipped: registration failed: {kind} \'candidate\' '
                              f"({cls.__qualname__}) cannot be registered: ")
    assert "\n" not in message
    import re
    assert re.search(why, message), message
    assert "candidate" not in difftk.available(kind)


def test_keywords_through_kwargs_are_accepted(difftk_host):
    assert protocol_problem("sampler", TakesKeywords) is None
    assert difftk_host.register(plugin_with("sampler", TakesKeywords), name="kw")
    assert "candidate" in difftk.available("sampler")


def test_strict_mode_makes_a_protocol_miss_an_error():
    with plugin_host(strict=True) as host, pytest.raises(PluginError, match="has no method sample"):
        host.register(plugin_with("sampler", NoSample), name="thirdparty")


def test_every_shipped_component_keeps_its_protocol():
    assert set(PROTOCOLS) == set(KINDS)
    for info in difftk.registry():
        assert protocol_problem(info.kind, info.cls) is None, (info.kind, info.name)
