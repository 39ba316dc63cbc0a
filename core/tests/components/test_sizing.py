"""What a network's options ask for is bounded before anything is allocated: every component is
built by one path (the registry), which first builds a network on the meta device and counts it."""

import attrs
import difftk
import pytest
import torch
from difftk.components import sizing
from difftk.components.hookspecs import hookimpl
from difftk.errors import OptionError
from difftk.options import option

#: the device of the first parameter of every Wide network built, in order
BUILT: list[str] = []


@attrs.frozen
class WideConfig:
    width: int = option(8, help="features of the square layer", ge=1)


class Wide(torch.nn.Module):
    """A denoiser of width² weights: width = 100,000 asks for 40 GB."""

    Config = WideConfig

    def __init__(self, config: WideConfig) -> None:
        super().__init__()
        self.config, self.prediction = config, "eps"
        self.layer = torch.nn.Linear(config.width, config.width)
        BUILT.append(self.layer.weight.device.type)

    def forward(self, x, t, cond=None):
        return x


class WidePlugin:
    @hookimpl
    def difftk_register_components(self, register):
        register.add_denoiser("wide", Wide)


@pytest.fixture
def wide(register_plugin):
    assert register_plugin(WidePlugin(), "wide")
    BUILT.clear()
    sizing._SIZES.clear()


def test_a_huge_network_is_refused_on_the_meta_device(wide):
    with pytest.raises(OptionError, match=r"denoiser 'wide' with these options would hold 10,000,100,000 parameters"):
        difftk.create("denoiser", "wide", width=100_000)
    assert BUILT == ["meta"]  # counted without storage; the real build never ran


def test_a_network_within_the_bound_is_built_once_for_real(wide):
    net = difftk.create("denoiser", "wide", width=4)
    assert BUILT == ["meta", "cpu"] and net.layer.weight.device.type == "cpu"
    difftk.create("denoiser", "wide", width=4)
    assert BUILT == ["meta", "cpu", "cpu"]  # the same options are counted once


def test_the_bound_is_the_count_of_parameters_and_buffers(wide, monkeypatch):
    monkeypatch.setattr(sizing, "MAX_PARAMETERS", 4 * 4 + 4)
    difftk.create("denoiser", "wide", width=4)  # 20 parameters: at the bound
    with pytest.raises(OptionError, match="would hold 30 parameters"):
        difftk.create("denoiser", "wide", width=5)
