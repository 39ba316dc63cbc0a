#!/usr/bin/env bash
# Reproduce the class-conditional MNIST model shipped with difftk (plugins/pretrained): a
# unet-attn of 1.19 M parameters, cosine schedule, L_simple, trained with classifier-free
# guidance's label dropout on the 4,500 training digits shipped with the datasets plugin.
# Two stages (docs/pretrained.md):
#   1. eps: 5,000 steps predicting ε (Ho et al. 2020);
#   2. v:   1,000 steps fine-tuning those weights to predict v (Salimans & Ho 2022), which keeps
#           x̂₀ bounded where ᾱ → 0, so every sampler works without clipping x̂₀.
#   bash scripts/train_shipped_model.sh [OUT]      (default OUT: runs/shipped)
#   STAGE=v INIT=mnist-cfg-eps.safetensors bash scripts/train_shipped_model.sh   (stage 2 only)
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/shipped}"
mkdir -p "$OUT"
compose() {  # compose PREDICTION FILE
  $D compose --schedule cosine --sampler ddim --guidance cfg --denoiser unet-attn --objective simple \
    --set denoiser.base_channels=32 --set denoiser.norm_groups=8 --set denoiser.channel_mult=1,2,2 \
    --set denoiser.num_res_blocks=1 --set denoiser.attention_resolutions=7 --set denoiser.dropout=0.1 \
    --set denoiser.prediction="$1" --set guidance.p_uncond=0.1 -o "$2" > /dev/null
}
train() {  # train PIPELINE RUN STEPS [ARGS...]
  local pipeline=$1 run=$2 steps=$3; shift 3
  local resume=()
  [ -f "$run/checkpoint.safetensors" ] && resume=(--resume)
  $D train "$pipeline" --data mnist --steps "$steps" --out "$run" --batch-size 64 --seed 0 \
    --checkpoint-every 250 --channels-last "${resume[@]}" "$@"
}
if [ "${STAGE:-all}" != v ]; then
  compose eps "$OUT/eps.toml"
  train "$OUT/eps.toml" "$OUT/eps" "${EPS_STEPS:-5000}" --lr 1e-3 --sample-every 1000 --sample-steps 50
fi
compose v "$OUT/v.toml"
train "$OUT/v.toml" "$OUT/v" "${V_STEPS:-1000}" --init "${INIT:-$OUT/eps}" --lr 5e-4 --warmup 50 \
  --sample-every 500 --sample-steps 25
echo "export for shipping: $D export $OUT/v -o mnist-cfg.safetensors"
