#!/usr/bin/env bash
# A second round for the reflowed student of scripts/distill_mnist_flow.sh (docs/fast_sampling.md, "Round
# two"): extend its pairs in OUT/pairs to PAIRS (the first ones unchanged), then train a new run OUT/run2
# from the first run's EMA weights (--init: the first run's learning rate has decayed to 0) for STEPS steps
# at half its learning rate with a longer EMA, and export it to OUT/mnist-flow-reflow-2.safetensors.
# Checkpoints every 50 steps; re-running the script continues the run.
#   bash scripts/distill_mnist_flow_more.sh [OUT] [STEPS] [PAIRS]
#   (default OUT: runs/mnist-flow-reflow, STEPS: 800, PAIRS: 6144)
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/mnist-flow-reflow}"
STEPS="${2:-800}"
PAIRS="${3:-6144}"
[ -f "$OUT/run/checkpoint.safetensors" ] || { echo "no first round in $OUT/run: run scripts/distill_mnist_flow.sh $OUT first" >&2; exit 1; }
.venv/bin/python -m difftk_distill.pairs mnist-flow "$OUT/pairs" -n "$PAIRS" --sampler unipc --steps 8 --seed 0 \
  --chunk 256
resume=(--init "$OUT/run")
[ -f "$OUT/run2/checkpoint.safetensors" ] && resume=(--resume)
$D train "$OUT/pipeline.toml" --data mnist --out "$OUT/run2" --steps "$STEPS" --batch-size 64 --lr 1e-4 --warmup 20 \
  --lr-schedule cosine --decay-steps "$STEPS" --grad-clip 1 --ema-decay 0.997 --seed 1 --sample-every 0 \
  --checkpoint-every 50 --channels-last "${resume[@]}"
$D export "$OUT/run2" -o "$OUT/mnist-flow-reflow-2.safetensors"
