"""The shipped colour first stage `emoji-kl` (difftk-pretrained, docs/pretrained.md): registered by name for
the kl autoencoder, it loads with the architecture its file records and reconstructs held-out emoji above
a PSNR floor set from its measured figure with margin, in range."""

import torch
from difftk.components import plugins
from difftk.data.pipeline_data import load_dataset
from difftk_autoencoder import load
from difftk_autoencoder.measure import psnr, reconstruct

#: dB on the first 64 held-out emoji, set below the measured value (docs/pretrained.md)
PSNR_FLOOR = 24.0  # measured: 25.67 ± 0.43 dB on those 64 (26.03 ± 0.22 over all 278), 2026-12-07


def test_emoji_kl_is_shipped_by_name_and_reconstructs_held_out_emoji():
    shipped = plugins.registry().shipped_weights("autoencoder", "kl", "emoji-kl")
    assert shipped.plugin == "pretrained" and shipped.path.stat().st_size < 1_000_000
    ae = load("emoji-kl")
    assert ae.config.weights == "emoji-kl" and ae.latent_shape((3, 32, 32)) == (4, 8, 8)
    assert ae.config.weights_sha256 is not None and 0 < ae.scale < 1
    x, _ = load_dataset("emoji", split="test")[0].batch(torch.arange(64))
    r = reconstruct(ae, x)
    assert float(psnr(x, r).mean()) > PSNR_FLOOR
    assert float((r.abs() > 1.05).double().mean()) <= 0.02  # measured: 0.32 % over the 278
