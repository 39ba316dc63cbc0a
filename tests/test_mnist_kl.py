"""The shipped MNIST first stage `mnist-kl` (difftk-pretrained, docs/pretrained.md): registered by name for
the kl autoencoder, it loads with the architecture its file records and reconstructs held-out digits
above a PSNR floor set from its measured figure with margin."""

import difftk
import torch
from difftk.components import plugins
from difftk.data.pipeline_data import load_dataset
from difftk_autoencoder import load
from difftk_autoencoder.measure import psnr, reconstruct

#: dB on the first 64 held-out digits; PSNR_FLOOR is set below the measured value (docs/pretrained.md)
PSNR_FLOOR = 26.0  # measured: 28.12 ± 0.30 dB (2026-12-07)


def test_mnist_kl_is_shipped_by_name_and_reconstructs_held_out_digits():
    shipped = plugins.registry().shipped_weights("autoencoder", "kl", "mnist-kl")
    assert shipped.plugin == "pretrained" and shipped.path.stat().st_size < 1_000_000
    ae = load("mnist-kl")
    assert ae.config.weights == "mnist-kl" and ae.latent_shape((1, 28, 28)) == (3, 8, 8)
    assert ae.config.weights_sha256 is not None and 0 < ae.scale < 1
    x, _ = load_dataset("mnist", split="test")[0].batch(torch.arange(64))
    assert float(psnr(x, reconstruct(ae, x)).mean()) > PSNR_FLOOR


def test_a_latent_pipeline_names_the_shipped_first_stage():
    pipeline = difftk.compose(schedule="cosine", sampler="ddim", denoiser="unet-attn", objective="simple",
                              autoencoder={"name": "kl", "options": {"weights": "mnist-kl", "pad": 2, "channels": 16}})
    options = pipeline.spec["autoencoder"].options_dict
    assert options["weights"] == "mnist-kl" and len(options["weights_sha256"]) == 64
