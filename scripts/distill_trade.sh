#!/usr/bin/env bash
# The trade of a reflowed student against its teacher (docs/fast_sampling.md, "The trade"): KID, FID and
# accuracy by `difftk compare` (n samples, the classes in equal numbers, cfg at w = 0, clipping off, against
# the 500 held-out digits), and the share of pixels beyond ±1.05 of the same draws (benchmarks/pixel_range.py).
# Seeds other than 0 by default: the shipped student was distilled from seed 0's noise.
#   bash scripts/distill_trade.sh [STUDENT] [OUT] [N] [SEEDS] [PART]
#   (default STUDENT: mnist-flow-2step, OUT: runs/trade, N: 1000, SEEDS: 1,2,3, PART: all; PART teacher or student
#   runs one side)
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
P=.venv/bin/python
STUDENT="${1:-mnist-flow-2step}"
OUT="${2:-runs/trade}"
N="${3:-1000}"
SEEDS="${4:-1,2,3}"
PART="${5:-all}"
first_seed="${SEEDS%%,*}"
score=(--metric kid --metric fid --metric accuracy --guidance cfg --scale 0 -n "$N" --seed "$SEEDS")
if [ "$PART" != student ]; then
  $D compare mnist-flow --sampler ddim --steps 1,2,4,10,50,100 "${score[@]}" -o "$OUT/teacher-ddim"
  $D compare mnist-flow --sampler unipc --steps 10 "${score[@]}" -o "$OUT/teacher-unipc"
  # DDIM at 50 and 100 steps are left out of the range (the share at 50, n = 200, is in docs/pretrained.md):
  # their draws alone are most of the teacher's cost
  $P benchmarks/pixel_range.py mnist-flow --sampler ddim --steps 1,2,4,10 -n "$N" --seed "$first_seed"
  $P benchmarks/pixel_range.py mnist-flow --sampler unipc --steps 10 -n "$N" --seed "$first_seed"
fi
if [ "$PART" != teacher ]; then
  $D compare "$STUDENT" --sampler flow-euler --steps 1,2,4 "${score[@]}" -o "$OUT/student"
  for seed in ${SEEDS//,/ }; do  # a few evaluations a sample: every seed
    $P benchmarks/pixel_range.py "$STUDENT" --sampler flow-euler --steps 1,2,4 -n "$N" --seed "$seed"
  done
fi
