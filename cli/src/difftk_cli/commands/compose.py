"""`difftk compose`: assemble a pipeline from registered components and write it as TOML."""

from __future__ import annotations

import click
from difftk.pipeline.compose import Pipeline
from difftk.pipeline.compose import compose as compose_pipeline
from difftk.pipeline.spec import PIPELINE_KINDS, PipelineSpec
from rich.markup import escape
from rich.tree import Tree

from difftk_cli.console import out
from difftk_cli.options import parse_sets


def pipeline_tree(pipeline: Pipeline, title: str = "pipeline") -> Tree:
    tree = Tree(f"[bold]{escape(title)}[/]")
    for kind, comp in pipeline.spec.components:
        origin = f" [dim]({comp.plugin} {comp.version or ''})[/]" if comp.plugin else ""
        node = tree.add(f"[bold cyan]{kind}[/]: [bold]{escape(comp.name)}[/]{origin}")
        for key, value in comp.options:
            node.add(f"{key} = {escape(repr(value))}")
    return tree


@click.command()
@click.option("--schedule", metavar="NAME", help="Noise schedule, e.g. linear, cosine.")
@click.option("--sampler", metavar="NAME", help="Sampler, e.g. ancestral, ddim.")
@click.option("--guidance", metavar="NAME", help="Guidance, e.g. cfg (optional).")
@click.option("--denoiser", metavar="NAME", help="Denoiser network, e.g. unet-attn (optional).")
@click.option("--objective", metavar="NAME", help="Training objective, e.g. simple (optional).")
@click.option("--set", "sets", metavar="KIND.OPTION=VALUE", multiple=True, help="Set an option; repeatable.")
@click.option("--from", "from_file", type=click.Path(dir_okay=False), help="Start from a pipeline file; other flags override it.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the pipeline as TOML here.")
def compose(schedule, sampler, guidance, denoiser, objective, sets, from_file, output) -> None:
    """Assemble a pipeline from registered components, check it, and print it.

    Names are checked against the installed plugins (with a did-you-mean), options against
    each component's allowed values, and the components against each other.

    \b
    Examples:
      difftk compose --schedule linear --sampler ddim -o p.toml
      difftk compose --schedule linear --sampler ddim --set sampler.eta=0.5 --set schedule.T=500
      difftk compose --from p.toml --sampler ancestral
    """
    given = {"schedule": schedule, "sampler": sampler, "guidance": guidance, "denoiser": denoiser, "objective": objective}
    chosen: dict = {}
    if from_file:
        spec = PipelineSpec.load(from_file)
        chosen = {kind: {"name": c.name, "options": c.options_dict} for kind, c in spec.components}
    for kind in PIPELINE_KINDS:
        if given[kind]:
            chosen[kind] = given[kind]
    pipeline = compose_pipeline(**chosen, options=parse_sets(sets), from_strings=True)
    out.print(pipeline_tree(pipeline, title=f"pipeline{f' → {output}' if output else ''}"))
    if output:
        pipeline.save(output)
        out.print(f"wrote {escape(str(output))}")
