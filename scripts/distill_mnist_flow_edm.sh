#!/usr/bin/env bash
# Reflow of `mnist-flow` into a student that predicts x₀ through Karras et al.'s preconditioning
# (`denoiser.prediction=edm`: x̂₀ = c_skip·x + c_out·F, c_skip → 0 at pure noise, → 1 at the data), in
# place of the velocity (docs/fast_sampling.md, "A student that predicts x₀"). A velocity student makes
# its one-step x̂₀ = z − û(z) by cancelling the noise z in its output; what it leaves of z lands on the
# black ground as pixels beyond −1.05. With the preconditioning its x̂₀ at pure noise is σ_data·F, the
# network's own output, and the boundary condition x̂₀(x, 0) = x is built in (Song et al. 2023, §3).
# The same network and recipe as scripts/distill_mnist_flow.sh, started from the teacher's weights
# (--init: every weight but the meaning of the output, which the first steps relearn), on the same
# pairs (OUT/pairs: drawn once, extended to PAIRS; a directory shared with that script is reused).
# The reflow loss is the velocity's, converted by the core: the student's parameterisation changes what
# the network outputs, not what is learnt.
# PREDICTION=flow trains the velocity student of scripts/distill_mnist_flow.sh with this script's
# settings: the control, the same run in every respect but the output's meaning.
# Checkpoints every 20 steps; re-running the script continues the run. Exports the EMA weights to
# OUT/RUN.safetensors.
#   bash scripts/distill_mnist_flow_edm.sh [OUT] [STEPS] [PAIRS] [RUN]
#   (default OUT: runs/mnist-flow-reflow, STEPS: 800, PAIRS: 3072, RUN: run-edm; environment: PREDICTION=edm,
#   BATCH=64, LR=2e-4, EMA=0.995, INIT=mnist-flow: the weights a new run starts from, e.g. an earlier run's
#   directory to continue it with a fresh learning-rate schedule)
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/mnist-flow-reflow}"
STEPS="${2:-800}"
PAIRS="${3:-3072}"
NAME="${4:-run-edm}"
RUN="$OUT/$NAME"
PREDICTION="${PREDICTION:-edm}"
BATCH="${BATCH:-64}"
LR="${LR:-2e-4}"
EMA="${EMA:-0.995}"
mkdir -p "$OUT"
.venv/bin/python -m difftk_distill.pairs mnist-flow "$OUT/pairs" -n "$PAIRS" --sampler unipc --steps 8 --seed 0 \
  --chunk 256
$D compose --schedule flow --objective reflow --sampler flow-euler --guidance cfg --denoiser unet-attn \
  --set "denoiser.prediction=$PREDICTION" --set denoiser.base_channels=16 --set denoiser.norm_groups=8 \
  --set denoiser.channel_mult=1,4,6 --set denoiser.num_res_blocks=1 --set denoiser.attention_resolutions=7 \
  --set denoiser.dropout=0 --set guidance.p_uncond=0.1 --set objective.teacher=mnist-flow \
  --set objective.teacher_sampler=unipc --set objective.teacher_steps=8 --set "objective.pairs=$OUT/pairs" \
  -o "$OUT/pipeline-$PREDICTION.toml" > /dev/null
resume=(--init "${INIT:-mnist-flow}")
[ -f "$RUN/checkpoint.safetensors" ] && resume=(--resume)
$D train "$OUT/pipeline-$PREDICTION.toml" --data mnist --out "$RUN" --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" \
  --warmup 10 --lr-schedule cosine --decay-steps "$STEPS" --grad-clip 1 --ema-decay "$EMA" --seed 0 --sample-every 0 \
  --checkpoint-every 20 --channels-last "${resume[@]}"
$D export "$RUN" -o "$OUT/$NAME.safetensors"
echo "sample it: $D sample $RUN -n 64 --sampler flow-euler --steps 1 -o $OUT/one-step.png"
