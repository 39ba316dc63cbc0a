"""pytest fixtures for difftk plugin authors (loaded automatically through ``pytest11``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def difftk_host():
    """A fresh plugin host with the installed plugins loaded, restored after the test."""
    from difftk.testing import plugin_host

    with plugin_host() as host:
        yield host


@pytest.fixture
def register_plugin(difftk_host):
    """``register_plugin(obj, name)`` registers a plugin defined in the test; returns whether it loaded."""

    def register(plugin, name: str) -> bool:
        return difftk_host.register(plugin, name=name)

    return register
