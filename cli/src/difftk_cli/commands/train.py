"""`difftk train`: train a composed pipeline on a dataset; the loop lives in difftk.training."""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import attrs
import click
from click.core import ParameterSource
from difftk.data.pipeline_data import load_dataset
from difftk.errors import OptionError
from difftk.pipeline.spec import PipelineSpec
from difftk.runtime import distributed
from difftk.runtime.device import resolve_device
from difftk.runtime.fastpath import PRECISIONS
from difftk.training.config import LR_SCHEDULES, TrainConfig, changed_settings
from difftk.training.job import resume_data, resume_state
from difftk.training.job import train as run_training
from difftk.training.rundir import RunPaths
from difftk.training.tracking import Tracking, create_loggers
from rich.markup import escape

from difftk_cli import experiment
from difftk_cli.console import out
from difftk_cli.options import DATA_OPTION, Command, OutputPath, parse_data, parse_data_options
from difftk_cli.progress import RichTrainReporter

#: exit status of a run stopped by Ctrl-C (after its checkpoint was written); 128 + N for signal N
INTERRUPTED = 130


def _default(name: str):
    """The TrainConfig default of option ``name`` (one source for the library and --help)."""
    return attrs.fields_dict(TrainConfig)[name].default


def _given(ctx: click.Context, options: dict, from_file: set[str]) -> dict:
    """The options the user gave, on the command line or in the file's [training] (on --resume the
    rest keep the run's values)."""
    return {k: v for k, v in options.items() if k in from_file or ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}


@click.command(cls=Command, reads=("init",))
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--data", metavar="NAME[:PATH]",
              help="Dataset to train on, with its path when it reads one (e.g. mnist, cifar10:/data/cifar); "
              "on --resume the run's own.")
@DATA_OPTION
@click.option("--steps", type=click.IntRange(min=1), help="Train up to this many optimizer steps in total (required, here "
              "or in [training]).")
@click.option("--out", "out_dir", type=OutputPath("run"),
              help="Run directory: checkpoint.safetensors, samples/step_XXXXXX.png, log.jsonl (required, here or in "
              "[training]).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint, exactly.")
@click.option("--batch-size", type=click.IntRange(min=1), default=_default("batch_size"), show_default=True, help="Examples per step.")
@click.option("--lr", type=click.FloatRange(min=0, max=1, min_open=True), default=_default("lr"), show_default=True,
              help="AdamW learning rate after warm-up.")
@click.option("--weight-decay", type=click.FloatRange(min=0, max=1), default=_default("weight_decay"), show_default=True,
              help="AdamW decoupled weight decay.")
@click.option("--warmup", type=click.IntRange(min=0), default=_default("warmup"), show_default=True, help="Steps of linear learning-rate warm-up.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=_default("lr_schedule"), show_default=True,
              help="After warm-up: hold --lr, or decay it (cosine or linear) to --lr-final at --decay-steps.")
@click.option("--lr-final", type=click.FloatRange(min=0, max=1), default=_default("lr_final"), show_default=True,
              help="The learning rate a cosine or linear decay ends at.")
@click.option("--decay-steps", type=click.IntRange(min=1), default=_default("decay_steps"),
              help="The step the decay ends at; default: --steps, the end of the run.")
@click.option("--grad-clip", type=click.FloatRange(min=0, min_open=True), default=_default("grad_clip"), show_default=True,
              help="Clip the gradient norm to this.")
@click.option("--ema-decay", type=click.FloatRange(min=0, max=1, max_open=True), default=_default("ema_decay"), show_default=True,
              help="Decay of the EMA of the weights that sampling uses.")
@click.option("--seed", type=click.IntRange(min=0, max=(1 << 32) - 1), default=_default("seed"), show_default=True,
              help="Seed of the weights, data order, noise and sample grids.")
@click.option("--sample-every", type=click.IntRange(min=0), default=_default("sample_every"), show_default=True,
              help="Write a sample grid every K steps (and at the end); 0 = never.")
@click.option("--sample-steps", type=click.IntRange(min=1), default=_default("sample_steps"),
              help="Sampler steps for the sample grids; default: the sampler's own (50 for ddim).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=_default("checkpoint_every"), show_default=True,
              help="Write the checkpoint every K steps (and at the end).")
@click.option("--log-every", type=click.IntRange(min=1), default=_default("log_every"), show_default=True,
              help="Append the mean loss to log.jsonl every K steps.")
@click.option("--eval-every", type=click.IntRange(min=0), default=_default("eval_every"), show_default=True,
              help="Score --eval-metric on the EMA model every K steps (and at the end), into log.jsonl; 0 = never.")
@click.option("--eval-metric", "eval_metrics", metavar="NAME[,NAME]", multiple=True,
              help="A registered metric to score every --eval-every steps (e.g. sliced-wasserstein); repeatable.")
@click.option("--eval-n", type=click.IntRange(min=1), default=_default("eval_n"),
              help="Samples per measurement, for the metrics with an option n; default: each metric's own.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=_default("precision"), show_default=True,
              help="auto (bf16 autocast on CUDA, fp32 on the CPU), fp32, tf32 or bf16.")
@click.option("--channels-last", is_flag=True, default=_default("channels_last"), help="Channels-last memory format for images.")
@click.option("--compile", "compile", is_flag=True, default=_default("compile"), help="Train through torch.compile.")
@click.option("--balance", is_flag=True, default=_default("balance"),
              help="Weigh each example's loss so that every class counts as if the classes were in equal numbers.")
@click.option("--workers", type=click.IntRange(min=0, max=64), default=_default("workers"), show_default=True,
              help="Processes that read and decode batches ahead (DataLoader workers); 0 = in the training process.")
@click.option("--init", metavar="CHECKPOINT", default=None,
              help="Fine-tune: start from this checkpoint's EMA weights (a file, run directory or shipped model's name).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes to train in (torch.distributed DDP via torchrun): each takes B of a global batch of N×B.")
@click.option("--log-to", "log_to", metavar="NAME[,NAME]", multiple=True,
              help="Also send the run's configuration, records and sample grids to these loggers "
              "(tensorboard, mlflow, wandb: in the run directory, offline); repeatable.")
@click.pass_context
def train(ctx, pipeline, **params) -> None:
    """Train PIPELINE (a TOML file from `difftk compose`) on a dataset.

    The denoiser's data options (in_channels, image_size, num_classes) are taken from the
    data, and the options it derives from them (unet-attn's attention resolutions) follow.
    Samples are drawn with an EMA of the weights. Ctrl-C writes a checkpoint and stops;
    --resume continues bit for bit. On --resume, options left out keep the run's values, and
    the data is the run's own (--data may be left out; other data is refused).

    PIPELINE may hold a [training] section with any of these options (without their dashes,
    e.g. steps = 2000, data = "mnist", log_to = ["tensorboard"]): then `difftk train
    exp.toml` alone runs the experiment, and the options given here override the file's.

    \b
    Examples:
      difftk compose --schedule linear --sampler ddim --denoiser unet-attn --objective simple -o p.toml
      difftk train p.toml --data mnist --steps 2000 --out runs/mnist
      difftk train p.toml --data cifar10:/data/cifar-10 --steps 50000 --batch-size 128 --out runs/cifar
      difftk train p.toml --steps 4000 --out runs/mnist --resume
      difftk train p.toml --data image-folder:photos --data-option image_size=32 --data-option flip=true --steps 5000 --workers 2 --out runs/photos
      difftk train p.toml --data two-moons --steps 2000 --out runs/moons --eval-every 200 --eval-metric sliced-wasserstein
      difftk train p.toml --data mnist --steps 2000 --out runs/ddp --nproc 2
      torchrun --nproc-per-node 4 -m difftk_cli train p.toml --data mnist --steps 2000 --out runs/ddp
      difftk train exp.toml --log-to tensorboard,mlflow,wandb
    """
    PipelineSpec.load(pipeline)  # a missing or broken file is said before its [training] is read
    params, from_file = experiment.merge(ctx, pipeline, params)
    data, data_options, steps, out_dir, resume, device, nproc, log_to = (
        params.pop(k) for k in ("data", "data_options", "steps", "out_dir", "resume", "device", "nproc", "log_to"))
    options = params
    if steps is None or out_dir is None:
        missing = "--steps N" if steps is None else "--out DIR"
        raise OptionError(f"{missing} is needed: give it on the command line, or as "
                          f"{missing.split()[0].lstrip('-')} = … in the [training] section of {pipeline}")
    if "out_dir" in from_file:  # the output guard ran on the command line's values: again on the file's
        ctx.command.check_outputs({**ctx.params, **options, "out_dir": out_dir})
    if nproc > 1 and not distributed.launched():
        argv = [a for a in sys.argv[1:]]
        i = next((k for k, a in enumerate(argv) if a == "--nproc" or a.startswith("--nproc=")), None)
        if i is not None:  # else nproc came from the file's [training]: each process reads it, launched
            del argv[i:i + (1 if "=" in argv[i] else 2)]
        sys.exit(distributed.launch(nproc, argv))
    if data is None and not resume:
        raise OptionError("--data names the dataset to train on (e.g. --data mnist or --data image-folder:DIR); "
                          "only --resume takes the run's own")
    given_data = parse_data(data) if data is not None else None
    ranks, device = distributed.init(resolve_device(device))
    try:
        _train(ctx, pipeline, given_data, parse_data_options(data_options), steps, out_dir, resume, device, ranks,
               options, from_file, [n.strip() for text in log_to for n in text.split(",") if n.strip()])
    finally:
        distributed.finish()


def _check_eval(settings: dict, given: dict) -> None:
    """--eval-metric given on the command line needs --eval-every (on --resume, the run's own); the other
    half of the rule, --eval-every without a metric, is TrainConfig's own check."""
    metrics, every = settings.get("eval_metrics"), settings.get("eval_every")
    if metrics and not every and "eval_metrics" in given:
        raise OptionError(f"--eval-metric {','.join(metrics)} is scored every --eval-every K steps: give --eval-every K "
                          "(e.g. --eval-every 500)")


def _train(ctx, pipeline, given_data, data_options, steps, out_dir, resume, device, ranks, options, from_file,
           log_to) -> None:
    if not ranks.main:  # one console: rank 0 prints, the others train quietly
        out.quiet = True
    loggers = create_loggers(log_to) if ranks.main else {}  # an unknown name or a missing library: before any work
    paths = RunPaths(Path(out_dir))
    if resume and ranks.main:  # a live run is refused first, though it may not have a checkpoint yet
        paths.check_unlocked()
    spec = PipelineSpec.load(pipeline)
    options["eval_metrics"] = tuple(n.strip() for text in options["eval_metrics"] for n in text.split(",") if n.strip())
    if not resume:
        _check_eval(options, options)
    overrides = {"steps": steps, **(_given(ctx, options, from_file) if resume else options)}
    checkpoint = None
    if resume:
        checkpoint, config = resume_state(out_dir, **overrides)
        _check_eval(attrs.asdict(config), _given(ctx, options, from_file))
        changed = changed_settings(checkpoint.train_config, config)
        if changed and ranks.main:
            out.print(escape(f"resuming with changed settings: {'; '.join(changed)}"))
        if checkpoint.step >= config.steps:
            out.print(escape(f"{out_dir} is already at step {checkpoint.step:,} (--steps {config.steps:,}): "
                             "nothing to train; raise --steps to continue"))
            return
    else:
        config = TrainConfig(**overrides)
    if checkpoint is not None:
        dataset, dataset_spec = resume_data(checkpoint.dataset, given_data, data_options)
    else:
        dataset, dataset_spec = load_dataset(*given_data, options=data_options)
    reporter = RichTrainReporter(out)
    result = run_training(spec, dataset, config, out=out_dir, resume=resume, device=device, source=pipeline,
                          reporter=Tracking(loggers, reporter) if loggers else reporter, dataset_spec=dataset_spec,
                          checkpoint=checkpoint)
    if result.interrupted:
        again = shlex.join(["difftk", "train", pipeline, "--steps", str(config.steps), "--out", out_dir, "--resume"])
        by = signal.Signals(result.signal).name if result.signal else "SIGINT"
        out.print(f"stopped by {by} at step {result.step:,}: checkpoint → {escape(str(paths.checkpoint))}")
        out.print(f"continue with: {escape(again)}")
        sys.exit(128 + int(result.signal) if result.signal else INTERRUPTED)
    loss = f" (loss {result.loss:.4f})" if result.loss is not None else ""
    out.print(f"[bold green]done[/]: step {result.step:,}{loss}")
    out.print(f"  checkpoint: {escape(str(paths.checkpoint))}")
    if result.samples:
        out.print(f"  samples:    {escape(str(paths.samples))}/ (latest {escape(result.samples[-1].name)})")
    out.print(f"  log:        {escape(str(paths.log))}")
    if result.measurements:
        last = result.measurements[-1][0]
        shown = ", ".join(f"{r.name} {r.value:.4g}" for step, r in result.measurements if step == last)
        out.print(escape(f"  measured:   {shown} at step {last:,}; curves: difftk plot {shlex.quote(out_dir)} -o curves.png"))
    out.print(f"  next:       difftk sample {escape(shlex.quote(str(paths.checkpoint)))} -n 64 -o samples.png")
