"""Reading a diffusers model folder as a difftk :class:`~difftk.model.Model`.

Two layouts are read:

- a pipeline folder, as ``DDPMPipeline.save_pretrained`` or ``DDIMPipeline.save_pretrained``
  writes it: ``model_index.json``, ``unet/`` (``config.json`` and the weights) and
  ``scheduler/scheduler_config.json``;
- a bare ``UNet2DModel`` folder (``config.json`` and the weights) with the scheduler's
  ``scheduler_config.json`` beside its ``config.json`` (or given as ``scheduler=FILE``).

An optional ``difftk.json`` in the folder holds the bridge's own settings: ``null_class``
(the UNet's last class embedding is the null class ∅ of cfg), ``scheduler`` (the scheduler
config file, relative to the folder) and ``dataset`` (the registered dataset the model was
trained on, ``{"name": ..., "options": {...}}``, a ``path`` option relative to the folder: the
held-out data of ``difftk evaluate`` and ``compare``). The pipeline built is made of registered components only:
schedule ``diffusers``, denoiser ``diffusers-unet``, the sampler the scheduler class names, and
``cfg`` guidance when the UNet has a null class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import difftk
import torch
from difftk.checkpoint.files import Checkpoint
from difftk.errors import CheckpointError
from difftk.model import Model

from difftk_diffusers.config import SchedulerConfig, read_scheduler_config
from difftk_diffusers.denoiser import DiffusersUNet, unet_problem

#: pipelines whose folder is a UNet2DModel and a scheduler, nothing else
PIPELINES: tuple[str, ...] = ("DDPMPipeline", "DDIMPipeline")
#: the files a UNet's weights may be in (diffusers' names)
WEIGHTS: tuple[str, ...] = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                            "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin.index.json")
#: the bridge's settings file in a model folder, and the keys it may hold
SETTINGS_FILE, SETTINGS = "difftk.json", ("null_class", "scheduler", "dataset")
#: what a folder that is meant to be a diffusers model has
MARKERS: tuple[str, ...] = ("model_index.json", "config.json", "scheduler_config.json", "unet", "scheduler", SETTINGS_FILE)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} cannot be read as JSON: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, not a {type(data).__name__}")
    return data


def is_diffusers_folder(source: Any) -> bool:
    """Whether ``source`` is a directory with any of the files a diffusers model folder has."""
    try:
        path = Path(source)
        return path.is_dir() and any((path / name).exists() for name in MARKERS)
    except (TypeError, OSError):
        return False


def locate(folder: Path, scheduler: str | Path | None = None) -> tuple[Path, Path, str]:
    """(the UNet's folder, the scheduler config file, the scheduler class to assume) of a model folder."""
    index = folder / "model_index.json"
    if index.is_file():
        info = _json(index)
        name = info.get("_class_name")
        if name not in PIPELINES:
            raise CheckpointError(f"{index}: pipeline {name!r} is not supported (supported: {', '.join(PIPELINES)}, "
                                  "a UNet2DModel and a DDPM or DDIM scheduler)")
        unet, sched = info.get("unet"), info.get("scheduler")
        if not (isinstance(unet, list) and unet[-1:] == ["UNet2DModel"]):
            raise CheckpointError(f"{index}: unet {unet!r} is not supported (supported: a UNet2DModel)")
        default = sched[-1] if isinstance(sched, list) and sched else "DDPMScheduler"
        return folder / "unet", Path(scheduler) if scheduler else folder / "scheduler" / "scheduler_config.json", default
    if (folder / "unet" / "config.json").is_file():
        return folder / "unet", Path(scheduler) if scheduler else folder / "scheduler" / "scheduler_config.json", "DDPMScheduler"
    if (folder / "config.json").is_file():
        sched = Path(scheduler) if scheduler else folder / "scheduler_config.json"
        if not sched.is_file() and scheduler is None:
            raise CheckpointError(f"{folder} is a UNet folder without a scheduler: put the scheduler's scheduler_config.json "
                                  f"beside its config.json, or name it in {SETTINGS_FILE} as {{\"scheduler\": FILE}}")
        return folder, sched, "DDPMScheduler"
    raise CheckpointError(f"{folder} is not a diffusers model: it has no model_index.json, unet/config.json or config.json "
                          "(save_pretrained of a DDPMPipeline, a DDIMPipeline or a UNet2DModel writes them)")


def read_settings(folder: Path) -> dict[str, Any]:
    """The bridge's settings from ``difftk.json`` in ``folder`` (``{}`` when there is none)."""
    path = folder / SETTINGS_FILE
    if not path.is_file():
        return {}
    settings = _json(path)
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise CheckpointError(f"{path}: unknown setting {unknown[0]!r} (settings: {', '.join(SETTINGS)})")
    if not isinstance(settings.get("null_class", False), bool):
        raise CheckpointError(f"{path}: null_class must be true or false")
    if "scheduler" in settings:
        settings["scheduler"] = folder / str(settings["scheduler"])
    data = settings.get("dataset")
    if data is not None:
        data = {"name": data} if isinstance(data, str) else data
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("options", {}), dict):
            raise CheckpointError(f'{path}: dataset must be a name or {{"name": NAME, "options": {{...}}}}')
        options = dict(data.get("options", {}))
        if isinstance(options.get("path"), str):
            options["path"] = str(folder / options["path"])  # an absolute path stays as it is
        settings["dataset"] = {"name": data["name"], "options": options}
    return settings


def read_unet(unet_dir: Path, null_class: bool) -> tuple[dict[str, Any], torch.nn.Module]:
    """The UNet2DModel config and the network with its weights, from ``unet_dir``."""
    config_file = unet_dir / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{unet_dir}: no config.json (the UNet2DModel's settings) in it")
    config = _json(config_file)
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise CheckpointError(f"{config_file} describes a {config['_class_name']!r}, not a UNet2DModel (supported: UNet2DModel)")
    problem = unet_problem(config, null_class)
    if problem is not None:
        raise CheckpointError(f"{config_file}: {problem}")
    if not any((unet_dir / name).is_file() for name in WEIGHTS):
        raise CheckpointError(f"{unet_dir} has no weight file ({' or '.join(WEIGHTS[:2])}): copy the weights that "
                              "save_pretrained wrote")
    from diffusers import UNet2DModel

    try:
        unet = UNet2DModel.from_pretrained(unet_dir, local_files_only=True, low_cpu_mem_usage=False)
    except Exception as err:  # diffusers' own complaint (a truncated file, mismatched shapes), in one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{unet_dir}: diffusers cannot read the UNet ({type(err).__name__}: {first[:200]})") from None
    return {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}, unet


def data_shape(config: dict[str, Any], where: Path) -> list[int]:
    """[C, H, W] of one example, from the UNet's ``in_channels`` and ``sample_size``."""
    size = config.get("sample_size")
    if size is None:
        raise CheckpointError(f"{where}/config.json has no sample_size: difftk needs the image size to sample")
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return [int(config.get("in_channels", 3)), int(height), int(width)]


def build_model(folder: Path, unet_config: dict[str, Any], unet: torch.nn.Module, scheduler: SchedulerConfig,
                null_class: bool, device: torch.device | str, dataset: dict[str, Any] | None = None) -> Model:
    """The Model of a UNet and its scheduler config: a pipeline of registered components."""
    config = DiffusersUNet.Config(unet=json.dumps(unet_config, sort_keys=True), prediction=scheduler.prediction,
                                  T=scheduler.T, null_class=null_class)
    denoiser = DiffusersUNet(config, unet=unet)
    pipeline = difftk.compose(schedule={"name": "diffusers", "options": scheduler.schedule_options},
                              sampler=scheduler.sampler, denoiser=denoiser, guidance="cfg" if null_class else None)
    denoiser = denoiser.to(device).eval().requires_grad_(False)
    data = {"kind": "image", "shape": data_shape(unet_config, folder), "num_classes": denoiser.num_classes,
            "class_names": [], "name": "", **(dataset or {})}
    record = Checkpoint(path=folder, tensors={}, metadata={"format": "diffusers"}, spec=pipeline.spec, step=0,
                        dataset=data, train_config={}, plugins={})
    return Model(pipeline=pipeline, denoiser=denoiser, data=data, checkpoint=record)


def load(source: str | Path, device: torch.device | str = "cpu", *, scheduler: str | Path | None = None,
         null_class: bool | None = None) -> Model:
    """The diffusers model in folder ``source`` as a difftk Model (the layouts of the module docstring).

    :param scheduler: the scheduler config file (default: the folder's own, or ``difftk.json``'s).
    :param null_class: whether the UNet's last class embedding is cfg's null class ∅ (default:
        ``difftk.json``'s ``null_class``, else false).
    """
    folder = Path(source)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder (a diffusers model is a folder written by save_pretrained)")
    settings = read_settings(folder)
    unet_dir, scheduler_file, default_class = locate(folder, scheduler or settings.get("scheduler"))
    null = bool(settings.get("null_class", False)) if null_class is None else bool(null_class)
    sched = read_scheduler_config(scheduler_file, default_class)
    unet_config, unet = read_unet(unet_dir, null)
    return build_model(folder, unet_config, unet, sched, null, device, settings.get("dataset"))
