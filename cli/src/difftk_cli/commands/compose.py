"""`difftk compose`: assemble a pipeline from registered components and write it as TOML."""

from __future__ import annotations

import click
from difftk.data.pipeline_data import data_options as data_options_of
from difftk.data.pipeline_data import latent_shape, load_dataset, size_to_data
from difftk.errors import OptionError
from difftk.pipeline.compose import Pipeline, create_component
from difftk.pipeline.compose import compose as compose_pipeline
from difftk.pipeline.spec import PIPELINE_KINDS, ComponentSpec, PipelineSpec
from rich.markup import escape
from rich.tree import Tree

from difftk_cli.console import out
from difftk_cli.options import DATA_OPTION, Command, OutputPath, parse_data, parse_data_options, parse_sets


def pipeline_tree(pipeline: Pipeline, title: str = "pipeline") -> Tree:
    tree = Tree(f"[bold]{escape(title)}[/]")
    for kind, comp in pipeline.spec.components:
        origin = f" [dim]({comp.plugin} {comp.version or ''})[/]" if comp.plugin else ""
        node = tree.add(f"[bold cyan]{kind}[/]: [bold]{escape(comp.name)}[/]{origin}")
        for key, value in comp.options:
            node.add(f"{key} = {escape(repr(value))}")
    return tree


@click.command(cls=Command)
@click.option("--schedule", metavar="NAME", help="Noise schedule, e.g. linear, cosine.")
@click.option("--sampler", metavar="NAME", help="Sampler, e.g. ancestral, ddim.")
@click.option("--guidance", metavar="NAME", help="Guidance, e.g. cfg (optional).")
@click.option("--denoiser", metavar="NAME", help="Denoiser network, e.g. unet-attn (optional).")
@click.option("--objective", metavar="NAME", help="Training objective, e.g. simple (optional).")
@click.option("--autoencoder", metavar="NAME",
              help="First stage, e.g. kl (optional): training encodes, sampling decodes, the rest works on latents.")
@click.option("--set", "sets", metavar="KIND.OPTION=VALUE", multiple=True, help="Set an option; repeatable.")
@click.option("--from", "from_file", type=click.Path(dir_okay=False), help="Start from a pipeline file; other flags override it.")
@click.option("--data", metavar="NAME[:PATH]",
              help="Fit the denoiser to this dataset now: its data options and those derived from them are written out.")
@DATA_OPTION
@click.option("-o", "--output", type=OutputPath("pipeline"), help="Write the pipeline as TOML here.")
def compose(schedule, sampler, guidance, denoiser, objective, autoencoder, sets, from_file, data, data_options, output) -> None:
    """Assemble a pipeline from registered components, check it, and print it.

    Names are checked against the installed plugins (with a did-you-mean), options against
    each component's allowed values, and the components against each other. With --data the
    denoiser's options that describe the data (channels, image size, classes) and those it
    derives from them (unet-attn's attention resolutions) are taken from that dataset;
    otherwise `difftk train` takes them from its data.

    \b
    Examples:
      difftk compose --schedule linear --sampler ddim -o p.toml
      difftk compose --schedule linear --sampler ddim --set sampler.eta=0.5 --set schedule.T=500
      difftk compose --from p.toml --sampler ancestral
      difftk compose --schedule cosine --sampler ddim --denoiser unet-attn --objective simple --data image-folder:photos -o p.toml
      difftk compose --schedule cosine --sampler ddim --denoiser unet-attn --objective simple --autoencoder kl \
        --set autoencoder.pad=2 --set autoencoder.weights=mnist-kl.safetensors -o latent.toml
    """
    given = {"schedule": schedule, "sampler": sampler, "guidance": guidance, "denoiser": denoiser, "objective": objective,
             "autoencoder": autoencoder}
    chosen: dict = {}
    if from_file:
        spec = PipelineSpec.load(from_file)
        chosen = {kind: {"name": c.name, "options": c.options_dict} for kind, c in spec.components}
    for kind in PIPELINE_KINDS:
        if given[kind]:
            chosen[kind] = given[kind]
    options = parse_sets(sets)
    if data is not None:  # the data's options first, so that options that depend on them build
        if "denoiser" not in chosen:
            raise OptionError("--data fits the denoiser to the data, but the pipeline has none: give --denoiser NAME")
        dataset, _ = load_dataset(*parse_data(data), options=parse_data_options(data_options))
        name = chosen["denoiser"] if isinstance(chosen["denoiser"], str) else chosen["denoiser"]["name"]
        shape = None
        if "autoencoder" in chosen:  # the denoiser works on the latents: fit it to their shape
            given_ae = chosen["autoencoder"] if isinstance(chosen["autoencoder"], dict) else {"name": chosen["autoencoder"]}
            first = create_component("autoencoder", given_ae["name"],
                                    {**given_ae.get("options", {}), **options.get("autoencoder", {})})
            shape = latent_shape(first, dataset)
        options["denoiser"] = {**options.get("denoiser", {}), **data_options_of(ComponentSpec(name, {}), dataset, shape)}
    elif data_options:
        raise OptionError("--data-option sets an option of the dataset given by --data: give --data NAME[:PATH]")
    pipeline = compose_pipeline(**chosen, options=options, from_strings=True)
    if data is not None:
        pipeline, _ = size_to_data(pipeline, dataset, source="the pipeline", kinds=("denoiser",))
    out.print(pipeline_tree(pipeline, title=f"pipeline{f' → {output}' if output else ''}"))
    if output:
        pipeline.save(output)
        out.print(f"wrote {escape(str(output))}")
