#!/usr/bin/env bash
# Reproduce the shipped `emoji-flow` model (plugins/pretrained, docs/pretrained.md): the recipe of
# mnist-flow (scripts/train_mnist_flow.sh) at 32×32 RGB on the emoji dataset shipped with the
# datasets plugin. Flow matching with logit-normal τ (m = 0.5) and a uniform share of 0.3; unet-attn
# widths 16/64/96 at 32, 16 and 8 pixels with self-attention at 8×8; cfg label dropout 0.1;
# batch 64, AdamW 2e-3, EMA 0.999. It trains in stages, each a resume of the last with the cosine
# decay stretched to the stage's end (warm restarts, Loshchilov & Hutter 2017): the shipped model's
# stages are 1,000, 2,000 and 3,000 steps, as it was made.
#   bash scripts/train_emoji.sh [OUT]      (default OUT: runs/emoji-flow; STAGES="1000 2000 3000")
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/emoji-flow}"
STAGES="${STAGES:-1000 2000 3000}"
mkdir -p "$OUT"
$D compose --schedule flow --objective flow-matching --sampler ddim --guidance cfg --denoiser unet-attn \
  --set denoiser.prediction=flow --set denoiser.in_channels=3 --set denoiser.image_size=32 \
  --set denoiser.base_channels=16 --set denoiser.norm_groups=8 --set denoiser.channel_mult=1,4,6 \
  --set denoiser.num_res_blocks=1 --set denoiser.attention_resolutions=8 --set denoiser.dropout=0 \
  --set guidance.p_uncond=0.1 --set objective.loc=0.5 --set objective.uniform_fraction=0.3 \
  -o "$OUT/pipeline.toml" > /dev/null
# the step a run has reached (0 before its first checkpoint): a stage already done is skipped
reached() { [ -f "$OUT/run/log.jsonl" ] && tail -n 1 "$OUT/run/log.jsonl" | .venv/bin/python -c 'import json,sys; print(json.loads(sys.stdin.read())["step"])' || echo 0; }
for STEPS in $STAGES; do
  [ "$(reached)" -ge "$STEPS" ] && continue
  resume=()
  [ -f "$OUT/run/checkpoint.safetensors" ] && resume=(--resume)
  $D train "$OUT/pipeline.toml" --data emoji --out "$OUT/run" --steps "$STEPS" --batch-size 64 --lr 2e-3 --warmup 100 \
    --lr-schedule cosine --decay-steps "$STEPS" --grad-clip 1 --ema-decay 0.999 --seed 0 --sample-every 0 \
    --checkpoint-every 250 --channels-last "${resume[@]}"
done
echo "export for shipping: $D export $OUT/run -o emoji-flow.safetensors"
