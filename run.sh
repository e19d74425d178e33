#!/usr/bin/env bash
# Set-up and entry point: `./run.sh pipeline` runs the default DVC pipeline, `./run.sh test` the test suite.
# Both create .venv (Python ≥ 3.11) and install the project into it first when needed.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

ensure_env() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  # Reinstall only when the dependency list changed.
  local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
  export PATH="$PWD/$VENV/bin:$PATH"
}

case "${1:-}" in
  pipeline)
    ensure_env
    shift
    dvc repro "$@"
    dvc metrics show
    ;;
  test)
    ensure_env
    shift
    python -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh pipeline [dvc repro args] | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
