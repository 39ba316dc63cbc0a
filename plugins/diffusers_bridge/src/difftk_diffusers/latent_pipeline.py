"""A diffusers ``DiTPipeline`` folder as a difftk latent-diffusion :class:`~difftk.model.Model`.

The folder is what ``DiTPipeline.save_pretrained`` writes (the layout of DiT, Peebles & Xie 2023,
§3: a transformer on the latents of a frozen first stage, Rombach et al. 2022 §3):
``model_index.json`` naming ``transformer`` (``DiTTransformer2DModel`` or the older
``Transformer2DModel``), ``vae`` (``AutoencoderKL``) and ``scheduler``, each in its subfolder. The
Model's pipeline is made of registered components only:

- schedule and default sampler: the scheduler config's, as for a UNet pipeline (``folder.py``);
- denoiser ``dit``, its weights read by :func:`~difftk_diffusers.transformer.load_dit`, predicting
  what the scheduler's ``prediction_type`` says;
- autoencoder ``diffusers-vae`` on ``vae/``: sampling decodes z / ``scaling_factor``, as
  DiTPipeline does;
- guidance ``cfg``: the transformer's class table has a null class ∅ (its last row), and
  DiTPipeline's ``guidance_scale`` s is cfg's 1 + w (diffusers' default s = 4 is difftk's w = 3).

The data shape is the image the vae decodes to: ``in_channels`` of the vae × (the transformer's
``sample_size`` · 2^(len(``block_out_channels``) − 1)) on each side. ``id2label`` in
``model_index.json`` (the Hub's DiT folders carry ImageNet's) gives the class names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import difftk
import torch
from difftk.checkpoint.files import Checkpoint
from difftk.errors import CheckpointError
from difftk.model import Model

from difftk_diffusers.autoencoder import read_vae_config
from difftk_diffusers.config import read_scheduler_config
from difftk_diffusers.transformer import CLASS_NAMES, load_dit

#: the pipelines whose folder is a transformer, an AutoencoderKL and a scheduler
PIPELINES: tuple[str, ...] = ("DiTPipeline",)
#: the timesteps the ``dit``'s diffusers time embedding is defined on (k = 1000·t − 1)
T_DIT = 1000


def _part(index: dict[str, Any], key: str, classes: tuple[str, ...], where: Path) -> None:
    """``model_index.json``'s ``key`` must be ``[library, class]`` with a class in ``classes``."""
    entry = index.get(key)
    if not (isinstance(entry, list) and len(entry) == 2 and entry[1] in classes):
        raise CheckpointError(
            f"{where}: {key} {entry!r} is not supported (supported: {' or '.join(classes)})"
        )


def class_names(index: dict[str, Any], num_classes: int, where: Path) -> list[str]:
    """The class names of ``id2label`` ({"0": "tench, Tinca tinca", ...}), one per class; ``[]`` without it."""
    labels = index.get("id2label")
    if labels is None:
        return []
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise CheckpointError(f"{where}: id2label must map class ids to names ({{\"0\": \"tench\", ...}})")
    names = {}
    for key, value in labels.items():
        if not str(key).isdigit() or not 0 <= int(key) < num_classes:
            raise CheckpointError(f"{where}: id2label has id {key!r}, not a class 0..{num_classes - 1} of the transformer")
        names[int(key)] = value.strip()
    if len(names) != num_classes:
        raise CheckpointError(f"{where}: id2label names {len(names)} classes, the transformer has {num_classes}")
    return [names[i] for i in range(num_classes)]


def load_dit_pipeline(folder: Path, index: dict[str, Any], device: torch.device | str = "cpu",
                      dataset: dict[str, Any] | None = None) -> Model:
    """The Model of a DiTPipeline folder whose ``model_index.json`` is ``index`` (the module docstring)."""
    where = folder / "model_index.json"
    _part(index, "transformer", CLASS_NAMES, where)
    _part(index, "vae", ("AutoencoderKL",), where)
    sched_entry = index.get("scheduler")
    if not (isinstance(sched_entry, list) and sched_entry and isinstance(sched_entry[-1], str)):
        raise CheckpointError(f"{where}: scheduler {sched_entry!r} is not supported (supported: [library, scheduler class])")
    sched = read_scheduler_config(folder / "scheduler" / "scheduler_config.json", sched_entry[-1])
    if sched.flow or sched.T != T_DIT:
        raise CheckpointError(
            f"{folder / 'scheduler' / 'scheduler_config.json'}: a DiT is read with a {T_DIT}-step diffusion scheduler "
            f"(its time embedding is of steps 0..{T_DIT - 1}); this one is "
            f"{'a flow-matching scheduler' if sched.flow else f'of {sched.T} steps'}"
        )
    dit = load_dit(folder / "transformer", prediction=sched.prediction)
    vae_dir = folder / "vae"
    vae = read_vae_config(vae_dir)
    latent_channels = int(vae.get("latent_channels", 4))
    if latent_channels != dit.config.in_channels:
        raise CheckpointError(
            f"{vae_dir}/config.json: the vae's latents have {latent_channels} channels but the transformer takes "
            f"{dit.config.in_channels}: the parts are not one pipeline"
        )
    factor = 2 ** (len(vae.get("block_out_channels", (64,))) - 1)
    side = dit.config.image_size * factor
    shape = [int(vae.get("in_channels", 3)), side, side]
    pipeline = difftk.compose(
        schedule=sched.schedule,
        sampler=sched.sampler,
        denoiser=dit,
        guidance="cfg",
        autoencoder={"name": "diffusers-vae", "options": {"path": str(vae_dir)}},
    )
    dit = dit.to(device).eval().requires_grad_(False)
    if pipeline.autoencoder is not None:
        pipeline.autoencoder.to(device)
    data = {"kind": "image", "shape": shape, "num_classes": dit.num_classes,
            "class_names": class_names(index, dit.num_classes, where), "name": "", **(dataset or {})}
    record = Checkpoint(path=folder, tensors={}, metadata={"format": "diffusers"}, spec=pipeline.spec, step=0,
                        dataset=data, train_config={}, plugins={})
    return Model(pipeline=pipeline, denoiser=dit, data=data, checkpoint=record)


def refusal(index: dict[str, Any], where: Path, supported: tuple[str, ...]) -> str:
    """The one line for a pipeline folder whose parts do not map onto difftk components."""
    name = index.get("_class_name")
    parts = {k: v[-1] for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v and isinstance(v[-1], str)}
    vq = [k for k, v in parts.items() if v == "VQModel"]
    if vq:
        return (f"{where}: pipeline {name!r} is not supported: its first stage {vq[0]!r} is a VQModel (vector-quantised, "
                "Rombach et al. 2022 §3), and difftk reads AutoencoderKL first stages only; reading it would need a VQ "
                f"autoencoder (the codebook lookup before decoding) (supported: {', '.join(supported)})")
    return (f"{where}: pipeline {name!r} is not supported (supported: {', '.join(supported)}: a UNet2DModel or a DiT, "
            f"with an AutoencoderKL for a DiT, and a scheduler; this one holds {', '.join(f'{k} {v}' for k, v in parts.items()) or 'no parts'})")
