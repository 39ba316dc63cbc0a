"""`difftk evaluate`: measure a checkpoint with any registered metrics, sampled any way."""

from __future__ import annotations

import json
from pathlib import Path

import click
import difftk
from difftk.data.fitting import load_dataset
from difftk.errors import OptionError
from difftk.evaluation.compare import context_for, held_out_data, measure
from difftk.runtime.device import resolve_device
from difftk.runtime.files import atomic_write_text, check_output
from rich.markup import escape

from difftk_cli.console import out, warn
from difftk_cli.options import DATA_OPTION, metric_options, parse_data, parse_data_options, parse_sets


@click.command()
@click.argument("checkpoint", type=click.Path())
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
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Also write the results as JSON here.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def evaluate(checkpoint, metric_names, n, sampler, steps, guidance, scale, seed, sets, data_source, data_options, json_file,
             device) -> None:
    """Measure CHECKPOINT (its EMA weights) with each metric NAME and print value ± spread.

    Metrics see the checkpoint's pipeline, its denoiser and the test split of the data it was
    trained on (when that can be loaded). Sample-based metrics (fid, accuracy,
    sliced-wasserstein) draw samples the way --sampler, --steps, --guidance and --scale say,
    by default as the checkpoint's pipeline does; `metric.` options set with --set apply to
    every metric that has them.

    \b
    Examples:
      difftk evaluate mnist-cfg --metric fid --metric accuracy -n 500 --steps 25 --scale 3
      difftk evaluate runs/mnist --metric fid --sampler ancestral --steps 100 --json fid.json
      difftk evaluate runs/cifar/checkpoint.safetensors --metric bpd-ode -n 256
      difftk evaluate runs/mnist --metric bpd-ode --set metric.divergence=gaussian --set metric.n_probes=4
    """
    if json_file is not None:
        check_output(Path(json_file))  # before measuring, so no work is lost to a bad path
    options = parse_sets(sets, ("metric", "sampler", "guidance"))
    metric_sets = dict(options.get("metric", {}), **({"n": str(n)} if n is not None else {}))
    per_metric = metric_options(metric_names, metric_sets, n_flag=n is not None)
    guide = {**options.get("guidance", {}), **({"scale": str(scale)} if scale is not None else {})}
    device = resolve_device(device)
    model = difftk.load(checkpoint, device)
    for note in model.plugin_mismatches():
        warn(note)
    if data_source is not None:
        name, path = parse_data(data_source)
        data, why = load_dataset(name, path, split="test", options=parse_data_options(data_options))[0], None
    else:
        if data_options:
            raise OptionError("--data-option sets an option of --data NAME[:PATH]: give --data as well")
        data, why = held_out_data(model.data)
    if data is None:
        warn(f"no held-out data: {why}")
    context = context_for(model, data, sampler=sampler, sampler_options=options.get("sampler"), guidance=guidance,
                          guidance_options=guide, steps=steps, seed=seed)
    results = []
    for name in metric_names:
        result = measure(name, per_metric[name], context)
        results.append(result)
        out.print(escape(str(result)))
        if result.details:
            out.print(escape("  " + ", ".join(f"{k}: {v}" for k, v in result.details.items())))
        if result.caveat:
            warn(result.caveat)
    if json_file:
        record = {"checkpoint": str(model.checkpoint.path), "step": model.step, "seed": seed,
                  "sampler": sampler or model.pipeline.spec["sampler"].name, "steps": steps,
                  "guidance": guidance or (model.pipeline.spec["guidance"].name if "guidance" in model.pipeline.spec else None),
                  "scale": scale,
                  "results": [{"metric": r.name, "value": r.value, "spread": r.spread, "spread_kind": r.spread_kind,
                               "n": r.n, "unit": r.unit, "details": r.details} for r in results]}
        atomic_write_text(json_file, json.dumps(record, indent=2, default=str) + "\n")
        out.print(f"wrote {escape(str(json_file))}")
