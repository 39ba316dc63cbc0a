"""Entry point of the pretrained plugin: registers the checkpoints shipped in ``data/``
(docs/pretrained.md has their cards)."""

from pathlib import Path

import difftk

DATA = Path(__file__).parent / "data"
#: A noise-aware classifier of the 5 ``emoji`` classes (`difftk train-classifier` on the train split):
#: the judge of whether an emoji sample is the class asked for (docs/pretrained.md, `emoji-flow`).
EMOJI_JUDGE = DATA / "emoji-judge.safetensors"


@difftk.hookimpl
def difftk_register_components(register):
    register.add_checkpoint(
        "mnist-cfg", DATA / "mnist-cfg.safetensors",
        "class-conditional MNIST unet-attn (1.19 M parameters), cosine schedule, trained with cfg label dropout")
    register.add_checkpoint(
        "mnist-flow", DATA / "mnist-flow.safetensors",
        "class-conditional MNIST unet-attn (1.70 M parameters), flow matching, 24 min of training on 2 CPU cores")
    register.add_checkpoint(
        "mnist-flow-weak", DATA / "mnist-flow-weak.safetensors",
        "the weaker companion of mnist-flow for autoguidance: its recipe with a network of 0.18 M parameters "
        "trained 600 steps (docs/pretrained.md)")
    register.add_checkpoint(
        "mnist-flow-2step", DATA / "mnist-flow-2step.safetensors",
        "a few-step student of mnist-flow: reflow on its own solutions, trained where 2 flow-euler steps ask "
        "(t = 1, 0.2), its second step where its first arrives, sampled at t = 1, 0.25; 2 network evaluations a "
        "digit, 43 min of 2 CPU cores (docs/pretrained.md)")
    register.add_checkpoint(
        "emoji-flow", DATA / "emoji-flow.safetensors",
        "class-conditional 3×32×32 colour emoji unet-attn (1.91 M parameters), flow matching, 2,600 steps "
        "(36 min of 2 CPU cores)")
    register.add_checkpoint(
        "mnist-latent", DATA / "mnist-latent.safetensors",
        "class-conditional latent diffusion on MNIST: unet-attn (1.19 M parameters) on the 8×8×3 latents of the "
        "mnist-kl first stage, cosine schedule, v-prediction, 3,000 steps")
    register.add_checkpoint(
        "emoji-latent", DATA / "emoji-latent.safetensors",
        "class-conditional latent colour emoji: unet-attn (1.70 M parameters) on the 8×8×4 latents of the emoji-kl "
        "first stage, flow matching, 12,000 steps (34 min of 2 CPU cores with the first stage)")
    register.add_weights(
        "autoencoder", "kl", "mnist-kl", DATA / "mnist-kl.safetensors",
        "the MNIST first stage for latent diffusion: a kl autoencoder (153,069 parameters, 28×28 padded to 32×32 → "
        "8×8×3 latents), 1,000 steps")
    register.add_weights(
        "classifier", "noisy-cnn", "emoji-judge", EMOJI_JUDGE,
        "the judge of the 5 emoji classes: a noise-aware classifier (136,581 parameters) of the emoji train split; "
        "metrics read colour emoji through it with features=classifier:emoji-judge")
    register.add_weights(
        "autoencoder", "kl", "emoji-kl", DATA / "emoji-kl.safetensors",
        "the colour first stage for latent diffusion on emoji: a kl autoencoder (3×32×32 → 8×8×4 latents), "
        "4,000 steps")
