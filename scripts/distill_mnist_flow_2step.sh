#!/usr/bin/env bash
# The shipped few-step student `mnist-flow-2step` (docs/pretrained.md, docs/fast_sampling.md): rectified-flow
# reflow of `mnist-flow` (plugins/distill), trained where a 2-step sampler asks it. Six stages, each a new
# run from the last one's EMA weights (--init) with its own warm-up and cosine decay:
#   1. velocity student: 120 steps on 768 pairs, uniform t, batch 32, lr 4e-4, EMA 0.98;
#   2. 300 steps on 3,072 pairs, half the examples at t = 1 or ½ (reflow's `times`), batch 64, lr 1e-4, EMA 0.995;
#   3. 300 steps at t = 1 or 0.25 (share 0.6);  4. 400 steps at t = 1 or 0.2 (share 0.6);
#   5. 300 and 6. 600 more steps at t = 1 or 0.2, on 6,144 pairs;
#   7. and 8. 600 steps each with reflow's `rollout`: the examples at t = 0.2 are asked where the student's own
#      first step from z arrives, and trained to land on the teacher's sample from there.
# The pairs (x̂₀, z) are the teacher's UniPC at 8 steps from the noise `difftk sample --seed 0` draws, drawn once
# and extended between stages (pair i depends only on the seed and i). The last stage's pipeline samples with
# flow-euler at shift 1/3: 2 steps at t = 1 then 0.25, near the grid it was trained at (1, 0.2) and measured
# better there (docs/fast_sampling.md, "The 2-step grid"; a sampler option, which training never reads); unguided by default (cfg at
# w = 0, as it was measured: 2 evaluations a sample; `--scale W` guides it, its null class trained by cfg's dropout). Checkpoints every 20 or 50
# steps; re-running the script continues where it stopped. About 3,200 training steps: 38 min on 2 quiet CPU
# cores (docs/fast_sampling.md gives the measured budget).
#   bash scripts/distill_mnist_flow_2step.sh [OUT]      (default OUT: runs/mnist-flow-2step)
# writes OUT/mnist-flow-2step.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/mnist-flow-2step}"
mkdir -p "$OUT"

pairs() {  # extend OUT/pairs to $1 pairs
  .venv/bin/python -m difftk_distill.pairs mnist-flow "$OUT/pairs" -n "$1" --sampler unipc --steps 8 --seed 0 --chunk 256
}

compose() {  # compose OUT/pipeline-$1.toml with the objective and sampler options that follow
  local name="$1"
  shift
  $D compose --schedule flow --objective reflow --sampler flow-euler --guidance cfg --denoiser unet-attn \
    --set denoiser.prediction=flow --set denoiser.base_channels=16 --set denoiser.norm_groups=8 \
    --set denoiser.channel_mult=1,4,6 --set denoiser.num_res_blocks=1 --set denoiser.attention_resolutions=7 \
    --set denoiser.dropout=0 --set guidance.p_uncond=0.1 --set objective.teacher=mnist-flow \
    --set objective.teacher_sampler=unipc --set objective.teacher_steps=8 --set "objective.pairs=$OUT/pairs" \
    "$@" -o "$OUT/pipeline-$name.toml" > /dev/null
}

stage() {  # stage NAME PIPELINE FROM STEPS SEED BATCH LR EMA EVERY: a run OUT/NAME from FROM's EMA weights
  local name="$1" pipeline="$2" from="$3" steps="$4" seed="$5" batch="$6" lr="$7" ema="$8" every="$9"
  local resume=(--init "$from")
  [ -f "$OUT/$name/checkpoint.safetensors" ] && resume=(--resume)
  echo "stage $name: $steps steps from $from" >&2
  $D train "$OUT/pipeline-$pipeline.toml" --data mnist --out "$OUT/$name" --steps "$steps" --batch-size "$batch" \
    --lr "$lr" --warmup 10 --lr-schedule cosine --decay-steps "$steps" --grad-clip 1 --ema-decay "$ema" --seed "$seed" \
    --sample-every 0 --checkpoint-every "$every" --channels-last "${resume[@]}"
}

compose uniform
compose t50 --set objective.times=1,0.5 --set objective.times_share=0.5
compose t25 --set objective.times=1,0.25 --set objective.times_share=0.6
compose t20 --set objective.times=1,0.2 --set objective.times_share=0.6
compose final --set objective.times=1,0.2 --set objective.times_share=0.6 --set sampler.shift=0.25 --set guidance.scale=0
compose rollout --set objective.times=1,0.2 --set objective.times_share=0.6 --set objective.rollout=true \
  --set sampler.shift=0.333333 --set guidance.scale=0

pairs 768
stage 1-velocity uniform mnist-flow 120 0 32 4e-4 0.98 20
pairs 3072
stage 2-times50 t50 "$OUT/1-velocity" 300 2 64 1e-4 0.995 50
stage 3-times25 t25 "$OUT/2-times50" 300 3 64 1e-4 0.995 50
stage 4-times20 t20 "$OUT/3-times25" 400 4 64 1e-4 0.995 50
pairs 6144
stage 5-times20 t20 "$OUT/4-times20" 300 5 64 1e-4 0.995 50
stage 6-final final "$OUT/5-times20" 600 6 64 1e-4 0.995 50
stage 7-rollout rollout "$OUT/6-final" 600 7 64 1e-4 0.995 50
stage 8-rollout rollout "$OUT/7-rollout" 600 8 64 1e-4 0.995 50
$D export "$OUT/8-rollout" -o "$OUT/mnist-flow-2step.safetensors"
echo "sample it: $D sample $OUT/mnist-flow-2step.safetensors -n 64 --sampler flow-euler --steps 2 -o $OUT/two-steps.png"
