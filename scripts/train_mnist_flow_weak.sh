#!/usr/bin/env bash
# Reproduce `mnist-flow-weak`, the weaker companion of the shipped `mnist-flow` for autoguidance
# (Karras et al. 2024: guide a model with a smaller, shorter-trained version of itself; docs/pretrained.md
# has its card). mnist-flow's recipe (scripts/train_mnist_flow.sh: the flow path, the velocity, logit-normal
# τ with a uniform share of 0.3, cfg label dropout 0.1, AdamW 2e-3 with cosine decay, EMA 0.999, seed 0)
# with a network of widths 8, 16 and 32 instead of 16, 64 and 96, trained for STEPS (default 600) steps
# instead of 1,868, on the same 4,500 training digits.
#   bash scripts/train_mnist_flow_weak.sh [OUT]      (default OUT: runs/mnist-flow-weak)
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/mnist-flow-weak}"
STEPS="${STEPS:-600}"
mkdir -p "$OUT"
$D compose --schedule flow --objective flow-matching --sampler ddim --guidance cfg --denoiser unet-attn \
  --set denoiser.prediction=flow --set denoiser.base_channels=8 --set denoiser.norm_groups=4 \
  --set denoiser.channel_mult=1,2,4 --set denoiser.num_res_blocks=1 --set denoiser.attention_resolutions=7 \
  --set denoiser.dropout=0 --set guidance.p_uncond=0.1 --set objective.loc=0.5 \
  --set objective.uniform_fraction=0.3 -o "$OUT/pipeline.toml" > /dev/null
resume=()
[ -f "$OUT/run/checkpoint.safetensors" ] && resume=(--resume)
$D train "$OUT/pipeline.toml" --data mnist --out "$OUT/run" --steps "$STEPS" --batch-size 64 --lr 2e-3 --warmup 50 \
  --lr-schedule cosine --decay-steps "$STEPS" --grad-clip 1 --ema-decay 0.999 --seed 0 --sample-every 0 \
  --checkpoint-every 100 --channels-last "${resume[@]}"
$D export "$OUT/run" -o "$OUT/mnist-flow-weak.safetensors"
echo "ship: cp $OUT/mnist-flow-weak.safetensors plugins/pretrained/src/difftk_pretrained/data/"
