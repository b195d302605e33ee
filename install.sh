#!/usr/bin/env bash
# gitea-hf-hook's installer.
#   sudo ./install.sh [--prefix DIR] [--config PATH] [--hook-user USER] [--worker-user USER] ...
#                         a production install under the prefix (default /opt/gitea-hf-hook); run it again to
#                         upgrade. ./install.sh --help lists every option; README.md, "Production install", explains.
#   sudo ./install.sh --uninstall [--purge]
#                         removes what the production install added, and nothing else
#   ./install.sh --test   installs ./.venv (editable, with the test extra), then runs ruff, mypy --strict and the tests
#   ./install.sh --demo   the demo, in a sandbox folder
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}

# ./.venv, for development and the demo; never what the production install runs from.
development_venv() {
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
}

case "${1:-}" in
  --test)
    shift
    development_venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
    .venv/bin/ruff check --quiet gitea_hf_hook tests bench
    .venv/bin/mypy
    exec .venv/bin/python -m pytest "$@"
    ;;
  --demo)
    shift
    if [ ! -x demo/run ]; then
      echo "install.sh: the demo is not in this checkout (demo/run is missing)" >&2
      exit 2
    fi
    development_venv
    # Editable, as --test installs it: the demo's commands and hooks then run this checkout's code, and a ./.venv
    # made by --test keeps working for the tests afterwards.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
    exec demo/run "$@"
    ;;
esac

if ! command -v "$python" >/dev/null; then
  echo "install.sh: error: no Python interpreter '$python' (install Python 3.11 or newer, or set PYTHON=/path/to/python3)" >&2
  exit 1
fi
case " $* " in
  *" -h "* | *" --help "*) ;;
  *)
    if [ "$(id -u)" != 0 ]; then
      echo "install.sh: error: a production install must run as root (sudo ./install.sh $*; for a development copy in ./.venv, run ./install.sh --test)" >&2
      exit 1
    fi
    ;;
esac
# The production install is Python, run from this checkout by the interpreter the virtual environment will be built
# from: -I and -S keep it to the standard library and away from PYTHON* variables, -B writes no bytecode here.
exec "$python" -I -S -B -c '
import sys
if sys.version_info < (3, 11):
    sys.exit("install.sh: error: %s is Python %d.%d; gitea-hf-hook needs 3.11 or newer (set PYTHON=/path/to/python3.11)"
             % (sys.executable, *sys.version_info[:2]))
sys.path.insert(0, sys.argv[1])
from gitea_hf_hook.admin.production.main import main
sys.exit(main(sys.argv[2:], sys.argv[1]))
' "$(pwd -P)" "$@"
