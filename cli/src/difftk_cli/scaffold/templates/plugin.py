"""Entry point of difftk-my-plugin: difftk finds this module through the `difftk` entry-point group."""

import difftk

from difftk_my_plugin.component import MyPluginComponent


@difftk.hookimpl
def difftk_register_components(register):
    register.add_component("my-plugin", MyPluginComponent)
