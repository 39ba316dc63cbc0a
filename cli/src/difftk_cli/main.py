"""`difftk`: the command group. Each command lives in its own module under ``commands``."""

from __future__ import annotations

import os
import sys

import click
import difftk

from difftk_cli.commands.compare import compare
from difftk_cli.commands.compose import compose
from difftk_cli.commands.evaluate import evaluate
from difftk_cli.commands.export import export
from difftk_cli.commands.new_plugin import new_plugin
from difftk_cli.commands.plot import plot
from difftk_cli.commands.plugins import plugins
from difftk_cli.commands.sample import sample
from difftk_cli.commands.schedules import schedules
from difftk_cli.commands.train import train
from difftk_cli.commands.train_classifier import train_classifier_command
from difftk_cli.console import Group, show_plugin_warnings


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(difftk.__version__, "--version", prog_name="difftk")
@click.option("--strict-plugins", is_flag=True, help="Fail when a plugin cannot be loaded instead of skipping it.")
def cli(strict_plugins: bool) -> None:
    """difftk: diffusion models from swappable parts.

    Every schedule, denoiser, objective, sampler and guidance comes from a plugin;
    `difftk plugins` lists them and `difftk compose` assembles a pipeline.
    """
    if strict_plugins:
        os.environ["DIFFTK_STRICT_PLUGINS"] = "1"
        from difftk.components import plugins as _plugins

        _plugins.reset()


cli.add_command(plugins)
cli.add_command(compose)
cli.add_command(train)
cli.add_command(sample)
cli.add_command(evaluate)
cli.add_command(compare)
cli.add_command(plot)
cli.add_command(schedules)
cli.add_command(export)
cli.add_command(train_classifier_command)
cli.add_command(new_plugin)


def main() -> None:
    """The ``difftk`` entry point: every error, click's own included, is one ``error:`` line
    (:class:`~difftk_cli.console.Group`)."""
    try:
        show_plugin_warnings()
    except KeyboardInterrupt:
        sys.exit(130)
    cli(prog_name="difftk")
