#!/usr/bin/env bash
# Train and measure the MNIST first stage shipped as `mnist-kl` (docs/pretrained.md): the kl autoencoder
# (channels 16 × (1, 2, 2), z_channels 3, pad 2: 28×28 → 8×8×3 latents), 1,000 steps of batch 32, Adam lr 2e-3,
# on the 4,500 shipped training digits; then its reconstruction PSNR (2,000 training digits, the 500
# held-out ones) and the FID and accuracy of the training reconstructions and of the originals (the floor).
# Run again, it resumes where it stopped. COPY=1 puts the weights file into the pretrained plugin's data.
#   bash scripts/train_shipped_autoencoder.sh [OUT]      (default OUT: runs/mnist-kl)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT="${1:-runs/mnist-kl}"
mkdir -p "$OUT"
AE="$OUT/mnist-kl.safetensors"
resume=()
[ -f "$AE.state.safetensors" ] && resume=(--resume)
$PY -m difftk_autoencoder.train --data mnist --steps "${AE_STEPS:-1000}" --batch-size 32 --lr 2e-3 \
  --set pad=2 --set channels=16 --checkpoint-every 100 --out "$AE" "${resume[@]}"
rm -f "$OUT/recon.npz" "$OUT/orig.npz"
$PY -m difftk_autoencoder.measure "$AE" --data mnist -n 2000 --npz "$OUT/recon.npz" --originals "$OUT/orig.npz"
$PY -m difftk_autoencoder.measure "$AE" --data mnist --split test -n 2000
.venv/bin/difftk evaluate --samples "$OUT/recon.npz" --metric fid --metric accuracy
.venv/bin/difftk evaluate --samples "$OUT/orig.npz" --metric fid --metric accuracy
if [ "${COPY:-0}" = 1 ]; then
  cp "$AE" plugins/pretrained/src/difftk_pretrained/data/mnist-kl.safetensors
  echo "copied to plugins/pretrained/src/difftk_pretrained/data/mnist-kl.safetensors"
fi
