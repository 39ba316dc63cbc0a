#!/usr/bin/env bash
# Train your own: install difftk into .venv, train a small
# class-conditional U-Net on the 5,000 MNIST digits shipped with the datasets plugin, and
# sample a grid of digits. CPU only, no download. Re-running it continues where it stopped.
#   bash scripts/train_mnist.sh            (STEPS=... to train longer)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
D=.venv/bin/difftk
OUT=runs/mnist-small
STEPS="${STEPS:-1500}"
mkdir -p "$OUT"
$D compose --schedule linear --sampler ddim --denoiser unet-attn --objective simple \
  --set denoiser.base_channels=16 --set denoiser.norm_groups=8 --set denoiser.channel_mult=1,2,2 \
  --set denoiser.num_res_blocks=1 --set denoiser.attention_resolutions=7 --set denoiser.dropout=0 \
  -o "$OUT/pipeline.toml"
resume=()
[ -f "$OUT/run/checkpoint.safetensors" ] && resume=(--resume)
$D train "$OUT/pipeline.toml" --data mnist --steps "$STEPS" --out "$OUT/run" --lr 1e-3 \
  --sample-every 500 --sample-steps 50 --checkpoint-every 500 "${resume[@]}"
$D sample "$OUT/run/checkpoint.safetensors" -n 100 -o "$OUT/digits.png" --steps 50 \
  --trajectory "$OUT/trajectory.png"
echo "digits: $OUT/digits.png   trajectory: $OUT/trajectory.png"
