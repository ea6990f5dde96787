#!/usr/bin/env bash
# Scoring-runtime benchmark (see bench.py for what it does and its options).
# Example: bench/runtime/run.sh --workers 2 --duration 10 --concurrency 1,8,64
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python3 "$here/bench.py" "$@"
