#!/usr/bin/env bash
# Installs gitea-hf-hook into ./.venv.
#   ./install.sh          install the package
#   ./install.sh --test   install it with its test extra and run the test suite
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
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
echo "installed: $(pwd)/.venv/bin/gitea-hf-hook"
