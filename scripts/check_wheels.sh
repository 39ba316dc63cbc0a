#!/usr/bin/env bash
# Build every distribution of the repository as a wheel, install the toolkit from those wheels
# (non-editable) into a fresh virtual environment, and run it there: what a user of the wheels gets.
# Usage: bash scripts/check_wheels.sh        (after scripts/install.sh; KEEP=DIR keeps the wheels there)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheels="${KEEP:-$work/wheels}"
# One pip run builds them all with the development environment's setuptools (>= 77), without an
# isolated build environment per wheel; DIFFTK_META_PINS=1 makes the difftk meta-distribution
# require its parts as name==version (setup.py), to be found among these wheels.
DIFFTK_META_PINS=1 .venv/bin/python -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  -w "$wheels" . ./core ./cli ./plugins/*/
expected=$(( $(ls -d plugins/*/ | wc -l) + 3 ))
built=$(ls "$wheels"/*.whl | wc -l)
if [ "$built" != "$expected" ]; then
  echo "error: $built wheels built in $wheels, expected $expected (the root, core, cli and every plugin)" >&2
  exit 1
fi
version=$(.venv/bin/python -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
python3 -m venv "$work/venv"
# --no-compile: byte-compiling all of torch at install costs more CPU than this check ever imports
PIP=("$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile)
# torch first, the build the development environment has (pip's cache or find-links serve the file
# it already downloaded), so that nothing pulls another build of it; then difftk from the wheels.
"${PIP[@]}" "torch==$(.venv/bin/python -c 'import torch; print(torch.__version__)')"
"${PIP[@]}" --find-links "$wheels" "$wheels/difftk-$version-py3-none-any.whl[metrics]"
cd "$work"  # away from the checkout, so that nothing is imported from its source folders
difftk=("$work/venv/bin/difftk" --strict-plugins)  # a plugin that fails to load is an error
"${difftk[@]}" plugins > plugins.txt
"${difftk[@]}" sample mnist-cfg -n 4 -o samples.png
"${difftk[@]}" evaluate mnist-cfg --metric accuracy -n 20
test -s samples.png
"$work/venv/bin/python" - <<'PY'
import importlib.metadata as md
from pathlib import Path

import difftk

where = Path(difftk.__file__).resolve()
assert "site-packages" in where.parts, f"difftk imported from {where}, not from the installed wheel"
dists = [d for d in md.distributions() if (d.metadata["Name"] or "").startswith("difftk")]
editable = [d.metadata["Name"] for d in dists if d.read_text("direct_url.json") and "editable" in d.read_text("direct_url.json")]
assert not editable, f"editable installs: {editable}"
print(f"{len(dists)} difftk distributions installed from wheels, difftk {difftk.__version__}")
PY
