"""Run the tests from a checkout too: when the plugin is not installed (its entry point is not
found), register it from ../src with a host of its own, exactly as its entry point would be."""

import sys
from pathlib import Path

import difftk
import pytest
from difftk.testing import plugin_host


@pytest.fixture(scope="session", autouse=True)
def laplace_schedule_plugin():
    if difftk.plugin_manager().has_plugin("laplace_schedule"):  # installed: found through its entry point
        yield
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from difftk_laplace_schedule import plugin

    with plugin_host() as host:
        assert host.register(plugin, name="laplace_schedule")
        yield
