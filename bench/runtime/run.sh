#!/usr/bin/env bash
# Scoring-runtime benchmark (see bench.py for what it does and its options).
# Example: bench/runtime/run.sh --workers 2 --duration 10 --concurrency 1,8,64
#
# Runs in the project's virtualenv (MODELFORM_VENV, default .venv at the repo
# root), made or brought up to date as scripts/test does: modelform, uvicorn
# and scikit-learn come from there, never from whatever python3 is first on
# PATH. Relative paths in the arguments (--out) stay relative to where it is run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv=${MODELFORM_VENV:-.venv}
case $venv in /*) ;; *) venv="$root/$venv" ;; esac
(
  cd "$root"
  . scripts/lib/venv.sh
  ensure_venv "$venv" '.[dev]' >&2
)
exec "$venv/bin/python" "$here/bench.py" "$@"
