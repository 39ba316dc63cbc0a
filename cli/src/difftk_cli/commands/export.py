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
@click.option("--sampler", metavar="NAME", help="The exported model's sampler (default: the pipeline's); --format "
              "diffusers: write the scheduler config of this sampler.")
@click.option("--set", "sets", metavar="sampler.OPTION=VALUE", multiple=True,
              help="Set an option of that sampler, e.g. sampler.spacing=trailing: the exported model samples with it by "
                   "default (the weights are the run's); repeatable.")
def export(checkpoint, output, fmt, sampler, sets) -> None:
    """Write CHECKPOINT's EMA weights and metadata, without optimizer and RNG state, to OUTPUT.

    The result samples and evaluates like the original (`difftk sample`, `difftk evaluate`)
    at about a quarter of its size, but cannot be resumed; --sampler and --set change the
    sampler it samples with by default, not its weights. With --format NAME the model is
    written in another library's format by the plugin that provides it (--format diffusers: a
    DDPMPipeline folder whose scheduler config reproduces the schedule's β exactly and steps as
    the sampler does, --sampler NAME choosing another; --format folder: a Hub-style folder of
    config.json, model.safetensors and pipeline.toml that difftk.load reads back).

    \b
    Examples:
      difftk export runs/mnist -o mnist.safetensors
      difftk export runs/mnist --set sampler.spacing=trailing -o mnist-trailing.safetensors
      difftk export runs/mnist --format diffusers -o mnist-diffusers
      difftk export runs/mnist --format diffusers --sampler dpm-solver-2m --set sampler.spacing=trailing -o mnist-dpm
      difftk export runs/mnist --format folder -o mnist-folder
    """
    options = parse_sets(sets, ("sampler",), why=" (export sets the exported model's sampler)")
    if (sampler or options) and fmt not in ("difftk", "diffusers"):
        raise OptionError(f"--sampler and --set choose the sampler of --format difftk or diffusers; --format {fmt} "
                          "keeps the pipeline's own sampler")
    model = None
    if fmt != "difftk" or sampler or options:
        model = difftk.load(checkpoint)
        if sampler or options:
            chosen = model.sampler(sampler, options.get("sampler"))
            model = model.using(PipelineSpec((("sampler", spec_of("sampler", chosen)),)), source="--sampler")
    if fmt != "difftk":
        report = plugins.first_result("difftk_export", model=model, format=fmt, output=Path(output))
        if report is None:
            raise OptionError(f"--format {fmt}: no installed plugin writes this format (difftk itself writes difftk; "
                              "difftk-diffusers adds diffusers and folder)")
        # the mark that lets a later export replace this folder, and nothing that difftk did not write
        atomic_write_text(Path(output) / EXPORT_MARK, json.dumps({"format": fmt, "difftk_version": difftk.__version__}) + "\n")
        for line in str(report).splitlines():
            out.print(escape(line))
        return
    ckpt, path = export_for_sampling(checkpoint, output, model.pipeline.spec.to_json() if model is not None else None)
    before, after = ckpt.path.stat().st_size, path.stat().st_size
    out.print(escape(f"wrote {path}: EMA weights of step {ckpt.step:,}, {after / 1e6:.1f} MB "
                     f"(the run's checkpoint is {before / 1e6:.1f} MB)"))
