"""`difftk new-plugin`: write a working plugin package to start from."""

from __future__ import annotations

from pathlib import Path

import click
from difftk.runtime.files import guard_output
from rich.markup import escape

from difftk_cli.console import out
from difftk_cli.options import Command, OutputPath
from difftk_cli.scaffold import KINDS, check_name_free, scaffold


@click.command("new-plugin", cls=Command)
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), default="sampler", show_default=True,
              help="The kind of component the plugin registers.")
@click.option("-o", "--output", "out_dir", type=OutputPath("new-folder"),
              help="Directory to write the package into; default: ./difftk-NAME.")
def new_plugin(name, kind, out_dir) -> None:
    """Write the package of a new plugin NAME: pyproject with its entry point, a working component
    of KIND that passes the conformance kit, tests and a README.

    \b
    Examples:
      difftk new-plugin my-sampler --kind sampler
      difftk new-plugin snr-linear --kind schedule -o plugins/snr_linear
      cd difftk-my-sampler && pip install -e . && python -m pytest tests
    """
    if not out_dir:  # the default folder is named after the plugin: the name first, then the folder's guard
        check_name_free(name, kind)
    target = Path(out_dir) if out_dir else guard_output(f"difftk-{name}", "new-folder")
    files = scaffold(name, kind, target)
    article = "an" if kind[0] in "aeiou" else "a"
    out.print(escape(f"wrote {len(files)} files to {target}/ — {article} {kind} '{name}' registered by the entry point "
                     f"{name.replace('-', '_')} (plugin package difftk-{name})"))
    out.print(escape(f"next: pip install -e {target} && difftk plugins && python -m pytest {target}/tests"))
