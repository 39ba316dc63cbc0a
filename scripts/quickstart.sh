#!/usr/bin/env bash
# One command from nothing to pictures: install difftk into .venv, compose a pipeline (cosine
# schedule, DDIM sampler, classifier-free guidance) and sample the digits 0-9 with the MNIST
# model shipped in the difftk-pretrained plugin. CPU only, no download, under a minute after
# the install.   bash scripts/quickstart.sh        (SCALE=w STEPS=k to change guidance / steps)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
D=.venv/bin/difftk
OUT=runs/quickstart
mkdir -p "$OUT"
$D compose --schedule cosine --sampler ddim --guidance cfg --set guidance.scale="${SCALE:-3}" -o "$OUT/pipeline.toml"
$D sample mnist-cfg --pipeline "$OUT/pipeline.toml" -n 100 --steps "${STEPS:-25}" -o "$OUT/digits.png" \
  --trajectory "$OUT/trajectory.png"
echo "digits 0-9, one row per class: $OUT/digits.png   x̂₀ along the way: $OUT/trajectory.png"
