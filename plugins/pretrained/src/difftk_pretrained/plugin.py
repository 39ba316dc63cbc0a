"""Entry point of the pretrained plugin: registers the checkpoints shipped in ``data/``
(docs/pretrained.md has their cards)."""

from pathlib import Path

import difftk

DATA = Path(__file__).parent / "data"


@difftk.hookimpl
def difftk_register_components(register):
    register.add_checkpoint(
        "mnist-cfg", DATA / "mnist-cfg.safetensors",
        "class-conditional MNIST unet-attn (1.19 M parameters), cosine schedule, trained with cfg label dropout")
    register.add_checkpoint(
        "mnist-flow", DATA / "mnist-flow.safetensors",
        "class-conditional MNIST unet-attn (1.70 M parameters), flow matching, 24 min of training on 2 CPU cores")
