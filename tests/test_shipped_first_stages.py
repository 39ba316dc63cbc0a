"""The first stages shipped by difftk-pretrained (docs/pretrained.md): each is registered by name for the
kl autoencoder, loads with the architecture its file records, and reconstructs held-out images above a
PSNR floor set from its measured figure with margin, in range."""

import difftk
import pytest
import torch
from difftk.components import plugins
from difftk.data.pipeline_data import load_dataset
from difftk_autoencoder import load
from difftk_autoencoder.measure import psnr, reconstruct

#: name: (dataset, image shape, latent shape, dB floor on the first 64 held-out images). Each floor is set
#: below the value measured on 2026-12-07: mnist-kl 28.12 ± 0.30 dB; emoji-kl 25.67 ± 0.43 dB on those 64
#: (26.03 ± 0.22 over all 278). Beyond ±1.05: 0.06 % and 0.32 % of the held-out reconstructions.
SHIPPED = {
    "mnist-kl": ("mnist", (1, 28, 28), (3, 8, 8), 26.0),
    "emoji-kl": ("emoji", (3, 32, 32), (4, 8, 8), 24.0),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_first_stage_loads_by_name_and_reconstructs_held_out_images(name):
    data, shape, latent, floor = SHIPPED[name]
    shipped = plugins.registry().shipped_weights("autoencoder", "kl", name)
    assert shipped.plugin == "pretrained" and shipped.path.stat().st_size < 1_000_000
    ae = load(name)
    assert ae.config.weights == name and ae.latent_shape(shape) == latent
    assert ae.config.weights_sha256 is not None and 0 < ae.scale < 1
    x, _ = load_dataset(data, split="test")[0].batch(torch.arange(64))
    r = reconstruct(ae, x)
    assert float(psnr(x, r).mean()) > floor
    assert float((r.abs() > 1.05).double().mean()) <= 0.02


def test_a_latent_pipeline_names_the_shipped_first_stage():
    pipeline = difftk.compose(schedule="cosine", sampler="ddim", denoiser="unet-attn", objective="simple",
                              autoencoder={"name": "kl", "options": {"weights": "mnist-kl", "pad": 2, "channels": 16}})
    options = pipeline.spec["autoencoder"].options_dict
    assert options["weights"] == "mnist-kl" and len(options["weights_sha256"]) == 64
