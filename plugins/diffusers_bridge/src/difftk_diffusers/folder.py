"""Reading a diffusers model folder as a difftk :class:`~difftk.model.Model`.

Two layouts are read here, and a ``DiTPipeline`` folder (a transformer, an AutoencoderKL and a
scheduler) by :mod:`difftk_diffusers.latent_pipeline`:

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
from difftk_diffusers.latent_pipeline import PIPELINES as LATENT_PIPELINES
from difftk_diffusers.latent_pipeline import load_dit_pipeline, refusal
from difftk_diffusers.validate import integer, integers, read_json, strings

#: pipelines whose folder is a UNet2DModel and a scheduler, nothing else
PIPELINES: tuple[str, ...] = ("DDPMPipeline", "DDIMPipeline")
#: the files a UNet's weights may be in (diffusers' names)
WEIGHTS: tuple[str, ...] = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                            "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin.index.json")
#: the bridge's settings file in a model folder, and the keys it may hold
SETTINGS_FILE, SETTINGS = "difftk.json", ("null_class", "scheduler", "dataset")
#: what a folder that is meant to be a diffusers model has
MARKERS: tuple[str, ...] = ("model_index.json", "config.json", "scheduler_config.json", "unet", "scheduler", SETTINGS_FILE)


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
        info = read_json(index, "a pipeline index (model_index.json)")
        name = info.get("_class_name")
        if name not in PIPELINES:
            raise CheckpointError(refusal(info, index, PIPELINES + LATENT_PIPELINES))
        unet, sched = info.get("unet"), info.get("scheduler")
        if not (isinstance(unet, list) and unet[-1:] == ["UNet2DModel"]):
            raise CheckpointError(f"{index}: unet {unet!r} is not supported (supported: a UNet2DModel)")
        if sched is not None and not (isinstance(sched, list) and sched and isinstance(sched[-1], str)):
            raise CheckpointError(f"{index}: scheduler {sched!r} is not supported (supported: [library, scheduler class])")
        default = sched[-1] if sched else "DDPMScheduler"
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
    settings = read_json(path, "difftk's settings of a diffusers model")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise CheckpointError(f"{path}: unknown setting {unknown[0]!r} (settings: {', '.join(SETTINGS)})")
    if not isinstance(settings.get("null_class", False), bool):
        raise CheckpointError(f"{path}: null_class must be true or false")
    if "scheduler" in settings:
        if not isinstance(settings["scheduler"], str) or not settings["scheduler"]:
            raise CheckpointError(f"{path}: scheduler must be the scheduler config's file name, relative to the folder")
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


#: bounds of the UNet2DModel config keys that size the network: (lowest, highest); diffusers' defaults
UNET_BOUNDS: dict[str, tuple[int, int]] = {"in_channels": (1, 64), "out_channels": (1, 64), "layers_per_block": (1, 32),
                                           "norm_num_groups": (1, 4096)}
UNET_OPTIONAL: dict[str, tuple[int, int]] = {"num_class_embeds": (1, 100_000), "time_embedding_dim": (1, 16384),
                                             "attention_head_dim": (1, 4096), "attn_norm_num_groups": (1, 4096)}
UNET_DEFAULTS: dict[str, Any] = {"in_channels": 3, "out_channels": 3, "layers_per_block": 2, "norm_num_groups": 32,
                                 "block_out_channels": [224, 448, 672, 896],
                                 "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
                                 "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"]}
#: the largest image side, and the most channels of a block
MAX_SIDE, MAX_CHANNELS = 4096, 4096


def check_unet_config(where: str, config: dict[str, Any]) -> None:
    """Type and range of every UNet2DModel key that sizes the network, before anything is built from it."""
    v = {**UNET_DEFAULTS, **{k: val for k, val in config.items() if val is not None}}
    for key, (lo, hi) in UNET_BOUNDS.items():
        integer(where, key, v[key], lo, hi)
    for key, (lo, hi) in UNET_OPTIONAL.items():
        if v.get(key) is not None:
            integer(where, key, v[key], lo, hi)
    channels = integers(where, "block_out_channels", v["block_out_channels"], 1, MAX_CHANNELS, max_len=8)
    for key in ("down_block_types", "up_block_types"):
        if len(strings(where, key, v[key], max_len=8)) != len(channels):
            raise CheckpointError(f"{where}: {key} has {len(v[key])} blocks but block_out_channels has {len(channels)}")
    groups = v["norm_num_groups"]
    if any(c % groups for c in channels):
        raise CheckpointError(f"{where}: norm_num_groups {groups} must divide every block_out_channels {list(channels)}")
    size = config.get("sample_size")
    if size is None:
        raise CheckpointError(f"{where} has no sample_size: difftk needs the image size to sample")
    sides = (size, size) if not isinstance(size, list | tuple) else size
    if not isinstance(sides, list | tuple) or len(sides) != 2:
        raise CheckpointError(f"{where}: sample_size {size!r} must be an integer or [height, width]")
    factor = 2 ** (len(channels) - 1)  # one downsampling between blocks
    for side in sides:
        side = integer(where, "sample_size", side, 1, MAX_SIDE)
        if side % factor:
            raise CheckpointError(f"{where}: sample_size {size!r} must be a multiple of {factor} (the UNet halves the "
                                  f"image {len(channels) - 1} times)")


def _check_weights_fit(unet_dir: Path, config: dict[str, Any]) -> None:
    """The network the config describes, counted on the meta device (nothing allocated), must be no larger than
    the weight files can hold (2 bytes a weight at the least): a config cannot ask for memory its weights lack."""
    from diffusers import UNet2DModel

    try:
        with torch.device("meta"):
            network = UNet2DModel.from_config(config)
    except Exception as err:  # diffusers' own complaint about the architecture, in one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{unet_dir}/config.json: diffusers cannot build this UNet ({type(err).__name__}: "
                              f"{first[:200]})") from None
    wanted = 2 * sum(p.numel() for p in network.parameters())
    held = sum(path.stat().st_size for path in unet_dir.glob("diffusion_pytorch_model*") if path.is_file())  # shards too
    if wanted > held * 1.01 + 2**16:  # 64 KiB for the files' headers
        raise CheckpointError(f"{unet_dir}/config.json describes a UNet of {wanted // 2:,} weights, more than its weight "
                              f"files ({held:,} bytes) hold: the config and the weights are not the same model")


def read_unet(unet_dir: Path, null_class: bool) -> tuple[dict[str, Any], torch.nn.Module]:
    """The UNet2DModel config and the network with its weights, from ``unet_dir``."""
    config_file = unet_dir / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{unet_dir}: no config.json (the UNet2DModel's settings) in it")
    config = read_json(config_file, "a UNet2DModel config")
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise CheckpointError(f"{config_file} describes a {config['_class_name']!r}, not a UNet2DModel (supported: UNet2DModel)")
    check_unet_config(str(config_file), config)
    problem = unet_problem(config, null_class)
    if problem is not None:
        raise CheckpointError(f"{config_file}: {problem}")
    if not any((unet_dir / name).is_file() for name in WEIGHTS):
        raise CheckpointError(f"{unet_dir} has no weight file ({' or '.join(WEIGHTS[:2])}): copy the weights that "
                              "save_pretrained wrote")
    _check_weights_fit(unet_dir, config)
    from diffusers import UNet2DModel

    try:
        unet, info = UNet2DModel.from_pretrained(unet_dir, local_files_only=True, low_cpu_mem_usage=False,
                                                 output_loading_info=True)
    except Exception as err:  # diffusers' own complaint (a truncated file, mismatched shapes), in one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{unet_dir}: diffusers cannot read the UNet ({type(err).__name__}: {first[:200]})") from None
    refuse_missing_weights(unet_dir, info)
    return {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}, unet


def refuse_missing_weights(folder: Path, info: dict[str, Any]) -> None:
    """One line if diffusers' ``from_pretrained(..., output_loading_info=True)`` reported weights the config asks for
    and the file lacks: diffusers leaves them as uninitialised memory (seen: values up to 1.7e38) and only warns."""
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise CheckpointError(f"{folder}: the weight file lacks {shown}, which config.json asks for: the config and "
                              "the weights are of different models; copy both from the same save_pretrained")


def data_shape(config: dict[str, Any], where: Path) -> list[int]:
    """[C, H, W] of one example, from the UNet's ``in_channels`` and ``sample_size`` (checked by :func:`check_unet_config`)."""
    check_unet_config(f"{where}/config.json", config)
    size = config["sample_size"]
    height, width = (size, size) if not isinstance(size, list | tuple) else size
    return [int(config.get("in_channels", 3)), int(height), int(width)]


def _check_fits(denoiser: DiffusersUNet, shape: list[int], where: Path) -> None:
    """One UNet call on a zero example: a shape the network cannot take is one line now, not a traceback mid-sampling."""
    cond = torch.zeros(1, dtype=torch.long) if denoiser.class_embeds else None
    try:
        with torch.inference_mode():
            out = denoiser(torch.zeros((1, *shape)), torch.full((1,), 0.5), cond=cond)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{where}: the UNet cannot take an example of shape {shape} ({type(err).__name__}: "
                              f"{first[:200]})") from None
    if tuple(out.shape) != (1, *shape):
        raise CheckpointError(f"{where}: the UNet returns shape {list(out.shape[1:])} for examples of shape {shape}")


def build_model(folder: Path, unet_config: dict[str, Any], unet: torch.nn.Module, scheduler: SchedulerConfig,
                null_class: bool, device: torch.device | str, dataset: dict[str, Any] | None = None) -> Model:
    """The Model of a UNet and its scheduler config: a pipeline of registered components."""
    config = DiffusersUNet.Config(unet=json.dumps(unet_config, sort_keys=True), prediction=scheduler.prediction,
                                  T=scheduler.T, null_class=null_class, clock="flow" if scheduler.flow else "ddpm")
    denoiser = DiffusersUNet(config, unet=unet)
    pipeline = difftk.compose(schedule=scheduler.schedule,
                              sampler=scheduler.sampler, denoiser=denoiser, guidance="cfg" if null_class else None)
    shape = data_shape(unet_config, folder)
    _check_fits(denoiser.eval(), shape, folder)
    denoiser = denoiser.to(device).eval().requires_grad_(False)
    data = {"kind": "image", "shape": shape, "num_classes": denoiser.num_classes,
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
    index = folder / "model_index.json"
    if index.is_file():
        info = read_json(index, "a pipeline index (model_index.json)")
        if info.get("_class_name") in LATENT_PIPELINES:
            return load_dit_pipeline(folder, info, device, settings.get("dataset"))
    unet_dir, scheduler_file, default_class = locate(folder, scheduler or settings.get("scheduler"))
    null = bool(settings.get("null_class", False)) if null_class is None else bool(null_class)
    sched = read_scheduler_config(scheduler_file, default_class)
    unet_config, unet = read_unet(unet_dir, null)
    return build_model(folder, unet_config, unet, sched, null, device, settings.get("dataset"))
