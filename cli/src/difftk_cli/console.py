"""Terminal output shared by the commands: one rich console per stream, one-line errors."""

from __future__ import annotations

import sys
import warnings

import click
from difftk.errors import DifftkError
from rich.console import Console
from rich.markup import escape

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

#: exit status of an error the user can fix (bad name, option, file)
USER_ERROR = 2


def fail(message: str) -> None:
    """Print ``error: message`` on one line to stderr and exit with :data:`USER_ERROR`."""
    err.print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(USER_ERROR)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}")


class Group(click.Group):
    """A click group whose commands report every :class:`DifftkError` as one line, and whose own
    parsing errors (an unknown command, a bad group option) use the same ``error:`` line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            fail(f"{e.format_message()} (see `{e.ctx.command_path if e.ctx else 'difftk'} --help`)")
        except click.ClickException as e:
            fail(e.format_message())
        except (click.Abort, KeyboardInterrupt):  # Ctrl-C while plugins load or before a command runs
            err.print("[yellow]interrupted[/]")
            sys.exit(130)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DifftkError as e:
            fail(str(e))
        except click.UsageError as e:  # a bad or missing option of a command: one line too
            fail(f"{e.format_message()} (see `{e.ctx.command_path if e.ctx else 'difftk'} --help`)")
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            sys.exit(130)


def show_plugin_warnings() -> None:
    """Print a skipped plugin as one yellow line instead of Python's two-line warning."""
    from difftk.plugins import PluginWarning

    original = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, PluginWarning):
            warn(str(message))
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
