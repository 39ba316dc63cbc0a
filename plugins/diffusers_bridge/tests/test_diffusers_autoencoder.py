"""A diffusers AutoencoderKL folder as a difftk autoencoder: encode (the latent mean) and decode agree with
diffusers' own to 1e-5 relative to their scale in float32, the scale and shift are the config's, and the
latent pipeline samples through it."""

import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.components.autoencoding import from_latent, to_latent
from difftk.model import Model
from difftk.testing import check_autoencoder
from diffusers import AutoencoderKL


def tiny_vae(seed=0, shift=None):
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=0.37,
        shift_factor=shift,
    ).eval()


@pytest.fixture
def vae_folder(tmp_path):
    def save(**kw):
        vae = tiny_vae(**kw)
        folder = tmp_path / f"vae{len(list(tmp_path.iterdir()))}"
        vae.save_pretrained(folder, safe_serialization=True)
        return vae, folder

    return save


def close(a, b, tol=1e-5):
    """|a − b| ≤ tol · max|b|: agreement relative to the tensor's scale."""
    assert a.shape == b.shape
    assert float((a - b).abs().max()) <= tol * float(b.abs().max()), float((a - b).abs().max())


@pytest.mark.parametrize("shift", [None, 0.12])
def test_encode_and_decode_match_diffusers(vae_folder, shift):
    vae, folder = vae_folder(shift=shift)
    ae = difftk.create("autoencoder", "diffusers-vae", path=str(folder))
    assert ae.scale == pytest.approx(0.37) and ae.shift == pytest.approx(shift or 0.0)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        mean = vae.encode(x).latent_dist.mean
        close(ae.encode(x).mean, mean)
        close(to_latent(ae, x), (mean - (shift or 0.0)) * 0.37)
        z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
        close(from_latent(ae, z), vae.decode(z / 0.37 + (shift or 0.0)).sample)
    assert ae.latent_shape((3, 16, 16)) == (4, 8, 8)
    check_autoencoder(ae, (3, 16, 16))


def test_a_folder_that_is_no_autoencoder_is_one_line(vae_folder, tmp_path):
    _, folder = vae_folder()
    (folder / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(difftk.DifftkError, match="holds a 'UNet2DModel', not an AutoencoderKL"):
        difftk.create("autoencoder", "diffusers-vae", path=str(folder))
    with pytest.raises(difftk.DifftkError, match="is not a folder"):
        difftk.create("autoencoder", "diffusers-vae", path=str(tmp_path / "nothing"))


def test_a_latent_pipeline_samples_through_the_diffusers_autoencoder(vae_folder, register_plugin):
    assert register_plugin(toys, "toys")
    vae, folder = vae_folder()
    pipeline = difftk.compose(
        schedule={"name": "linear", "options": {"T": 50}},
        sampler="ddim",
        denoiser={"name": "tiny", "options": {"in_channels": 4}},
        autoencoder={"name": "diffusers-vae", "options": {"path": str(folder)}},
    )
    model = Model(pipeline=pipeline, denoiser=pipeline.denoiser.eval(), data={"kind": "image", "shape": [3, 16, 16]})
    x = model.sample(2, steps=3, seed=0)
    assert x.shape == (2, 3, 16, 16) and torch.isfinite(x).all()


def test_a_weight_file_lacking_a_tensor_the_config_asks_for_is_one_line(vae_folder):
    """diffusers would fill the missing tensor with uninitialised memory and only warn; difftk refuses the folder."""
    from difftk.errors import DifftkError
    from safetensors.torch import load_file, save_file

    _, folder = vae_folder()
    weights = folder / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, weights)
    with pytest.raises(DifftkError, match=f"lacks {dropped}") as error:
        difftk.create("autoencoder", "diffusers-vae", path=str(folder))
    assert "\n" not in str(error.value)
