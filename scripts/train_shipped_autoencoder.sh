#!/usr/bin/env bash
# Train and measure a first stage shipped by the pretrained plugin (docs/pretrained.md), each the kl
# autoencoder with channels 16 × (1, 2, 2), batch 32, Adam lr 2e-3:
# - mnist-kl: z_channels 3, pad 2 (28×28 → 8×8×3 latents), 1,000 steps on the 4,500 shipped training digits;
#   then the FID and accuracy of the training reconstructions and of the originals (the floor);
# - emoji-kl: 3 channels, z_channels 4 (3×32×32 → 8×8×4 latents), 4,000 steps on the 1,583 training emoji.
# Both print their reconstruction PSNR on the training and held-out splits. Run again, it resumes where it
# stopped. COPY=1 puts the weights file into the pretrained plugin's data.
#   bash scripts/train_shipped_autoencoder.sh [mnist-kl|emoji-kl] [OUT]      (default: mnist-kl, OUT runs/NAME)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
NAME="${1:-mnist-kl}"
case "$NAME" in
  mnist-kl) DATA=mnist; STEPS=1000; OPTIONS=(--set pad=2 --set channels=16) ;;
  emoji-kl) DATA=emoji; STEPS=4000; OPTIONS=(--set in_channels=3 --set channels=16 --set z_channels=4) ;;
  *) echo "error: no shipped first stage '$NAME': give mnist-kl or emoji-kl" >&2; exit 2 ;;
esac
OUT="${2:-runs/$NAME}"
mkdir -p "$OUT"
AE="$OUT/$NAME.safetensors"
resume=()
[ -f "$AE.state.safetensors" ] && resume=(--resume)
$PY -m difftk_autoencoder.train --data "$DATA" --steps "${AE_STEPS:-$STEPS}" --batch-size 32 --lr 2e-3 \
  "${OPTIONS[@]}" --checkpoint-every 100 --out "$AE" "${resume[@]}"
if [ "$DATA" = mnist ]; then
  rm -f "$OUT/recon.npz" "$OUT/orig.npz"
  $PY -m difftk_autoencoder.measure "$AE" --data mnist -n 2000 --npz "$OUT/recon.npz" --originals "$OUT/orig.npz"
  .venv/bin/difftk evaluate --samples "$OUT/recon.npz" --metric fid --metric accuracy
  .venv/bin/difftk evaluate --samples "$OUT/orig.npz" --metric fid --metric accuracy
else
  $PY -m difftk_autoencoder.measure "$AE" --data "$DATA" -n 2000
fi
$PY -m difftk_autoencoder.measure "$AE" --data "$DATA" --split test -n 2000
if [ "${COPY:-0}" = 1 ]; then
  cp "$AE" "plugins/pretrained/src/difftk_pretrained/data/$NAME.safetensors"
  echo "copied to plugins/pretrained/src/difftk_pretrained/data/$NAME.safetensors"
fi
