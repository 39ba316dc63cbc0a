"""Tiny random diffusers models, saved the way save_pretrained saves them (no network, no weights to fetch)."""

import json

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel


def tiny_unet(channels: int = 3, classes: int | None = None, seed: int = 0) -> UNet2DModel:
    """A random 8×8 UNet2DModel with one attention level (about 40k parameters)."""
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, attention_head_dim=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       num_class_embeds=classes).eval()


@pytest.fixture(scope="session")
def unet():
    return tiny_unet


@pytest.fixture
def save_pipeline(tmp_path):
    """``save_pipeline(unet, scheduler, name)``: the folder DDIMPipeline/DDPMPipeline.save_pretrained writes."""

    def save(unet, scheduler, name="model", settings=None):
        folder = tmp_path / name
        pipe = DDIMPipeline if isinstance(scheduler, DDIMScheduler) else DDPMPipeline
        pipe(unet=unet, scheduler=scheduler).save_pretrained(folder)
        if settings is not None:
            (folder / "difftk.json").write_text(json.dumps(settings))
        return folder

    return save


@pytest.fixture
def ddpm_folder(save_pipeline):
    """A DDPMPipeline folder of a 3-channel tiny UNet with diffusers' default scheduler, unclipped."""
    return save_pipeline(tiny_unet(), DDPMScheduler(clip_sample=False), "ddpm")


@pytest.fixture
def ddim_folder(save_pipeline):
    return save_pipeline(tiny_unet(), DDIMScheduler(clip_sample=False), "ddim")
