"""Terminal output shared by the commands: one rich console per stream, one-line errors."""

from __future__ import annotations

import os
import re
import sys
import warnings

import click
from difftk.errors import DifftkError
from difftk.runtime.distributed import leave_error
from rich.console import Console
from rich.markup import escape

#: output that is not a terminal (a file, a pipe) is not cut to 80 columns: tables keep their full rows
WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 10_000
#: no emoji codes: text from the user or a file (":-1:", ":smile:") is printed as it was given
out = Console(highlight=False, soft_wrap=True, width=WIDTH, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

#: exit status of an error the user can fix (bad name, option, file)
USER_ERROR = 2


def fail(message: str) -> None:
    """Print ``error: message`` on one line to stderr and exit with :data:`USER_ERROR`; in a process of
    ``--nproc N``, leave the line for the launcher, which prints it once for all N."""
    if not leave_error(f"error: {message}"):
        err.print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(USER_ERROR)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}")


#: library parameters that are command-line flags of the same name: ``steps=60`` in a library
#: error reads ``--steps 60`` on the command line
FLAGS: tuple[str, ...] = ("steps", "label", "device", "out", "nproc", "data", "classifier", "seed", "init", "lr",
                          "scale", "sampler", "guidance", "schedule", "denoiser", "objective", "autoencoder", "batch_size", "format",
                          "eval_every")
#: the kinds whose options ``--set KIND.OPTION=VALUE`` sets
SET_KINDS: tuple[str, ...] = ("schedule", "sampler", "guidance", "denoiser", "objective", "autoencoder", "metric",
                               "classifier")
_RESUME = re.compile(r"(?<![\w.-])resume=True\b")
_SET = re.compile(r"(?<![\w.-])(?<!--set )((?:" + "|".join(SET_KINDS) + r")\.[a-z_]+=)")
_FLAG = re.compile(r"(?<![\w.-])(" + "|".join(FLAGS) + r")=(?!=)")


def in_cli_terms(message: str) -> str:
    """A library error in the words of the command line: ``resume=True`` → ``--resume``,
    ``sampler.eta=VALUE`` → ``--set sampler.eta=VALUE``, ``steps=60`` → ``--steps 60``.
    Library errors name the library's parameters; this is the one place they become flags."""
    message = _RESUME.sub("--resume", message)
    message = _SET.sub(r"--set \1", message)
    return _FLAG.sub(lambda m: f"--{m[1].replace('_', '-')} ", message)


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
            fail(in_cli_terms(str(e)))
        except click.UsageError as e:  # a bad or missing option of a command: one line too
            fail(f"{e.format_message()} (see `{e.ctx.command_path if e.ctx else 'difftk'} --help`)")
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            sys.exit(130)


def show_plugin_warnings() -> None:
    """Print a skipped plugin as one yellow line instead of Python's two-line warning."""
    from difftk.components.plugins import PluginWarning

    original = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, PluginWarning):
            warn(str(message))
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
