"""`difftk export`: the part of a checkpoint that sampling needs, as a small file to share or ship,
or the model in another library's format (written by the plugin that adds it: hook difftk_export)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import difftk
from difftk.checkpoint.files import export_for_sampling
from difftk.components import plugins
from difftk.errors import OptionError
from difftk.pipeline.compose import spec_of
from difftk.pipeline.spec import PipelineSpec
from difftk.runtime.files import EXPORT_MARK, atomic_write_text
from rich.markup import escape

from difftk_cli.console import out
from difftk_cli.options import Command, OutputPath, parse_sets


@click.command(cls=Command)
@click.argument("checkpoint", type=click.Path())
@click.option("-o", "--output", type=OutputPath(lambda p: "export" if p.get("fmt") == "difftk" else "foreign-model"),
              required=True,
              help="Write the exported checkpoint (a .safetensors file) or, for another format, what it writes (a folder).")
@click.option("--format", "fmt", metavar="NAME", default="difftk", show_default=True,
              help="difftk (a checkpoint for sampling), or a format a plugin adds: diffusers, folder (difftk-diffusers).")
@click.option("--sampler", metavar="NAME", help="--format diffusers: write the scheduler config of this sampler (default: "
              "the pipeline's).")
@click.option("--set", "sets", metavar="sampler.OPTION=VALUE", multiple=True,
              help="--format diffusers: set an option of the sampler whose scheduler is written, e.g. sampler.spacing=trailing; "
                   "repeatable.")
def export(checkpoint, output, fmt, sampler, sets) -> None:
    """Write CHECKPOINT's EMA weights and metadata, without optimizer and RNG state, to OUTPUT.

    The result samples and evaluates like the original (`difftk sample`, `difftk evaluate`)
    at about a quarter of its size, but cannot be resumed. With --format NAME the model is
    written in another library's format by the plugin that provides it (--format diffusers: a
    DDPMPipeline folder whose scheduler config reproduces the schedule's β exactly and steps as
    the sampler does, --sampler NAME choosing another; --format folder: a Hub-style folder of
    config.json, model.safetensors and pipeline.toml that difftk.load reads back).

    \b
    Examples:
      difftk export runs/mnist -o mnist.safetensors
      difftk export runs/mnist --format diffusers -o mnist-diffusers
      difftk export runs/mnist --format diffusers --sampler dpm-solver-2m --set sampler.spacing=trailing -o mnist-dpm
      difftk export runs/mnist --format folder -o mnist-folder
    """
    options = parse_sets(sets, ("sampler",), why=" (export writes the sampler's scheduler)")
    if (sampler or options) and fmt != "diffusers":
        raise OptionError(f"--sampler and --set choose the scheduler of --format diffusers; --format {fmt} keeps the "
                          "pipeline's own sampler")
    if fmt != "difftk":
        model = difftk.load(checkpoint)
        if sampler or options:
            chosen = model.sampler(sampler, options.get("sampler"))
            model = model.using(PipelineSpec((("sampler", spec_of("sampler", chosen)),)), source="--sampler")
        report = plugins.first_result("difftk_export", model=model, format=fmt, output=Path(output))
        if report is None:
            raise OptionError(f"--format {fmt}: no installed plugin writes this format (difftk itself writes difftk; "
                              "difftk-diffusers adds diffusers and folder)")
        # the mark that lets a later export replace this folder, and nothing that difftk did not write
        atomic_write_text(Path(output) / EXPORT_MARK, json.dumps({"format": fmt, "difftk_version": difftk.__version__}) + "\n")
        for line in str(report).splitlines():
            out.print(escape(line))
        return
    ckpt, path = export_for_sampling(checkpoint, output)
    before, after = ckpt.path.stat().st_size, path.stat().st_size
    out.print(escape(f"wrote {path}: EMA weights of step {ckpt.step:,}, {after / 1e6:.1f} MB "
                     f"(the run's checkpoint is {before / 1e6:.1f} MB)"))
