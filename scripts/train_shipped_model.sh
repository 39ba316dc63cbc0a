#!/usr/bin/env bash
# Reproduce the class-conditional MNIST model shipped with difftk (plugins/pretrained): a
# unet-attn of 1.19 M parameters, cosine schedule, L_simple, trained with classifier-free
# guidance's label dropout on the 4,500 training digits shipped with the datasets plugin.
#   bash scripts/train_shipped_model.sh [OUT]      (default OUT: runs/shipped)
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/shipped}"
STEPS="${STEPS:-5000}"
mkdir -p "$OUT"
$D compose --schedule cosine --sampler ddim --guidance cfg --denoiser unet-attn --objective simple \
  --set denoiser.base_channels=32 --set denoiser.norm_groups=8 --set denoiser.channel_mult=1,2,2 \
  --set denoiser.num_res_blocks=1 --set denoiser.attention_resolutions=7 --set denoiser.dropout=0.1 \
  --set guidance.p_uncond=0.1 -o "$OUT/pipeline.toml"
resume=()
[ -f "$OUT/run/checkpoint.safetensors" ] && resume=(--resume)
$D train "$OUT/pipeline.toml" --data mnist --steps "$STEPS" --out "$OUT/run" --lr 1e-3 --batch-size 64 \
  --seed 0 --sample-every 1000 --sample-steps 50 --checkpoint-every 250 "${resume[@]}"
