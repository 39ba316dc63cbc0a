"""`difftk train-classifier`: train a noise-aware classifier for classifier guidance; the
training lives in difftk.classifier."""

from __future__ import annotations

from pathlib import Path

import click
import torch
from difftk.checkpoint.classifier_file import save_classifier
from difftk.checkpoint.files import read_checkpoint, resolve_path
from difftk.data.pipeline_data import describe_dataset, load_dataset
from difftk.errors import DifftkError, OptionError
from difftk.pipeline.compose import create_component
from difftk.pipeline.spec import PipelineSpec
from difftk.runtime.device import resolve_device
from difftk.training.classifier import build_classifier, default_classifier, noisy_accuracy, train_classifier
from rich.markup import escape

from difftk_cli.console import out
from difftk_cli.options import DATA_OPTION, Command, OutputPath, parse_data, parse_data_options, parse_sets


def _schedule_spec(source: str):
    """The schedule spec of a pipeline TOML file or of a checkpoint (file or run directory)."""
    path = Path(source)
    if path.is_dir() or path.suffix == ".safetensors":
        spec = read_checkpoint(resolve_path(path)).spec
    else:
        spec = PipelineSpec.load(path)
    if "schedule" not in spec:
        raise OptionError(f"{source} has no schedule: the classifier is trained on data noised by the model's schedule")
    return spec["schedule"]


@click.command("train-classifier", cls=Command)
@click.argument("pipeline_or_checkpoint", metavar="PIPELINE_OR_CHECKPOINT", type=click.Path())
@click.option("--data", required=True, metavar="NAME[:PATH]", help="Labelled dataset to train on (e.g. mnist).")
@DATA_OPTION
@click.option("--steps", type=click.IntRange(min=1), required=True, help="Optimizer steps.")
@click.option("--out", "out_file", type=OutputPath("classifier"), required=True, help="Write the classifier here (.safetensors).")
@click.option("--model", metavar="NAME", help="Classifier component (default: the first for the data: noisy-cnn for images, noisy-mlp for points).")
@click.option("--set", "sets", metavar="classifier.OPTION=VALUE", multiple=True, help="Set a classifier option; repeatable.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True, help="Examples per step.")
@click.option("--lr", type=click.FloatRange(min=0, max=1, min_open=True), default=1e-3, show_default=True, help="AdamW learning rate.")
@click.option("--seed", type=click.IntRange(min=0, max=(1 << 32) - 1), default=0, show_default=True, help="Seed of the weights, data order and noise.")
@click.option("--balance", is_flag=True, help="Weigh each class alike in the loss (N/(K·n_k) per example), "
              "for data whose classes are in unequal numbers.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def train_classifier_command(pipeline_or_checkpoint, data, data_options, steps, out_file, model, sets, batch_size, lr, seed,
                             balance, device) -> None:
    """Train a noise-aware classifier p(y | x_t, t) for classifier guidance (Dhariwal & Nichol 2021).

    Examples x₀ are noised to x_t with the schedule of PIPELINE_OR_CHECKPOINT (a pipeline TOML
    or a checkpoint) at random t, and the classifier learns their labels by cross-entropy.
    The file (safetensors, written atomically) records the classifier, the schedule and the
    data; accuracy on the test split is printed at random t and on clean data.

    \b
    Examples:
      difftk train-classifier runs/mnist/checkpoint.safetensors --data mnist --steps 1000 --out clf.safetensors
      difftk sample runs/mnist -o g.png --guidance classifier --classifier clf.safetensors --scale 2
    """
    options = parse_sets(sets, ("classifier",), why=" (e.g. classifier.base_channels=16)")
    if Path(out_file).suffix != ".safetensors":
        raise OptionError(f"--out {out_file}: a classifier is a .safetensors file: give --out NAME.safetensors")
    name, path = parse_data(data)
    data_options = parse_data_options(data_options)
    device = resolve_device(device)
    schedule_spec = _schedule_spec(pipeline_or_checkpoint)
    schedule = create_component("schedule", None, None, base=schedule_spec)
    dataset, dataset_spec = load_dataset(name, path, options=data_options)
    chosen = model or default_classifier(dataset.kind)
    torch.manual_seed(seed)
    classifier, spec = build_classifier(chosen, dataset, options.get("classifier"))
    loss = train_classifier(classifier, schedule, dataset, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                            device=device, balance=balance)
    metrics = {"loss": loss}
    try:
        test, _ = load_dataset(name, path, split="test", options=data_options)
    except DifftkError:  # a dataset without a test split: report the training loss only
        test = None
    if test is not None and test.labels is not None:
        metrics["test_accuracy_noisy"] = noisy_accuracy(classifier, schedule, test, device=device)
        metrics["test_accuracy_clean"] = noisy_accuracy(classifier, schedule, test, t_max=0.0, device=device)
        metrics["test_accuracy_clean_balanced"] = noisy_accuracy(classifier, schedule, test, t_max=0.0, device=device,
                                                                 balanced=True)
    save_classifier(out_file, classifier, spec, schedule=schedule_spec, dataset=describe_dataset(dataset, dataset_spec),
                    step=steps, metrics=metrics)
    acc = "".join(f", {k.removeprefix('test_')} {v:.3f}" for k, v in metrics.items() if k.startswith("test_"))
    out.print(escape(f"wrote {out_file}: classifier {chosen} ({', '.join(f'{k}={v}' for k, v in spec.options)}), "
                     f"{steps} steps on {name}, schedule {schedule_spec.name}; loss {loss:.4f}{acc}"))
