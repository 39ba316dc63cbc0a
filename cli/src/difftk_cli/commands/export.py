"""`difftk export`: the part of a checkpoint that sampling needs, as a small file to share or ship."""

from __future__ import annotations

import click
from difftk.checkpoint.files import export_for_sampling
from rich.markup import escape

from difftk_cli.console import out


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Write the exported checkpoint here.")
def export(checkpoint, output) -> None:
    """Write CHECKPOINT's EMA weights and metadata, without optimizer and RNG state, to OUTPUT.

    The result samples and evaluates like the original (`difftk sample`, `difftk evaluate`)
    at about a quarter of its size, but cannot be resumed.

    \b
    Examples:
      difftk export runs/mnist -o mnist.safetensors
    """
    ckpt, path = export_for_sampling(checkpoint, output)
    before, after = ckpt.path.stat().st_size, path.stat().st_size
    out.print(escape(f"wrote {path}: EMA weights of step {ckpt.step:,}, {after / 1e6:.1f} MB "
                     f"(the run's checkpoint is {before / 1e6:.1f} MB)"))
