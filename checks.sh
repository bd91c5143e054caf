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
"$VENV/bin/python" -m pip install --quiet -e '.[test,torch,hf,plot,notebooks,docs]'

# pdflatex compiles the generated LaTeX (tests/test_latex.py). Where we may install it from the
# OS packages (CI runs as root) it is installed when missing, and the tests require it.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  command -v pdflatex >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      texlive-latex-base texlive-latex-recommended >/dev/null
  }
  export SYMMEM_REQUIRE_LATEX=1
fi

"$VENV/bin/ruff" check symmem tests notebooks
"$VENV/bin/mypy" symmem
SYMMEM_REQUIRE_TORCH=1 "$VENV/bin/python" -m pytest -q "$@"
# The documentation site, warnings as errors (mkdocs.yml sets strict).
"$VENV/bin/mkdocs" build --strict --quiet
