#!/usr/bin/env bash
# The test suite's wall time at two commits, on one machine, in one run: each commit is cloned
# into a temporary directory and installed there (scripts/install.sh), then the two suites run one
# after the other (the installs first, so neither suite shares the cores with an install), with the
# README's test command. Prints the two pytest summaries and wall times side by side.
#   bash benchmarks/suite_wall_time.sh BEFORE [AFTER]      (AFTER: HEAD)
set -euo pipefail
cd "$(dirname "$0")/.."
before="${1:?usage: bash benchmarks/suite_wall_time.sh BEFORE_COMMIT [AFTER_COMMIT]}"
after="${2:-HEAD}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for side in before after; do
  commit="${!side}"
  git clone -q . "$work/$side"
  git -C "$work/$side" checkout -q "$(git rev-parse "$commit")"
  (cd "$work/$side" && bash scripts/install.sh > "$work/$side.install.log" 2>&1) \
    || { echo "error: installing $commit failed (log: $work/$side.install.log)" >&2; exit 1; }
done
for side in before after; do
  start=$(date +%s.%N)
  (cd "$work/$side" && DIFFTK_CI=1 .venv/bin/python -m pytest -q -p no:cacheprovider > "$work/$side.log" 2>&1) || true
  end=$(date +%s.%N)
  printf '%-6s %s  wall %6.1f s  %s\n' "$side" "$(git rev-parse --short "${!side}")" "$(echo "$end - $start" | bc)" \
    "$(grep -E '^[0-9]+ (passed|failed)|passed' "$work/$side.log" | tail -1)"
done
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(date -u +%F)"
