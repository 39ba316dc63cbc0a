"""`difftk compare`: a grid of measurements — checkpoints × samplers × steps × guidance scales × metrics."""

from __future__ import annotations

from pathlib import Path

import click
from difftk.errors import OptionError
from difftk.evaluation.compare import compare as run_grid
from difftk.evaluation.compare import write_csv
from difftk.runtime.device import resolve_device
from rich.markup import escape
from rich.table import Table

from difftk_cli.console import out, warn
from difftk_cli.options import metric_options, parse_sets
from difftk_cli.plots import plot_grid


def _list(text: str | None, cast, what: str) -> list:
    if text is None:
        return [None]
    try:
        values = [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise OptionError(f"--{what} {text!r}: give a comma list, e.g. --{what} {'10,50' if cast is int else '0,1,3'}") from None
    if not values or (cast is not str and min(values) < (1 if cast is int else 0)):
        raise OptionError(f"--{what} {text!r}: give {'step counts ≥ 1' if cast is int else 'scales ≥ 0'}, comma-separated")
    return values


@click.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path())
@click.option("--metric", "metric_names", required=True, multiple=True, metavar="NAME", help="A registered metric; repeatable.")
@click.option("--sampler", "samplers", metavar="A,B", help="Samplers to compare (default: each checkpoint's own).")
@click.option("--steps", "steps", metavar="K1,K2", help="Step counts to compare, e.g. 10,50,200.")
@click.option("--guidance", metavar="NAME", help="Guidance the --scale values apply to (e.g. cfg).")
@click.option("--scale", "scales", metavar="W1,W2", help="Guidance scales to compare, e.g. 0,1,3.")
@click.option("-n", "--num", "n", type=click.IntRange(min=1), help="Samples per measurement (each metric's option n).")
@click.option("--set", "sets", metavar="metric.OPTION=VALUE", multiple=True, help="Set a metric option; repeatable.")
@click.option("--seed", type=click.IntRange(min=0, max=(1 << 63) - 1), default=0, show_default=True,
              help="One seed for every cell, so differences come from the parts compared.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Write compare.csv and compare.png here.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def compare(checkpoints, metric_names, samplers, steps, guidance, scales, n, sets, seed, out_dir, device) -> None:
    """Measure every CHECKPOINT × sampler × steps × guidance scale with every metric.

    Schedules are compared through checkpoints trained with each (one per schedule); samplers,
    step counts and guidance scales by sampling the same checkpoint each way. Writes a table,
    OUT/compare.csv (one row per measurement) and OUT/compare.png (value ± spread per metric).

    \b
    Examples:
      difftk compare mnist-cfg --metric fid --metric accuracy --steps 10,25,50 --scale 0,1,3 --guidance cfg -n 200 -o cmp
      difftk compare runs/linear runs/cosine --metric fid --sampler ddim,ancestral --steps 50,200 -o schedules
    """
    options = parse_sets(sets, ("metric",)).get("metric", {})
    if n is not None:
        options["n"] = str(n)
    scale_values = _list(scales, float, "scale")
    if scales is not None and guidance is None:
        raise OptionError("--scale needs --guidance NAME (e.g. --guidance cfg)")
    grid = dict(samplers=_list(samplers, str, "sampler"), steps=_list(steps, int, "steps"), scales=scale_values)
    cells = len(checkpoints) * len(grid["samplers"]) * len(grid["steps"]) * len(grid["scales"]) * len(metric_names)
    out.print(f"comparing {cells} measurements")
    per_metric = metric_options(metric_names, options, n_flag=n is not None)

    def show(row) -> None:
        r = row.result
        out.print(escape(f"  {row.schedule} · {row.sampler} · steps {row.steps or 'default'} · scale "
                         f"{row.scale if row.scale is not None else '-'}: {r.name} = {r.value:.4f} ± {r.spread:.4f}"))

    rows = run_grid(checkpoints, metric_names, guidance=guidance, metric_options=per_metric, seed=seed,
                    device=resolve_device(device), on_row=show, **grid)
    table = Table(title="difftk compare", title_justify="left")
    for col in ("checkpoint", "schedule", "sampler", "steps", "scale", "metric", "value ± spread", "n"):
        table.add_column(col, justify="right" if col in ("steps", "scale", "n") else "left")
    for row in rows:
        r = row.result
        table.add_row(escape(row.checkpoint), row.schedule, row.sampler, str(row.steps or "default"),
                      "-" if row.scale is None else f"{row.scale:g}", r.name, f"{r.value:.4f} ± {r.spread:.4f}", f"{r.n:,}")
    out.print(table)
    for caveat in dict.fromkeys(row.result.caveat for row in rows if row.result.caveat):
        warn(caveat)
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(rows, target / "compare.csv")
    png = plot_grid([row.as_dict() for row in rows], target / "compare.png")
    out.print(escape(f"wrote {csv_path} and {png}"))
