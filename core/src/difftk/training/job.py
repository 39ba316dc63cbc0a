"""The whole training job: fit the pipeline to the data, check a resume, build the trainer, run it.

:func:`train` is what ``difftk train`` calls; every check passes before anything is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from difftk.checkpoint.files import (
    Checkpoint,
    read_checkpoint,
)
from difftk.components.protocols import grid_size_of
from difftk.data.examples import Examples
from difftk.data.pipeline_data import describe_dataset, load_dataset, size_to_data
from difftk.errors import OptionError
from difftk.pipeline.compose import Pipeline
from difftk.pipeline.spec import ComponentSpec, PipelineSpec
from difftk.runtime import distributed
from difftk.runtime.device import resolve_device
from difftk.training.config import TrainConfig, TrainingError, config_for_resume
from difftk.training.rundir import RunPaths
from difftk.training.trainer import Reporter, Trainer, TrainResult

#: the kinds that decide what is learned; a resumed run must keep them (the sampler may change)
TRAINING_KINDS: tuple[str, ...] = ("schedule", "denoiser", "objective", "autoencoder")


def _plain(spec: ComponentSpec | None) -> ComponentSpec | None:
    """``spec`` with list values as tuples: JSON and TOML give lists where options hold tuples."""
    if spec is None:
        return None
    return ComponentSpec(spec.name, {k: tuple(v) if isinstance(v, list) else v for k, v in spec.options})


def check_resumable(ckpt: Checkpoint, pipeline: Pipeline, dataset_info: Mapping[str, Any]) -> None:
    """A resumed run must learn the same thing: same schedule, denoiser, objective, autoencoder and data."""
    for kind in TRAINING_KINDS:
        old, new = _plain(ckpt.spec.get(kind)), _plain(pipeline.spec.get(kind))
        if old == new:
            continue
        if old is None or new is None or old.name != new.name:
            said = f"{kind} '{old.name}'" if old is not None else f"no {kind}"
            raise TrainingError(f"{ckpt.path} was trained with {said}; the pipeline now has "
                                f"{f'{kind} {new.name!r}' if new is not None else f'no {kind}'}: resume with the same pipeline")
        diff = next(k for k in {**old.options_dict, **new.options_dict}
                    if old.options_dict.get(k) != new.options_dict.get(k))
        raise TrainingError(f"{ckpt.path} was trained with {kind}.{diff}={old.options_dict.get(diff)!r}; the pipeline "
                            f"now sets {new.options_dict.get(diff)!r}: resume with the same pipeline")
    old_g, new_g = ckpt.spec.get("guidance"), pipeline.spec.get("guidance")
    if (old_g is None) != (new_g is None) or (old_g is not None and old_g.name != new_g.name):
        said = f"guidance '{old_g.name}'" if old_g is not None else "no guidance"
        raise TrainingError(f"{ckpt.path} was trained with {said}; the pipeline now has "
                            f"{f'guidance {new_g.name!r}' if new_g is not None else 'no guidance'}: resume with the same "
                            "pipeline (guidance such as cfg changes what is trained)")
    if new_g is not None:  # options that shape training (cfg's label dropout) must not change; the scale may
        keys = getattr(type(pipeline.guidance), "training_options", ())
        old_o, new_o = _plain(old_g).options_dict, _plain(new_g).options_dict
        diff = next((k for k in keys if old_o.get(k) != new_o.get(k)), None)
        if diff is not None:
            raise TrainingError(f"{ckpt.path} was trained with guidance.{diff}={old_o.get(diff)!r}; the pipeline now "
                                f"sets {new_o.get(diff)!r}: resume with the same pipeline")
    check_same_data(ckpt, dataset_info)


def check_same_data(ckpt: Checkpoint, dataset_info: Mapping[str, Any]) -> None:
    """The data of a resumed run must be the run's: same name, shape, size, classes and content
    (the fingerprint; a checkpoint written before fingerprints were recorded skips that check)."""
    saved = ckpt.dataset
    for key in ("name", "shape", "size", "num_classes"):
        if key in saved and saved[key] != dataset_info.get(key):
            raise TrainingError(f"{ckpt.path} was trained on {saved.get('name')} with {key}={saved[key]}; "
                                f"this data has {key}={dataset_info.get(key)}: resume with the run's data")
    old, new = saved.get("fingerprint"), dataset_info.get("fingerprint")
    if old is not None and old != new:
        classes = ""
        if saved.get("class_names") != dataset_info.get("class_names"):
            classes = (f": classes {', '.join(saved.get('class_names') or ['none'])} → "
                       f"{', '.join(dataset_info.get('class_names') or ['none'])}")
        where = saved.get("options", {}).get("path")
        raise TrainingError(f"{ckpt.path} was trained on other {saved.get('name')} data (content fingerprint "
                            f"{old[:12]}, this data {str(new)[:12]}{classes}): resume with the run's data"
                            f"{f' ({where})' if where else ''}, or start a new run with another out=DIR")


def resume_data(saved: Mapping[str, Any], given: tuple[str, str | None] | None = None,
                options: Mapping[str, str] | None = None) -> tuple[Examples, ComponentSpec]:
    """The data of a resumed run, loaded again from what its checkpoint records (``saved``: its
    ``dataset`` metadata): the dataset, its path and its options.

    ``given`` (name, path) may name the same dataset, at another path (the content fingerprint,
    checked by :func:`check_same_data`, decides whether it is the same data); ``options`` may
    repeat the run's. Another dataset, or an option that differs from the run's, is refused.
    """
    options = dict(options or {})
    recorded = dict(saved.get("options") or {})
    if "name" not in saved or ("options" not in saved and given is None):
        raise OptionError("the checkpoint does not record its data's name and options: give data=NAME[:PATH] "
                          "(and its data options) as the run was started")
    name, path = given if given is not None else (saved["name"], None)
    if name != saved["name"]:
        raise OptionError(f"the run was trained on {saved['name']}, and a resumed run keeps its data: drop data={name}")
    if path is None:
        path = recorded.get("path")
    merged = {k: v for k, v in recorded.items() if k != "path"} | ({"path": path} if path is not None else {}) | options
    dataset, spec = load_dataset(name, None, options=merged)
    for key, value in spec.options:
        before = recorded.get(key, value)
        if key != "path" and _plain_value(before) != _plain_value(value):
            raise OptionError(f"the run was trained with the data option {key}={before}, and a resumed run keeps its "
                              f"data options: drop the data option {key}={options.get(key, value)}")
    return dataset, spec


def _plain_value(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else str(value) if isinstance(value, Path) else value


def resume_state(out: str | Path, **overrides: Any) -> tuple[Checkpoint, TrainConfig]:
    """The checkpoint of the run in ``out`` and its configuration with ``overrides`` applied."""
    paths = RunPaths(Path(out))
    paths.prepare(resume=True)
    ckpt = read_checkpoint(paths.checkpoint)
    return ckpt, config_for_resume(ckpt.train_config, source=str(ckpt.path), **overrides)


def train(spec: PipelineSpec | Pipeline, dataset: Examples, config: TrainConfig, *,
          out: str | Path | None = None, resume: bool = False, device: str | torch.device | None = None,
          reporter: Reporter | None = None, dataset_spec: ComponentSpec | None = None,
          source: str = "pipeline", checkpoint: Checkpoint | None = None) -> TrainResult:
    """Fit the pipeline to the data, train it, and write the run to ``out``.

    With ``resume`` the run in ``out`` continues from its checkpoint (read here unless given
    as ``checkpoint``); otherwise ``out`` must not hold a run yet. Nothing is written before
    every check has passed.
    """
    paths = RunPaths(Path(out)) if out is not None else None
    ranks = distributed.current()
    if paths is None and resume:
        raise OptionError("resume needs the run directory (out)")
    owner = paths is not None and ranks.main  # one process writes the run directory, and holds its lock
    with paths.lock() if owner else contextlib.nullcontext():
        if owner:
            note = paths.prepare(resume)
            if note and reporter is not None:  # a run dead before its first checkpoint, started over
                reporter.note(note)
        if paths is not None:
            distributed.barrier(ranks)
        return _train_locked(spec, dataset, config, out=out, resume=resume, device=device, reporter=reporter,
                             dataset_spec=dataset_spec, source=source, checkpoint=checkpoint, paths=paths)


def _train_locked(spec, dataset, config, *, out, resume, device, reporter, dataset_spec, source, checkpoint,
                  paths) -> TrainResult:
    device = resolve_device(device)
    if resume and checkpoint is None:
        checkpoint = read_checkpoint(paths.checkpoint)
    torch.manual_seed(config.seed)
    pipeline, filled = size_to_data(spec, dataset, source=source)
    T = grid_size_of(pipeline.schedule)
    if config.sample_steps is not None and T is not None and config.sample_steps > T:
        raise OptionError(f"sample_steps={config.sample_steps} is more than the schedule's T={T}: use at most {T}")
    world = distributed.current().world
    if config.batch_size * world > len(dataset):
        raise OptionError(f"batch_size={config.batch_size}{f' × {world} processes' if world > 1 else ''} is more than the "
                          f"{len(dataset):,} examples of the data: use at most {len(dataset) // world:,}")
    info = describe_dataset(dataset, dataset_spec)
    if checkpoint is not None:
        check_resumable(checkpoint, pipeline, info)
    trainer = Trainer(pipeline, dataset, config, device=device, out=out, dataset_info=info, filled=filled)
    if checkpoint is not None:
        trainer.load_state(checkpoint)
    elif config.init is not None:
        trainer.warm_start(read_checkpoint(config.init))
    return trainer.fit(reporter)
