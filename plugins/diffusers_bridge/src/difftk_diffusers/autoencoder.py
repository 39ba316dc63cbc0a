"""The ``diffusers-vae`` autoencoder: a diffusers ``AutoencoderKL`` folder as a difftk first stage.

The folder is what ``AutoencoderKL.save_pretrained`` writes (``config.json`` and
``diffusion_pytorch_model.safetensors``). ``encode`` returns diffusers' posterior (its ``latent_dist``:
mean and log σ²), ``decode`` its ``decode(z).sample``, both on raw latents; the scale and shift are the
config's ``scaling_factor`` and ``shift_factor`` (z_scaled = (z − shift)·scale, as diffusers' pipelines
apply them), so the diffusion model sees what a diffusers latent pipeline's UNet sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from difftk.components.autoencoding import AutoencoderBase, LatentDistribution
from difftk.errors import CheckpointError, IncompatibleError, OptionError
from difftk.options import option
from difftk.runtime.untrusted import read_json

WEIGHTS = "diffusion_pytorch_model.safetensors"


def read_vae_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of an AutoencoderKL folder (read by the core's bounded reader); one line when it is not one."""
    path = folder / "config.json"
    if not folder.is_dir():
        raise OptionError(
            f"autoencoder 'diffusers-vae': {folder} is not a folder (give the folder AutoencoderKL."
            "save_pretrained wrote, with config.json and the weights)"
        )
    try:
        text = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err})") from None
    config = read_json(text, what=str(path), error=CheckpointError)
    if not isinstance(config, dict) or config.get("_class_name") != "AutoencoderKL":
        found = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{path}: the folder holds a {found!r}, not an AutoencoderKL")
    if not (folder / WEIGHTS).is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS} (only safetensors weights are read)")
    return config


class DiffusersAutoencoder(AutoencoderBase):
    """A diffusers ``AutoencoderKL`` as a difftk autoencoder (its folder given as ``path``)."""

    @attrs.frozen
    class Config:
        path: str = option(help="the AutoencoderKL folder (config.json, diffusion_pytorch_model.safetensors)")

        def __attrs_post_init__(self) -> None:  # a spec stores where the folder is, not where it was run
            object.__setattr__(self, "path", str(Path(self.path).expanduser().resolve()))

    def __init__(self, config: Config) -> None:
        super().__init__()
        from diffusers import AutoencoderKL

        folder = Path(config.path).expanduser()
        settings = read_vae_config(folder)
        self.config = config
        try:
            if torch.get_default_device().type == "meta":  # the core counting parameters: the architecture only
                self.vae = AutoencoderKL.from_config(settings)
            else:
                self.vae, info = AutoencoderKL.from_pretrained(
                    folder, local_files_only=True, use_safetensors=True, low_cpu_mem_usage=False,
                    output_loading_info=True,
                )
        except Exception as err:  # diffusers' own complaint about the folder, in one line
            raise CheckpointError(
                f"{folder}: diffusers cannot read this AutoencoderKL "
                f"({type(err).__name__}: {' '.join(str(err).split())[:160]})"
            ) from None
        else:
            if torch.get_default_device().type != "meta":
                from difftk_diffusers.folder import refuse_missing_weights

                refuse_missing_weights(folder, info)
        self.scale = float(settings.get("scaling_factor") or 1.0)
        self.shift = float(settings.get("shift_factor") or 0.0)
        self.factor = 2 ** (len(settings.get("block_out_channels", (64,))) - 1)
        self.channels = int(settings.get("in_channels", 3))
        self.latent_channels = int(settings.get("latent_channels", 4))

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(data_shape) != 3 or data_shape[0] != self.channels:
            raise IncompatibleError(
                f"autoencoder 'diffusers-vae' takes images of {self.channels} channel(s) [C, H, W], "
                f"not examples of shape {list(data_shape)}"
            )
        H, W = data_shape[1:]
        if H % self.factor or W % self.factor:
            raise IncompatibleError(
                f"autoencoder 'diffusers-vae' downsamples by f={self.factor}, but the images are "
                f"{H}×{W}: use sizes divisible by {self.factor}"
            )
        return (self.latent_channels, H // self.factor, W // self.factor)

    def encode(self, x: torch.Tensor) -> LatentDistribution:
        q = self.vae.encode(x).latent_dist
        return LatentDistribution(q.mean, q.logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).sample
