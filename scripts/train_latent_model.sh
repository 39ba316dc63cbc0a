#!/usr/bin/env bash
# Train the MNIST latent diffusion pair measured in docs/latent.md: the kl autoencoder (28×28 padded to
# 32×32, f = 4, 8×8×3 latents), then a class-conditional unet-attn on its latents (cosine schedule,
# v-prediction, cfg label dropout p = 0.1). Each stage resumes where it stopped when run again.
#   bash scripts/train_latent_model.sh [OUT]        (default OUT: runs/latent)
#   AE_STEPS=1000 LDM_STEPS=3000 bash scripts/train_latent_model.sh
#   AE=mnist-kl bash scripts/train_latent_model.sh   (on the shipped first stage, by name: no autoencoder stage)
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/latent}"
mkdir -p "$OUT"
AE="${AE:-$OUT/mnist-kl.safetensors}"
if [[ "$AE" == */* || "$AE" == *.safetensors ]]; then  # a weights file: trained (or resumed) here first
  resume=()
  [ -f "$AE.state.safetensors" ] && resume=(--resume)
  .venv/bin/python -m difftk_autoencoder.train --data mnist --steps "${AE_STEPS:-1000}" --batch-size 32 --lr 2e-3 \
    --set pad=2 --set channels=16 --checkpoint-every 100 --out "$AE" "${resume[@]}"
fi
$D compose --schedule cosine --sampler ddim --guidance cfg --denoiser unet-attn --objective simple \
  --autoencoder kl --set autoencoder.pad=2 --set autoencoder.channels=16 --set autoencoder.weights="$AE" \
  --set denoiser.base_channels=32 --set denoiser.norm_groups=8 --set denoiser.channel_mult=1,2,2 \
  --set denoiser.dropout=0.1 --set denoiser.prediction=v \
  --set guidance.p_uncond=0.1 -o "$OUT/latent.toml" > /dev/null
resume=()
[ -f "$OUT/ldm/checkpoint.safetensors" ] && resume=(--resume)
$D train "$OUT/latent.toml" --data mnist --steps "${LDM_STEPS:-3000}" --out "$OUT/ldm" --batch-size 64 --seed 0 \
  --lr 1e-3 --checkpoint-every 250 --sample-every 1000 --sample-steps 25 "${resume[@]}"
echo "measure: python benchmarks/shipped_samplers.py --model $OUT/ldm -n 100 --no-clip"
