#!/usr/bin/env bash
# The guidance study (docs/guidance_study.md): for each shipped model and each guidance method, accuracy,
# KID and FID (METRICS) over the method's main parameter, with `difftk compare` on DDIM at 25 steps, the same seeds in
# every cell (Welch's t against the cell difftk compare names). One output folder per model and method.
#   N=1000 SEEDS=0,1,2 MODELS="mnist-cfg mnist-flow" bash benchmarks/guidance_study.sh [OUT]   (the study)
#   PILOT=1 N=100 SEEDS=0,1 MODELS=mnist-flow METRICS="accuracy fid" bash benchmarks/guidance_study.sh runs/guidance-pilot
#   (the pilot: one operating point per method, plain cfg at 0 and 3; KID is noise at n = 100)
#   STEPS (default 25) sets the DDIM steps; ONLY="cfg autoguidance" runs some methods alone (cfg-low: cfg at 0.25
#   and 0.5, into OUT/MODEL/cfg@low, which guidance_study.py reads as more cells of cfg)
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/difftk
OUT="${1:-runs/guidance-study}"
N="${N:-1000}"
SEEDS="${SEEDS:-0,1,2}"
MODELS="${MODELS:-mnist-cfg mnist-flow}"
STEPS="${STEPS:-25}"
METRICS="${METRICS:-accuracy kid fid}"
common=(--sampler ddim --steps "$STEPS" -n "$N" --seed "$SEEDS")
for metric in $METRICS; do common+=(--metric "$metric"); done
for model in $MODELS; do
  run() {  # run NAME GUIDANCE SCALES [--set guidance.X=V ...]
    local name=$1 guidance=$2 scales=$3; shift 3
    echo "== $model $name: --guidance $guidance --scale $scales $*"
    /usr/bin/time -f "   %e s wall" $D compare "$model" "${common[@]}" --guidance "$guidance" --scale "$scales" "$@" \
      -o "$OUT/$model/$name" > "$OUT/$model/$name.log"
    tail -1 "$OUT/$model/$name.log"
  }
  mkdir -p "$OUT/$model"
  if [ -n "${PILOT:-}" ]; then W=3 WS=0,3 L=0.6 A=1; else W=1,3,5 WS=0,1,3,5 L=0.2,0.6,1 A=0.5,1,2; fi
  # ONLY="cfg apg …" runs those methods alone (in this order either way)
  want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
  if want cfg; then run cfg cfg "$WS"; fi
  # cfg's scales between 0 and 1, where the other methods' accuracies fall; folder cfg@low: more cells of cfg
  if [ -z "${PILOT:-}" ] && want cfg-low; then run cfg@low cfg 0.25,0.5; fi
  if [ "$model" = mnist-flow ] && want autoguidance; then
    run autoguidance autoguidance "$A" --set guidance.guide=mnist-flow-weak
  fi
  if want cfgpp; then run cfgpp cfg++ "$L"; fi
  if want apg; then run apg apg "$W" --set guidance.eta=0 --set guidance.momentum=-0.5; fi
  if want cfg-interval; then run cfg-interval cfg "$W" --set guidance.interval=0.28,5.42; fi
  if want cfg-rescale; then run cfg-rescale cfg "$W" --set guidance.rescale=0.7; fi
  if want cfg-zero-star; then run cfg-zero-star cfg-zero-star "$W"; fi
done
