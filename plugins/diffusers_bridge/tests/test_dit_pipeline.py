"""A diffusers DiTPipeline folder read by difftk.load: the same images as DiTPipeline from the same latents (with
and without classifier-free guidance), every sampler through the vae, the class names, and the one-line refusals."""

import json

import difftk
import numpy as np
import pytest
import torch
from difftk.errors import CheckpointError
from difftk.sampling import latent
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel, LDMPipeline, UNet2DModel, VQModel

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

#: DiTPipeline passes class 1000 as the null class ∅ of cfg, so the tiny transformer has ImageNet's 1000 classes
CLASSES = 1000


def tiny_dit_pipeline(seed: int = 0, prediction: str = "epsilon") -> DiTPipeline:
    """A random DiT (8×8×4 latents, 2×2 patches, width 16, 2 blocks, learned σ) on a random AutoencoderKL (f = 2,
    so 16×16×3 images), DDIM scheduler unclipped; the DiT's weights drawn at a scale that carries signal, with one
    time-and-class embedding in every block, as converted DiT checkpoints hold."""
    torch.manual_seed(seed)
    dit = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=CLASSES)
    with torch.no_grad():
        for p in dit.parameters():
            p.copy_(0.3 * torch.randn(p.shape))
        first = dit.transformer_blocks[0].norm1.emb.state_dict()
        for block in dit.transformer_blocks[1:]:
            block.norm1.emb.load_state_dict(first)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=16, scaling_factor=0.37)
    scheduler = DDIMScheduler(clip_sample=False, prediction_type=prediction)
    return DiTPipeline(transformer=dit.eval(), vae=vae.eval(), scheduler=scheduler)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(the pipeline, its folder as save_pretrained writes it)."""
    pipe = tiny_dit_pipeline()
    folder = tmp_path_factory.mktemp("dit") / "pipe"
    pipe.save_pretrained(folder, safe_serialization=True)
    return pipe, folder


@pytest.fixture(scope="module")
def model(saved):
    return difftk.load(saved[1])


def test_the_parts_map_onto_registered_components(model):
    spec = model.pipeline.spec
    assert spec["denoiser"].name == "dit" and spec["autoencoder"].name == "diffusers-vae"
    assert spec["schedule"].name == "diffusers" and spec["sampler"].name == "ddim" and spec["guidance"].name == "cfg"
    assert model.data_shape == (3, 16, 16) and model.num_classes == CLASSES and tuple(model.class_names) == ()
    assert latent.shape_of(model.pipeline.autoencoder, model.data_shape) == (4, 8, 8)
    assert model.denoiser.learned_variance and model.denoiser.prediction == "eps"


@pytest.mark.parametrize("guidance_scale", [1.0, 4.0], ids=["no-cfg", "cfg-s4"])
def test_sampling_gives_the_dit_pipelines_images(saved, model, guidance_scale):
    """DiTPipeline(generator) draws its latents with torch.randn from the generator; from those latents difftk's ddim
    (the DDIM scheduler's mapping), with cfg at w = s − 1 (s = 1: none), decoded by the vae, gives the pipeline's
    images x/2 + 1/2 clamped to [0, 1], to 1e-4 in float32 (images in [0, 1]; ten steps of a float32 network and
    a decoder accumulate rounding of order 1e-6). Both use the conditional run's learned-σ channels nowhere: DDIM
    at η = 0 reads only the ε channels."""
    pipe, _ = saved
    labels = [3, 999, 0]
    images = pipe(class_labels=labels, guidance_scale=guidance_scale, num_inference_steps=10,
                  generator=torch.Generator().manual_seed(5), output_type="np").images
    z_T = torch.randn((3, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    denoiser, wrapper = model.guided_denoiser(scale=guidance_scale - 1.0)
    assert wrapper is not None and wrapper.scale == guidance_scale - 1.0
    with torch.inference_mode():
        z0 = model.pipeline.sampler.sample(denoiser, model.schedule, z_T, steps=10, cond=torch.tensor(labels))
        x0 = latent.decoded(model.pipeline.autoencoder, z0)
    ours = (x0 / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert ours.shape == images.shape == (3, 16, 16, 3)
    assert np.abs(ours - images).max() <= 1e-4
    assert np.abs(images[0] - images[1]).max() > 1e-2  # the labels reach the images, so the comparison tests them


def test_the_denoiser_is_the_transformer_and_the_decoder_the_vaes(saved, model):
    """On the pipeline's own inputs (step k, label, the null class 1000): dit(z, (k + 1)/1000, y) is the
    transformer's output; decoding scaled latents is vae.decode(z / scaling_factor)."""
    pipe, _ = saved
    g = torch.Generator().manual_seed(1)
    z = torch.randn((2, 4, 8, 8), generator=g)
    k = torch.tensor([999, 499])
    with torch.no_grad():
        ref = pipe.transformer(z, timestep=k, class_labels=torch.tensor([7, CLASSES])).sample
        out = model.denoiser(z, (k + 1).float() / 1000, torch.tensor([7, CLASSES]))
        assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
        decoded = latent.decoded(model.pipeline.autoencoder, z)
        assert (decoded - pipe.vae.decode(z / 0.37).sample).abs().max() <= 1e-6


@pytest.mark.parametrize("name", difftk.available("sampler"))
def test_every_registered_sampler_samples_the_dit_pipeline(name, model):
    x = model.sample(2, sampler=name, steps=2, seed=0, labels=[1, 2])
    assert x.shape == (2, 3, 16, 16) and bool(torch.isfinite(x).all())


def test_id2label_gives_the_class_names(tmp_path, saved):
    _, folder = saved
    copy = tmp_path / "named"
    tiny_dit_pipeline().save_pretrained(copy, safe_serialization=True)
    index = json.loads((copy / "model_index.json").read_text())
    index["id2label"] = {str(i): f"class {i}, synonym" for i in range(CLASSES)}
    (copy / "model_index.json").write_text(json.dumps(index))
    model = difftk.load(copy)
    assert list(model.class_names[:2]) == ["class 0, synonym", "class 1, synonym"]
    assert model.labels(1, "class 7, synonym").tolist() == [7]
    index["id2label"] = {"0": "one class only"}
    (copy / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="id2label names 1 classes, the transformer has 1000"):
        difftk.load(copy)


def test_an_ldm_pipeline_is_refused_in_one_line_naming_its_vq_first_stage(tmp_path):
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    vq = VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                 latent_channels=3, norm_num_groups=4, num_vq_embeddings=16, vq_embed_dim=3)
    LDMPipeline(vqvae=vq, unet=unet, scheduler=DDIMScheduler()).save_pretrained(tmp_path / "ldm")
    with pytest.raises(CheckpointError) as err:
        difftk.load(tmp_path / "ldm")
    message = str(err.value)
    assert "\n" not in message and "'LDMPipeline' is not supported" in message
    assert "'vqvae' is a VQModel" in message and "DiTPipeline" in message


def test_a_dit_pipeline_with_a_mismatched_vae_or_scheduler_is_refused(tmp_path):
    pipe = tiny_dit_pipeline()
    pipe.save_pretrained(tmp_path / "p", safe_serialization=True)
    config = tmp_path / "p" / "vae" / "config.json"
    good = config.read_text()
    config.write_text(json.dumps({**json.loads(good), "latent_channels": 3}))
    with pytest.raises(CheckpointError, match="latents have 3 channels but the transformer takes 4"):
        difftk.load(tmp_path / "p")
    config.write_text(good)
    sched = tmp_path / "p" / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps({**json.loads(sched.read_text()), "num_train_timesteps": 500}))
    with pytest.raises(CheckpointError, match="1000-step diffusion scheduler"):
        difftk.load(tmp_path / "p")
