"""A protocol miss seen from the command line: one warning, and the CLI keeps working."""

import attrs
import difftk
import pytest
from difftk.components.plugins import PluginWarning
from difftk_cli.testing import run


@attrs.frozen
class NoSample:
    """A sampler without its one method."""


class Plugin:
    @difftk.hookimpl
    def difftk_register_components(self, register):
        register.add("sampler", "candidate", NoSample)


def test_the_cli_shows_a_protocol_miss_as_one_warning_and_keeps_working(difftk_host):
    with pytest.warns(PluginWarning, match="cannot be registered"):
        difftk_host.register(Plugin(), name="thirdparty")
    result = run("plugins")
    assert result.exit_code == 0 and "thirdparty" in result.stdout and "skipped" in result.stdout
