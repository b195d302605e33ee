#!/usr/bin/env bash
# Installs gitea-hf-hook into ./.venv.
#   ./install.sh          install the package (run `gitea-hf-hook install` again after upgrading, so the
#                         hooks name the right import folder)
#   ./install.sh --test   install it editable with its test extra, then run ruff, mypy --strict and the tests
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
if [ "${1:-}" = "--test" ]; then
  shift
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
  .venv/bin/ruff check --quiet gitea_hf_hook tests bench
  .venv/bin/mypy
  exec .venv/bin/python -m pytest "$@"
fi
# A regular install: the hooks then run from the virtualenv alone, whatever happens to this checkout.
.venv/bin/python -m pip install --quiet --disable-pip-version-check .
echo "installed: $(pwd)/.venv/bin/gitea-hf-hook"
