#!/usr/bin/env bash
# Train a latent colour model on the shipped first stage `emoji-kl` (3×32×32 emoji → 8×8×4 latents):
# emoji-flow's recipe moved into latent space — flow matching on the straight path, τ logit-normal (m = 0,
# s = 1) with a uniform share of 0.3, cfg label dropout 0.1, random horizontal flips (of the images, before
# they are encoded), batch 64, AdamW 2e-3 with 100 warm-up steps and a cosine decay to 0 at the last step,
# gradient clip 1, EMA 0.999 — on a unet-attn of widths 48/96 at 8 and 4 latent pixels (1,697,668 parameters).
# A latent step costs a fraction of a pixel step, so the same CPU time buys several times the steps.
#   bash scripts/train_emoji_latent.sh [OUT]      (default OUT: runs/emoji-latent; STEPS=12000)
# Re-running it continues the run from its last checkpoint (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/emoji-latent}"
STEPS="${STEPS:-12000}"
mkdir -p "$OUT"
if [ ! -f "$OUT/run/checkpoint.safetensors" ]; then
  $D compose --schedule flow --objective flow-matching --sampler ddim --guidance cfg --denoiser unet-attn \
    --autoencoder kl --set autoencoder.in_channels=3 --set autoencoder.z_channels=4 --set autoencoder.channels=16 \
    --set autoencoder.weights=emoji-kl \
    --set denoiser.prediction=flow --set denoiser.base_channels=48 --set denoiser.norm_groups=8 \
    --set denoiser.channel_mult=1,2 --set denoiser.dropout=0 \
    --set guidance.p_uncond=0.1 --set objective.loc=0 --set objective.uniform_fraction=0.3 \
    -o "$OUT/pipeline.toml" > /dev/null
  $D train "$OUT/pipeline.toml" --data emoji --data-option flip=true --out "$OUT/run" --steps "$STEPS" \
    --batch-size 64 --lr 2e-3 --warmup 100 --lr-schedule cosine --decay-steps "$STEPS" --grad-clip 1 \
    --ema-decay 0.999 --seed 0 --sample-every 0 --checkpoint-every 500
else
  $D train "$OUT/pipeline.toml" --out "$OUT/run" --steps "$STEPS" --resume
fi
echo "export: $D export $OUT/run -o emoji-latent.safetensors"
