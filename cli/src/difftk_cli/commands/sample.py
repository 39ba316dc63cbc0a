"""`difftk sample`: draw samples from a trained model with any registered sampler."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click
import difftk
from click.core import ParameterSource
from difftk.checkpoint.files import FORMAT as CHECKPOINT_FORMAT
from difftk.components.protocols import num_classes_of
from difftk.data.images import grid_shape, load_image, load_mask, picture, save_png, trajectory_strip
from difftk.errors import OptionError
from difftk.evaluation.sample_files import FORMATS, format_of, write_npz, write_png_folder
from difftk.pipeline.compose import spec_of
from difftk.pipeline.spec import PipelineSpec, component_options
from difftk.runtime import distributed
from difftk.runtime.device import resolve_device
from difftk.runtime.fastpath import PRECISIONS, autocast
from difftk.sampling.edit import snap_strength
from difftk.sampling.trajectory import TrajectoryRecorder
from rich.markup import escape

from difftk_cli.console import out, warn
from difftk_cli.options import Command, OutputPath, argv_without, parse_sets
from difftk_cli.progress import SamplingProgress

#: the kinds --set may change at sampling time; the rest is fixed by the checkpoint
SAMPLING_KINDS = ("sampler", "guidance")


def _init(model, source: str | None, strength: float | None, mask: str | None):
    """The image to edit (from a file or the model's own data), how it is edited in words, and its
    class when the model's data says it."""
    if source is None:
        if strength is not None or mask is not None:
            raise OptionError(f"--{'strength' if strength is not None else 'mask'} edits an image: give it with --init")
        return None, "", None
    split, sep, index = source.partition(":")
    if sep and split in ("train", "test") and index.strip().isdigit() and not Path(source).exists():
        init, labels = model.examples(split, [int(index)])
        label = int(labels[0]) if labels is not None and model.num_classes else None
        said = f"{split} example {int(index)}" + (f" (class {label})" if label is not None else "")
    else:
        init, said, label = load_image(source, model.data_shape), source, None
    s = snap_strength(model.schedule, strength if strength is not None else 1.0)
    how = f"inpainting {mask} of" if mask else "SDEdit of"
    return init, f"{how} {said} from t = {s:g}", label


def _purpose(params: dict) -> str:
    """What -o is for, by the layout it is written in (the output guard's purpose)."""
    return {"png": "picture", "npz": "samples", "png-folder": "sample-folder"}[format_of(params["output"], params.get("fmt"))]


def _options_text(component) -> str:
    return ", ".join(f"{k}={v}" for k, v in component_options(component).items())


@click.command(cls=Command, reads=("init_source", "mask_source"))
@click.argument("checkpoint", type=click.Path())
@click.option("-n", "--num", "n", type=click.IntRange(1, 1_000_000), default=64, show_default=True, help="How many samples.")
@click.option("-o", "--output", type=OutputPath(_purpose), required=True,
              help="Write the samples here: a PNG grid (or scatter plot), a folder of PNGs, or an .npz (--format).")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="png: one grid; png-folder: one PNG per sample; npz: uint8 [N, H, W, C] under arr_0 "
                   "(default: npz for -o NAME.npz, else png).")
@click.option("--sampler", metavar="NAME", help="Any registered sampler; default: the one in the checkpoint's pipeline.")
@click.option("--steps", type=click.IntRange(min=1), help="Sampler steps; default: the sampler's own (50 for ddim; `difftk plugins` lists each).")
@click.option("--set", "sets", metavar="KIND.OPTION=VALUE", multiple=True,
              help="Set a sampler or guidance option, e.g. sampler.eta=0.5; repeatable.")
@click.option("--guidance", metavar="NAME", help="Wrap the denoiser in this guidance (e.g. cfg).")
@click.option("--scale", type=click.FloatRange(min=0), help="Guidance scale (w of cfg, s of classifier guidance); 0 = unguided.")
@click.option("--classifier", "classifier_file", type=click.Path(dir_okay=False),
              help="Classifier file for --guidance classifier (from `difftk train-classifier`).")
@click.option("--label", metavar="L", help="Draw every sample from class L (an index or a class name).")
@click.option("--pipeline", "pipeline_file", type=click.Path(dir_okay=False),
              help="Take the sampler and guidance from this pipeline (from `difftk compose`); its schedule must be the model's.")
@click.option("--seed", type=click.IntRange(min=0, max=(1 << 63) - 1), default=0, show_default=True, help="Seed of the noise.")
@click.option("--init", "init_source", metavar="IMAGE|train:K|test:K",
              help="Edit a real image: an image file of the model's size, or example K of its training or test split.")
@click.option("--strength", type=click.FloatRange(0, 1, min_open=True),
              help="SDEdit: noise --init to this time and sample back (1 = from noise); default 1 with --mask.")
@click.option("--mask", "mask_source", metavar="MASK|left|right|top|bottom",
              help="Inpaint --init: generate where the mask image is white (or that half), keep the rest.")
@click.option("--trajectory", type=OutputPath("picture"), help="Also write the predicted x₀ at several t as a PNG strip.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True, help="Samples drawn at once.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto (bf16 autocast on CUDA, fp32 on the CPU), fp32, tf32 or bf16.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes to sample in (torch.distributed via torchrun): each draws its block of the batches.")
@click.pass_context
def sample(ctx, checkpoint, n, output, fmt, sampler, steps, sets, guidance, scale, classifier_file, label, pipeline_file,
           seed, init_source, strength, mask_source, trajectory, batch_size, precision, device, nproc) -> None:
    """Draw N samples from CHECKPOINT with its EMA weights and write them as a PNG grid (or as
    one PNG each, or an npz: --format).

    CHECKPOINT is a checkpoint file, a run directory, or the name of a model a plugin ships
    (`difftk plugins` lists them, e.g. mnist-cfg).

    The schedule comes from the checkpoint, so any registered sampler can sample any model.
    x̂₀ is not clipped unless asked (--set sampler.clip_x0=1 for data in [−1, 1], as the
    DDPM/DDIM reference code does). A class-conditional model draws classes 0, 1, 2, … in turn
    (one per column when the grid has as many columns as classes) unless --label is given.
    With --guidance and no --label, each grid row is one class (default -n: one row of
    C samples per class).

    --format png-folder writes one PNG per sample (000000.png, …) and --format npz a uint8
    [N, H, W, C] array under arr_0, for other evaluators (clean-fid, torch-fidelity, the ADM
    suite) or `difftk evaluate --samples`; a class-conditional draw's labels go with them.

    \b
    Examples:
      difftk sample mnist-cfg -o digits.png --guidance cfg --scale 3
      difftk sample mnist-cfg -n 1000 --format png-folder -o samples/
      difftk sample mnist-cfg -n 1000 -o samples.npz --nproc 2
      difftk compose --schedule cosine --sampler ddim --guidance cfg -o p.toml && difftk sample mnist-cfg --pipeline p.toml -o digits.png
      difftk sample runs/mnist/checkpoint.safetensors -n 64 -o grid.png
      difftk sample runs/mnist/checkpoint.safetensors -n 16 -o sevens.png --label 7
      difftk sample runs/mnist/checkpoint.safetensors -n 64 -o fast.png --sampler ddim --steps 25
      difftk sample runs/mnist/checkpoint.safetensors -n 8 -o g.png --sampler ddim --set sampler.eta=1.0 --trajectory t.png
      difftk sample runs/mnist/checkpoint.safetensors -o cfg.png --guidance cfg --scale 3
      difftk sample runs/mnist/checkpoint.safetensors -n 16 -o g7.png --guidance classifier --classifier clf.safetensors --label 7
      difftk sample mnist-cfg -n 8 -o edit.png --init train:4 --strength 0.5 --label 9
      difftk sample mnist-cfg -n 8 -o fill.png --init test:0 --mask right
    """
    fmt = format_of(output, fmt)  # the outputs were checked before the command ran (options.Command)
    if nproc > 1 and not distributed.launched():
        sys.exit(distributed.launch(nproc, argv_without("--nproc", sys.argv[1:])))
    ranks, device = distributed.init(resolve_device(device))
    if not ranks.main:  # one console: process 0 prints and writes, the others sample their blocks quietly
        out.quiet = True
    try:
        _sample(ctx, checkpoint, n, output, fmt, sampler, steps, sets, guidance, scale, classifier_file, label,
                pipeline_file, seed, init_source, strength, mask_source, trajectory, batch_size, precision, device, ranks)
    finally:
        distributed.finish()


def _sample(ctx, checkpoint, n, output, fmt, sampler, steps, sets, guidance, scale, classifier_file, label, pipeline_file,
            seed, init_source, strength, mask_source, trajectory, batch_size, precision, device, ranks) -> None:
    options = parse_sets(sets, SAMPLING_KINDS, why=" (the rest is fixed by the checkpoint)")
    model = difftk.load(checkpoint, device)
    for note in model.plugin_mismatches():
        warn(note)
    if pipeline_file:
        model = model.using(PipelineSpec.load(pipeline_file), source=pipeline_file)
    kind = model.data_kind
    if kind != "image" and fmt != "png":
        raise OptionError(f"--format {fmt} writes images, but this model makes {model.data_shape[0]}-D points: "
                          "use --format png (a scatter plot)")
    chosen = model.sampler(sampler, options.get("sampler"))
    guided = guidance is not None or "guidance" in options or model.pipeline.guidance is not None
    if not guided and (scale is not None or classifier_file is not None):
        raise OptionError(f"--{'scale' if scale is not None else 'classifier'} needs --guidance NAME (cfg or classifier)")
    wrapper, denoiser = None, model.denoiser
    if guided:
        given_options = {**options.get("guidance", {}), **({"classifier": classifier_file} if classifier_file else {})}
        denoiser, wrapper = model.guided_denoiser(guidance, given_options, scale=scale)
    num_classes = num_classes_of(denoiser)
    init, what, init_label = _init(model, init_source, strength, mask_source)
    mask = load_mask(mask_source, model.data_shape) if mask_source else None
    if label is None and init_label is not None:  # an edit of a real digit keeps its class unless told otherwise
        label = init_label
    rows = wrapper is not None and label is None and num_classes and fmt == "png"
    if rows:  # a picture of a guided model: one class per row (C² samples unless -n is given)
        n, cond = model.grid_labels(None if ctx.get_parameter_source("n") is ParameterSource.DEFAULT else n, denoiser)
    else:
        cond = model.labels(n, label, denoiser)
    recorder = TrajectoryRecorder(keep=4 if kind == "image" else None) if trajectory else None

    nfe: dict[int, tuple[int, int]] = {}  # (denoiser evaluations, steps) per batch, from samplers that report them

    def callback(batch, info):
        progress(batch, info)
        if info.nfe is not None:
            nfe[batch] = (info.nfe, info.index + 1)
        if recorder is not None:
            recorder(batch, info)

    batches = len(distributed.share(math.ceil(n / batch_size), ranks))
    with SamplingProgress(batches, console=out) as progress, autocast(precision, device):
        x = model.sample(n, sampler=chosen, steps=steps, guidance=wrapper if wrapper is not None else False,
                         labels=cond, seed=seed, batch_size=batch_size, callback=callback, init=init,
                         strength=strength, mask=mask, ranks=ranks if ranks.distributed else None)
    if not ranks.main:  # process 0 has gathered every block and writes
        return
    bounds = model.data.get("bounds")
    written = _write(x, cond, output, fmt, kind, bounds)
    name = spec_of("sampler", chosen).name
    if label is not None:
        cls = f", class {label}"
    elif cond is not None:
        drawn = sorted(set(cond.tolist()))
        span = f"class {drawn[0]}" if len(drawn) == 1 else (
            f"classes {drawn[0]}–{drawn[-1]}" if drawn == list(range(drawn[0], drawn[-1] + 1)) else
            "classes " + ", ".join(map(str, drawn)))
        cls = f", {span} {'one per row' if rows else 'in turn'}" if len(drawn) > 1 else f", {span}"
    else:
        cls = ""
    if wrapper is not None:
        cls += f"; guidance {_options_text(wrapper)}"
    if init is not None:
        cls += f"; {what}"
    # a checkpoint of difftk's own names its training step; a foreign model (a diffusers folder) names its format
    foreign = model.checkpoint.metadata.get("format") if model.checkpoint is not None else None
    origin = f"step {model.step:,}" if foreign in (None, CHECKPOINT_FORMAT) else f"the {foreign} model {model.checkpoint.path}"
    processes = f", in {ranks.world} processes" if ranks.distributed else ""
    out.print(escape(f"wrote {output}: {written} from {origin}; "
                     f"sampler {name} ({_options_text(chosen)}), {progress.steps} steps, seed {seed}{cls}{processes}"))
    if nfe:  # an adaptive sampler's step count is known only at the end: report what each batch used
        span = lambda v: f"{min(v):,}" + (f"–{max(v):,}" if max(v) != min(v) else "")  # noqa: E731
        out.print(f"NFE {span([e for e, _ in nfe.values()])} denoiser evaluations in {span([k for _, k in nfe.values()])} "
                  f"steps per batch of samples ({len(nfe)} batch{'' if len(nfe) == 1 else 'es'})")
    if recorder is not None:
        save_png(trajectory_strip(recorder.frames, recorder.times, kind, bounds), trajectory)
        times = ", ".join(f"{t:.2f}" for t in recorder.times)
        out.print(escape(f"wrote {trajectory}: predicted x₀ at t = {times}"))


def _write(x, cond, output: str, fmt: str, kind: str, bounds) -> str:
    """Write the samples as ``fmt`` says; what was written, in words."""
    n, size = len(x), "×".join(map(str, x.shape[-2:][::-1]))
    colour = "grey" if x.shape[1] == 1 else "RGB"
    if fmt == "png":
        save_png(picture(x, kind, bounds), output)
        return f"{n} samples ({'{}×{} grid'.format(*grid_shape(n)) if kind == 'image' else 'scatter plot'})"
    if fmt == "png-folder":
        write_png_folder(x, output, cond)
        return f"{n} PNGs of {size} {colour}" + (" (each labelled)" if cond is not None else "")
    write_npz(x, output, cond)
    shape = [n, *x.shape[2:], x.shape[1]]
    return f"arr_0 uint8 {shape} ({colour})" + (f" and labels [{n}]" if cond is not None else "")
