#!/usr/bin/env bash
# Everything CI runs: set up a virtual environment with the project and its test extras
# (torch pinned to the CPU build the rules were measured on), then lint, type-check and test.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test,torch]'

"$VENV/bin/ruff" check symmem tests
"$VENV/bin/mypy" symmem
SYMMEM_REQUIRE_TORCH=1 "$VENV/bin/python" -m pytest -q "$@"
