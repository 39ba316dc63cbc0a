"""`difftk evaluate`: measure a checkpoint with any registered metrics, sampled any way."""

from __future__ import annotations

import json
import sys

import click
import difftk
from click.core import ParameterSource
from difftk.components import plugins
from difftk.data.pipeline_data import load_dataset
from difftk.errors import DifftkError, OptionError
from difftk.evaluation.compare import context_for, held_out_data, measure
from difftk.evaluation.context import EvalContext, refuse_unmeasurable
from difftk.evaluation.sample_files import read_samples
from difftk.runtime import distributed
from difftk.runtime.device import resolve_device
from difftk.runtime.files import atomic_write_text
from rich.markup import escape

from difftk_cli.console import out, warn
from difftk_cli.options import (
    DATA_OPTION,
    Command,
    OutputPath,
    argv_without,
    metric_options,
    parse_data,
    parse_data_options,
    parse_sets,
)

#: the held-out data images of this shape are measured against when --samples comes without --data
DEFAULT_DATA = {(1, 28, 28): "mnist"}
#: the options that set how a model is sampled: nothing to set for given images
SAMPLING_FLAGS = ("sampler", "steps", "guidance", "scale", "batch_size")


@click.command(cls=Command)
@click.argument("checkpoint", type=click.Path(), required=False)
@click.option("--samples", "samples_path", type=click.Path(), metavar="DIR_OR_NPZ",
              help="Measure these images (a folder of PNGs or an .npz, from any generator) instead of a checkpoint's samples.")
@click.option("--metric", "metric_names", required=True, multiple=True, metavar="NAME",
              help="A registered metric (see `difftk plugins`); repeatable.")
@click.option("-n", "--num", "n", type=click.IntRange(min=1), help="Examples or samples per metric (each metric's option n).")
@click.option("--sampler", metavar="NAME", help="Sample with this sampler (sample-based metrics); default: the checkpoint's.")
@click.option("--steps", type=click.IntRange(min=1), help="Sampler steps for sample-based metrics.")
@click.option("--guidance", metavar="NAME", help="Guide the samples with this guidance (e.g. cfg).")
@click.option("--scale", type=click.FloatRange(min=0), help="Guidance scale; 0 = unguided.")
@click.option("--seed", type=click.IntRange(min=0, max=(1 << 63) - 1), default=0, show_default=True,
              help="Seed of every random draw of the metrics.")
@click.option("--set", "sets", metavar="KIND.OPTION=VALUE", multiple=True,
              help="Set a metric, sampler or guidance option, e.g. metric.divergence=exact; repeatable.")
@click.option("--data", "data_source", metavar="NAME[:PATH]",
              help="Held-out data to measure against (its test split); default: the checkpoint's own dataset.")
@DATA_OPTION
@click.option("--json", "json_file", type=OutputPath("results"), help="Also write the results as JSON here.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Samples drawn at once; with --nproc, the batches are what the processes share.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes to draw the samples in (torch.distributed via torchrun); process 0 scores them.")
@click.pass_context
def evaluate(ctx, checkpoint, samples_path, metric_names, n, sampler, steps, guidance, scale, seed, sets, data_source,
             data_options, json_file, batch_size, device, nproc) -> None:
    """Measure CHECKPOINT (its EMA weights), or the images of --samples, with each metric NAME and
    print value ± spread.

    Metrics see the checkpoint's pipeline, its denoiser and the test split of the data it was
    trained on (when that can be loaded). Sample-based metrics (fid, accuracy,
    sliced-wasserstein) draw samples the way --sampler, --steps, --guidance and --scale say,
    by default as the checkpoint's pipeline does; `metric.` options set with --set apply to
    every metric that has them.

    --samples DIR_OR_NPZ measures images any generator made (`difftk sample --format
    png-folder|npz`, or another library's): all of them unless -n says fewer, against --data
    (default for 1×28×28 images: MNIST's held-out split).

    \b
    Examples:
      difftk evaluate --samples samples/ --metric fid
      difftk evaluate --samples samples.npz --metric fid --data image-folder:/data/test --data-option image_size=32
      difftk evaluate mnist-cfg --metric fid -n 2000 --nproc 2
      difftk evaluate mnist-cfg --metric fid --metric accuracy -n 500 --steps 25 --scale 3
      difftk evaluate runs/mnist --metric fid --sampler ancestral --steps 100 --json fid.json
      difftk evaluate runs/cifar/checkpoint.safetensors --metric bpd-ode -n 256
      difftk evaluate runs/mnist --metric bpd-ode --set metric.divergence=gaussian --set metric.n_probes=4
    """
    if checkpoint is not None and samples_path is not None:
        raise OptionError(f"--samples {samples_path} measures given images, CHECKPOINT {checkpoint} its own samples: "
                          "give one of them")
    if checkpoint is None and samples_path is None:
        raise OptionError("give a CHECKPOINT to sample and measure, or --samples DIR_OR_NPZ (images to measure)")
    options = parse_sets(sets, ("metric", "sampler", "guidance"))
    metric_sets = dict(options.get("metric", {}), **({"n": str(n)} if n is not None else {}))
    per_metric = metric_options(metric_names, metric_sets, n_flag=n is not None)
    if samples_path is not None:
        _check_nothing_to_sample(ctx, options, nproc)
        return _evaluate_images(samples_path, metric_names, per_metric, n, seed, data_source, data_options, json_file)
    if nproc > 1 and not distributed.launched():
        sys.exit(distributed.launch(nproc, argv_without("--nproc", sys.argv[1:])))
    ranks, device = distributed.init(resolve_device(device))
    if not ranks.main:  # one console: process 0 measures and prints, the others draw their blocks of the samples
        out.quiet = True
    try:
        _evaluate_model(checkpoint, metric_names, per_metric, options, sampler, steps, guidance, scale, seed,
                        data_source, data_options, json_file, batch_size, device, ranks)
    finally:
        distributed.finish()


def _check_nothing_to_sample(ctx: click.Context, options: dict, nproc: int) -> None:
    """--samples measures images as they are: the flags of sampling a model are one line."""
    given = [f"--{flag.replace('_', '-')}" for flag in SAMPLING_FLAGS
             if ctx.get_parameter_source(flag) is not ParameterSource.DEFAULT]
    given += [f"--set {kind}.…" for kind in ("sampler", "guidance") if kind in options]
    given += ["--nproc"] if nproc > 1 else []
    if given:
        raise OptionError(f"{given[0]} sets how a model is sampled; --samples measures given images: leave it out")


def _data(data_source: str | None, data_options: tuple[str, ...]):
    """The held-out split --data names (with its --data-option), or ``None`` when --data is not given."""
    if data_source is None:
        if data_options:
            raise OptionError("--data-option sets an option of --data NAME[:PATH]: give --data as well")
        return None
    name, path = parse_data(data_source)
    return load_dataset(name, path, split="test", options=parse_data_options(data_options))[0]


def _evaluate_images(samples_path, metric_names, per_metric, n, seed, data_source, data_options, json_file) -> None:
    images = read_samples(samples_path)
    data = _data(data_source, data_options)
    said = f"{samples_path}: {len(images):,} image{'s' if len(images) > 1 else ''} of {'×'.join(map(str, images.shape))}"
    if images.labels is not None:
        classes = images.labels.unique().tolist()
        said += f", labelled ({len(classes)} classes, {classes[0]}–{classes[-1]})"
    default = DEFAULT_DATA.get(images.shape)
    if data is None and default is not None:
        data = load_dataset(default, split="test")[0]
        said += f"; measured against {default}'s held-out split ({len(data):,} images; the default for " \
                f"{'×'.join(map(str, images.shape))} images, --data to choose another)"
    elif data is not None:
        said += f"; measured against {data.name}'s held-out split ({len(data):,} images)"
    out.print(escape(said))
    registry = plugins.registry()
    for name in metric_names:  # every image unless -n says fewer
        if n is None and "n" in registry.get("metric", name).option_fields() and "n" not in per_metric[name]:
            per_metric[name]["n"] = str(len(images))
            try:
                registry.get("metric", name).instantiate(per_metric[name], from_strings=True)
            except DifftkError as err:
                raise DifftkError(f"{samples_path} holds {len(images):,} image{'s' if len(images) > 1 else ''}, too few "
                                  f"for metric '{name}' ({err})") from None
    context = EvalContext.from_images(images, data, seed=seed)
    results = _measure(metric_names, per_metric, context)
    if json_file:
        _write_json(json_file, {"samples": str(samples_path), "images": len(images), "seed": seed,
                                "data": data.name if data is not None else None}, results)


def _evaluate_model(checkpoint, metric_names, per_metric, options, sampler, steps, guidance, scale, seed, data_source,
                    data_options, json_file, batch_size, device, ranks) -> None:
    guide = {**options.get("guidance", {}), **({"scale": str(scale)} if scale is not None else {})}
    model = difftk.load(checkpoint, device)
    refuse_unmeasurable(metric_names, latent=model.pipeline.autoencoder is not None)  # before data or samples
    for note in model.plugin_mismatches():
        warn(note)
    data, why = None, None
    if ranks.main:  # the metrics run on process 0 only
        data = _data(data_source, data_options)
        if data is None:
            data, why = held_out_data(model.data)
        if data is None:
            warn(f"no held-out data: {why}")
    context = context_for(model, data, sampler=sampler, sampler_options=options.get("sampler"), guidance=guidance,
                          guidance_options=guide, steps=steps, seed=seed, batch_size=batch_size, ranks=ranks)
    if not ranks.main:
        return context.serve()
    try:
        results = _measure(metric_names, per_metric, context)
    finally:
        context.release()
    if json_file:
        record = {"checkpoint": str(model.checkpoint.path), "step": model.step, "seed": seed,
                  "sampler": sampler or model.pipeline.spec["sampler"].name, "steps": steps,
                  "guidance": guidance or (model.pipeline.spec["guidance"].name if "guidance" in model.pipeline.spec else None),
                  "scale": scale, "processes": ranks.world}
        _write_json(json_file, record, results)


def _measure(metric_names, per_metric, context) -> list:
    results = []
    for name in metric_names:
        result = measure(name, per_metric[name], context)
        results.append(result)
        out.print(escape(str(result)))
        if result.details:
            out.print(escape("  " + ", ".join(f"{k}: {v}" for k, v in result.details.items())))
        if result.caveat:
            warn(result.caveat)
    return results


def _write_json(json_file: str, record: dict, results: list) -> None:
    record["results"] = [{"metric": r.name, "value": r.value, "spread": r.spread, "spread_kind": r.spread_kind,
                          "n": r.n, "unit": r.unit, "details": r.details} for r in results]
    atomic_write_text(json_file, json.dumps(record, indent=2, default=str) + "\n")
    out.print(f"wrote {escape(str(json_file))}")
