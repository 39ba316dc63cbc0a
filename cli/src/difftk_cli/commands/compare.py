"""`difftk compare`: a grid of measurements — checkpoints × samplers × steps × guidance scales × metrics
× seeds — with the mean ± 95 % CI of each cell, Welch's t-test against the best cell, and an HTML report."""

from __future__ import annotations

import shlex
import sys

import click
from difftk.data.images import picture
from difftk.errors import OptionError
from difftk.evaluation.compare import compare as run_grid
from difftk.evaluation.compare import write_csv
from difftk.evaluation.summary import better_of, summarize
from difftk.pipeline.compose import create_component
from difftk.runtime.device import resolve_device
from difftk.runtime.files import output_folder
from rich.markup import escape
from rich.table import Table

from difftk_cli.console import out, warn
from difftk_cli.options import Command, OutputPath, metric_options, parse_sets
from difftk_cli.plots import plot_grid
from difftk_cli.report import statistics_note, write_report

#: samples in each cell's grid of the report: a 4×4 grid of images, or a scatter plot of points
REPORT_IMAGES, REPORT_POINTS = 16, 500
#: the dimensions a --reference names a cell by
REFERENCE_KEYS = ("checkpoint", "sampler", "steps", "scale")


def _list(text: str | None, cast, what: str) -> list:
    if text is None:
        return [None]
    try:
        values = [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise OptionError(f"--{what} {text!r}: give a comma list, e.g. --{what} {'10,50' if cast is int else '0,1,3'}") from None
    if not values and cast is str:
        raise OptionError(f"--{what} {text!r} names no {what}: give names, comma-separated (e.g. --{what} ddim,ancestral)")
    if not values or (cast is not str and min(values) < (1 if cast is int else 0)):
        raise OptionError(f"--{what} {text!r}: give {'step counts ≥ 1' if cast is int else 'scales ≥ 0'}, comma-separated")
    return values


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or max(seeds) >= 1 << 63 or len(set(seeds)) != len(seeds):
        raise OptionError(f"--seed {text!r}: give a seed ≥ 0 or distinct seeds, comma-separated (e.g. --seed 0,1,2)")
    return seeds


def _reference(text: str | None, checkpoints, grid) -> dict[str, str]:
    """``sampler=ddim,steps=50`` -> its dict, checked against the grid before anything is measured. (Its errors
    are click's, which are printed as they are: ``steps=50`` here is not the flag ``--steps 50``.)"""
    if text is None:
        return {}
    pairs = dict(p.partition("=")[::2] for p in text.split(",") if p.strip())
    bad = [k for k in pairs if k not in REFERENCE_KEYS]
    if bad or any(not v for v in pairs.values()):
        raise click.ClickException(f"--reference {text!r}: give KEY=VALUE pairs with keys "
                                   f"{', '.join(REFERENCE_KEYS)}, e.g. --reference sampler=ddim,steps=50")
    given = {"checkpoint": [str(c) for c in checkpoints], "sampler": grid["samplers"],
             "steps": [str(k) if k is not None else "default" for k in grid["steps"]],
             "scale": [f"{w:g}" for w in grid["scales"] if w is not None]}
    for key, value in list(pairs.items()):
        if key == "scale":
            try:
                value = pairs[key] = f"{float(value):g}"
            except ValueError:
                raise click.ClickException(f"--reference scale={value!r} is not a number") from None
        values = [v for v in given[key] if v is not None]
        if values and value not in values:
            raise click.ClickException(f"--reference {key}={value} is not in the grid "
                                       f"(it has {', '.join(map(str, values))})")
    free = [k for k in REFERENCE_KEYS if k not in pairs and len(given[k]) > 1]
    if free:
        raise click.ClickException(f"--reference {text!r} names no single cell: add {', '.join(f'{k}=…' for k in free)}")
    return pairs


@click.command(cls=Command)
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path())
@click.option("--metric", "metric_names", required=True, multiple=True, metavar="NAME", help="A registered metric; repeatable.")
@click.option("--sampler", "samplers", metavar="A,B", help="Samplers to compare (default: each checkpoint's own).")
@click.option("--steps", "steps", metavar="K1,K2", help="Step counts to compare, e.g. 10,50,200.")
@click.option("--guidance", metavar="NAME", help="Guidance the --scale values apply to (e.g. cfg).")
@click.option("--scale", "scales", metavar="W1,W2", help="Guidance scales to compare, e.g. 0,1,3.")
@click.option("-n", "--num", "n", type=click.IntRange(min=1), help="Samples per measurement (each metric's option n).")
@click.option("--set", "sets", metavar="KIND.OPTION=VALUE", multiple=True,
              help="Set a metric, sampler or guidance option (metric.n=500, sampler.clip_x0=1, guidance.eta=0); "
                   "repeatable. Sampler options apply to every sampler of the grid, guidance options with every --scale.")
@click.option("--seed", "seed_text", metavar="S[,S2,…]", default="0", show_default=True,
              help="The seeds every cell is measured with (the same in every cell); several give each cell a mean ± CI.")
@click.option("--reference", metavar="KEY=VALUE[,…]",
              help="Test every cell against this one (keys checkpoint, sampler, steps, scale) instead of the best.")
@click.option("-o", "--out", "out_dir", type=OutputPath("compare"), required=True,
              help="Write compare.csv, summary.csv and compare.png here.")
@click.option("--report", "report_dir", type=OutputPath("report"),
              help="Also write a self-contained HTML report, REPORT/index.html (table, plot, samples per cell).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def compare(checkpoints, metric_names, samplers, steps, guidance, scales, n, sets, seed_text, reference, out_dir,
            report_dir, device) -> None:
    """Measure every CHECKPOINT × sampler × steps × guidance scale with every metric, per seed.

    Schedules are compared through checkpoints trained with each; samplers, step counts and
    guidance scales by sampling the same checkpoint each way. Checkpoints that differ only by
    their training seed are pooled into one cell, and so are the --seed values: each cell then
    shows its mean ± 95% Student-t confidence interval, and Welch's t-test says which cells
    differ from the best one (or --reference) at p < 0.05. Writes a table, OUT/compare.csv (one
    row per measurement), OUT/summary.csv (one per cell and metric) and OUT/compare.png.

    \b
    Examples:
      difftk compare mnist-cfg --metric fid --metric accuracy --steps 10,25,50 --scale 0,1,3 --guidance cfg -n 200 -o cmp
      difftk compare runs/linear runs/cosine --metric fid --sampler ddim,ancestral --steps 50,200 -o schedules
      difftk compare mnist-cfg --metric fid --steps 10,25,50 --seed 0,1,2 -n 200 -o cmp --report cmp/report
      difftk compare runs/a-s0 runs/a-s1 runs/b-s0 runs/b-s1 --metric fid --reference checkpoint=runs/a-s0 -o ab
    """
    sets_by_kind = parse_sets(sets, ("metric", "sampler", "guidance"))
    options = sets_by_kind.get("metric", {})
    if n is not None:
        options["n"] = str(n)
    scale_values = _list(scales, float, "scale")
    if scales is None and sets_by_kind.get("guidance"):
        raise OptionError("--set guidance.* applies with each --scale: give --guidance NAME --scale W1,W2")
    if scales is not None and guidance is None:
        raise OptionError("--scale needs --guidance NAME (e.g. --guidance cfg)")
    if sets_by_kind.get("guidance"):  # before measuring: a bad option fails now
        create_component("guidance", guidance, {**sets_by_kind["guidance"], "scale": str(scale_values[0])})
    grid = dict(samplers=_list(samplers, str, "sampler"), steps=_list(steps, int, "steps"), scales=scale_values)
    seeds = _seeds(seed_text)
    for name in grid["samplers"] if sets_by_kind.get("sampler") else ():  # before measuring: a bad option fails now
        if name is not None:
            create_component("sampler", name, sets_by_kind["sampler"])
    ref = _reference(reference, checkpoints, grid)
    cells = len(checkpoints) * len(grid["samplers"]) * len(grid["steps"]) * len(grid["scales"]) * len(metric_names)
    out.print(f"comparing {cells * len(seeds)} measurements" + (f" ({len(seeds)} seeds each)" if len(seeds) > 1 else ""))
    per_metric = metric_options(metric_names, options, n_flag=n is not None)
    grids = {}

    def draw(cell, model, context) -> None:  # one grid of samples per cell, for the report
        if cell not in grids:
            k = REPORT_IMAGES if model.data_kind == "image" else REPORT_POINTS
            grids[cell] = picture(context.samples(k, context.balanced_labels(k)), model.data_kind, model.data.get("bounds"))

    def show(row) -> None:
        r = row.result
        seed = f" · seed {row.seed}" if len(seeds) > 1 else ""
        out.print(escape(f"  {row.schedule} · {row.sampler} · steps {row.steps or 'default'} · scale "
                         f"{row.scale if row.scale is not None else '-'}{seed}: {r.name} = {r.value:.4f} ± {r.spread:.4f}"))

    rows = run_grid(checkpoints, metric_names, guidance=guidance, metric_options=per_metric, seeds=seeds,
                    sampler_options=sets_by_kind.get("sampler"), guidance_options=sets_by_kind.get("guidance"),
                    device=resolve_device(device), on_row=show, on_context=draw if report_dir else None, **grid)
    summaries = summarize(rows, ref)
    against = "reference" if ref else "best"
    table = Table(title="difftk compare", title_justify="left")
    pooled = any(s.k > 1 for s in summaries)
    columns = ("checkpoint", "schedule", "sampler", "steps", "NFE", "scale", "metric",
               "mean ± 95% CI" if pooled else "value ± spread", "k", "n", f"vs {against}")
    for col in columns:
        table.add_column(col, justify="right" if col in ("steps", "NFE", "scale", "k", "n") else "left")
    for s in summaries:
        verdict = s.verdict()
        table.add_row(escape(s.label), s.schedule, s.sampler, str(s.steps or "default"),
                      "adaptive" if s.nfe is None else str(s.nfe), "-" if s.scale is None else f"{s.scale:g}", s.metric, s.interval(), str(s.k), f"{s.n:,}",
                      f"[bold red]{escape(verdict)}[/]" if s.significant else escape(verdict))
    out.print(table)
    note = statistics_note(summaries, against)
    unknown = [m for m in metric_names if better_of(m) is None]
    if unknown and not ref:
        note += f" The better direction of {', '.join(unknown)} is not known: give --reference to test them."
    out.print(escape(note))
    for caveat in dict.fromkeys(row.result.caveat for row in rows if row.result.caveat):
        warn(caveat)
    with output_folder(out_dir) as target:  # a failed write (a full disk) leaves no empty folder behind
        csv_path = write_csv(rows, target / "compare.csv")
        write_csv(summaries, target / "summary.csv")
        png = plot_grid([s.as_dict() for s in summaries], target / "compare.png")
    out.print(escape(f"wrote {csv_path}, {target / 'summary.csv'} and {png}"))
    if report_dir:
        with output_folder(report_dir):
            page = write_report(report_dir, summaries, title="difftk compare", against=against, grids=grids,
                                command=shlex.join(["difftk", *sys.argv[1:]]) if sys.argv[1:2] == ["compare"]
                                else "difftk compare", plot_png=png.read_bytes())
        out.print(escape(f"wrote {page} (one self-contained file)"))
