"""`difftk evaluate`: measure a checkpoint with any registered metric."""

from __future__ import annotations

import click
from difftk import plugins
from difftk.checkpoint import load_for_sampling
from difftk.errors import DifftkError, OptionError
from difftk.metrics import EvalContext, MetricResult
from difftk.training import resolve_device
from rich.markup import escape

from difftk_cli.commands.compose import parse_sets
from difftk_cli.console import out, warn


def held_out_data(dataset: dict):
    """The test split of the checkpoint's dataset, or ``None`` (with the reason) when it cannot be loaded."""
    name = dataset.get("name")
    if not name:
        return None, "the checkpoint does not name its dataset"
    try:
        info = plugins.host().registry.get("dataset", name)
        component = info.build(dict(dataset.get("options") or {}))
        data = component.load("test")
    except DifftkError as err:
        return None, str(err)
    except Exception as err:  # a dataset plugin's own failure: reported, not fatal
        return None, f"dataset '{name}' failed to load its test split: {type(err).__name__}: {' '.join(str(err).split())}"
    return data, None


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--metric", "metric_name", required=True, metavar="NAME", help="Any registered metric (see `difftk plugins`).")
@click.option("-n", "--num", "n", type=click.IntRange(min=1), help="Examples to evaluate (the metric's option n).")
@click.option("--seed", type=click.IntRange(min=0, max=(1 << 63) - 1), default=0, show_default=True,
              help="Seed of every random draw of the metric.")
@click.option("--set", "sets", metavar="metric.OPTION=VALUE", multiple=True,
              help="Set a metric option, e.g. metric.divergence=exact; repeatable.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def evaluate(checkpoint, metric_name, n, seed, sets, device) -> None:
    """Measure CHECKPOINT (its EMA weights) with metric NAME and print value ± spread.

    The metric sees the checkpoint's pipeline, its denoiser and the test split of the data
    it was trained on (when that can be loaded).

    \b
    Examples:
      difftk evaluate runs/cifar/checkpoint.safetensors --metric bpd-ode -n 256
      difftk evaluate runs/mnist --metric bpd-ode --set metric.divergence=gaussian --set metric.n_probes=4
    """
    options = parse_sets(sets)
    for kind in options:
        if kind != "metric":
            raise OptionError(f"--set {kind}.…: only metric options can be set here (e.g. --set metric.n=128)")
    given = dict(options.get("metric", {}))
    info = plugins.host().registry.get("metric", metric_name)
    if n is not None:
        if "n" not in info.option_fields():
            raise OptionError(f"-n: metric '{metric_name}' has no option n (options: {', '.join(info.option_fields()) or 'none'})")
        given["n"] = str(n)
    metric = info.build(given, from_strings=True)
    device = resolve_device(device)
    model = load_for_sampling(checkpoint, device)
    for note in model.plugin_mismatches():
        warn(note)
    data, why = held_out_data(model.checkpoint.dataset)
    if data is None:
        warn(f"no held-out data: {why}")
    context = EvalContext(pipeline=model.pipeline, denoiser=model.denoiser, data=data, device=device, seed=seed)
    result = metric.evaluate(context)
    if not isinstance(result, MetricResult):
        raise DifftkError(f"metric '{metric_name}' returned a {type(result).__name__}, not a difftk.metrics.MetricResult")
    out.print(escape(str(result)))
    if result.details:
        out.print(escape(", ".join(f"{k}: {v}" for k, v in result.details.items())))
