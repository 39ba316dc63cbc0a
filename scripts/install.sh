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
# Editable installs follow the code, so pip needs to run again only when what it installs from
# changes: every pyproject.toml and this script. Their hash is kept in the environment.
stamp="$VENV/.difftk-install"
wanted=$(cat scripts/install.sh core/pyproject.toml cli/pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x "$VENV/bin/difftk" ]; then
  echo "difftk is installed in $VENV and up to date: $("$VENV/bin/difftk" --version)"
  exit 0
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch first, pinned, so that nothing pulls another build of it. Which build the pin gets depends on
# the index: where pip is set up with a local CPU wheel of it (find-links, as on the project's machines)
# or with PyTorch's CPU index, the CPU build; from PyPI alone on Linux x86-64, the CUDA build (GBs).
# TORCH overrides the requirement, index options included, e.g.
#   TORCH="torch==2.13.0 --index-url <PyTorch's CPU or CUDA index>" bash scripts/install.sh
# shellcheck disable=SC2086  # TORCH is a requirement and options, split on purpose
"${PIP[@]}" ${TORCH:-"torch==2.13.0"}
args=(-e "core[test]" -e cli)
for plugin in plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] && args+=(-e "${plugin%/}")
done
"${PIP[@]}" "${args[@]}"
# The trackers' libraries (the difftk-trackers plugin imports them only when a run logs to them),
# pinned, for their tests: TensorBoard, MLflow's client without its server, Weights & Biases.
"${PIP[@]}" "tensorboard==2.21.0" "mlflow-skinny==3.17.2" "wandb==0.31.0"
# The metrics' agreement tests compare with pytorch-fid and torch-fidelity, which import torchvision.
# torchvision 0.28.0 is the release paired with torch 2.13.0, but its PyPI wheel's compiled operators are
# CUDA builds: beside the CPU torch its import fails ("operator torchvision::nms does not exist"), and so
# would that of every package that imports torchvision when it is installed (diffusers does). So the three
# go, without their dependencies (never another torch), into a folder of their own that only those tests
# put on sys.path (plugins/metrics/tests/inception_peers.py); their own imports are in core's test extra.
"${PIP[@]}" --no-deps --upgrade --target "$VENV/peers" "torchvision==0.28.0" "pytorch-fid==0.3.0" "torch-fidelity==0.4.0"
echo "$wanted" > "$stamp"
echo "installed difftk into $VENV: $("$VENV/bin/difftk" --version)"
