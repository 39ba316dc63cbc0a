#!/usr/bin/env bash
# Train and measure the colour first stage shipped as `emoji-kl` (docs/pretrained.md): the kl autoencoder
# (channels 16 × (1, 2, 2), z_channels 4: 3×32×32 → 8×8×4 latents), 4,000 steps of batch 32, Adam lr 2e-3, on
# the 1,583 shipped training emoji; then its reconstruction PSNR on the training and held-out splits.
# Run again, it resumes where it stopped. COPY=1 puts the weights file into the pretrained plugin's data.
#   bash scripts/train_emoji_autoencoder.sh [OUT]      (default OUT: runs/emoji-kl)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT="${1:-runs/emoji-kl}"
mkdir -p "$OUT"
AE="$OUT/emoji-kl.safetensors"
resume=()
[ -f "$AE.state.safetensors" ] && resume=(--resume)
$PY -m difftk_autoencoder.train --data emoji --steps "${AE_STEPS:-4000}" --batch-size 32 --lr 2e-3 \
  --set in_channels=3 --set channels=16 --set z_channels=4 --checkpoint-every 100 --out "$AE" "${resume[@]}"
$PY -m difftk_autoencoder.measure "$AE" --data emoji -n 2000
$PY -m difftk_autoencoder.measure "$AE" --data emoji --split test -n 2000
if [ "${COPY:-0}" = 1 ]; then
  cp "$AE" plugins/pretrained/src/difftk_pretrained/data/emoji-kl.safetensors
  echo "copied to plugins/pretrained/src/difftk_pretrained/data/emoji-kl.safetensors"
fi
