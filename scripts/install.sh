#!/usr/bin/env bash
# Install difftk for development: a virtual environment in .venv with the core, the CLI and
# every plugin under plugins/ installed editable, plus the test dependencies.
# Usage: bash scripts/install.sh            (VENV=path to use another environment)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch first, pinned: the CPU build; an unpinned torch would pull the CUDA build.
"${PIP[@]}" "torch==2.13.0"
args=(-e "core[test]" -e cli)
for plugin in plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] && args+=(-e "${plugin%/}")
done
"${PIP[@]}" "${args[@]}"
echo "installed difftk into $VENV: $("$VENV/bin/difftk" --version)"
