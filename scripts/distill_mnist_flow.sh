#!/usr/bin/env bash
# Distil the shipped `mnist-flow` into a few-step student by rectified-flow reflow (Liu et al. 2023;
# plugins/distill): the same network, started from the teacher's weights (--init), trained by flow
# matching on the teacher's own pairs (x̂₀, z), x̂₀ drawn from z by UniPC at 8 steps, with the label asked
# for (cfg's label dropout 0.1 kept: a dropped label takes a pair the teacher drew unconditionally, so the
# student keeps its unconditional branch).
# The pairs are drawn once, into OUT/pairs (chunks of 256, each written atomically; re-running continues
# the draw, a larger PAIRS extends it), then reused by every epoch of training. Checkpoints every 50
# steps; re-running the script continues the run.
# At the end it exports the EMA weights to OUT/mnist-flow-reflow.safetensors (docs/fast_sampling.md,
# "mnist-flow-reflow").
#   bash scripts/distill_mnist_flow.sh [OUT] [STEPS] [PAIRS]
#   (default OUT: runs/mnist-flow-reflow, STEPS: 500, PAIRS: 3072)
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/mnist-flow-reflow}"
STEPS="${2:-500}"
PAIRS="${3:-3072}"
mkdir -p "$OUT"
.venv/bin/python -m difftk_distill.pairs mnist-flow "$OUT/pairs" -n "$PAIRS" --sampler unipc --steps 8 --seed 0 \
  --chunk 256
$D compose --schedule flow --objective reflow --sampler flow-euler --guidance cfg --denoiser unet-attn \
  --set denoiser.prediction=flow --set denoiser.base_channels=16 --set denoiser.norm_groups=8 \
  --set denoiser.channel_mult=1,4,6 --set denoiser.num_res_blocks=1 --set denoiser.attention_resolutions=7 \
  --set denoiser.dropout=0 --set guidance.p_uncond=0.1 --set objective.teacher=mnist-flow \
  --set objective.teacher_sampler=unipc --set objective.teacher_steps=8 --set "objective.pairs=$OUT/pairs" \
  -o "$OUT/pipeline.toml" > /dev/null
resume=(--init mnist-flow)
[ -f "$OUT/run/checkpoint.safetensors" ] && resume=(--resume)
$D train "$OUT/pipeline.toml" --data mnist --out "$OUT/run" --steps "$STEPS" --batch-size 64 --lr 2e-4 --warmup 20 \
  --lr-schedule cosine --decay-steps "$STEPS" --grad-clip 1 --ema-decay 0.995 --seed 0 --sample-every 0 \
  --checkpoint-every 50 --channels-last "${resume[@]}"
$D export "$OUT/run" -o "$OUT/mnist-flow-reflow.safetensors"
echo "sample it: $D sample $OUT/run -n 64 --sampler flow-euler --steps 2 -o $OUT/two-steps.png"
