#!/usr/bin/env bash
# The test suite: installs/reuses .venv, then runs every test (fast pure tests and the integration tests that
# start real Ray, vLLM, DeepSpeed, MLflow and Optuna). Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -m "not integration"     (the fast pure tests only, seconds)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
# GCPO_CACHE holds the converted default model and the tiny test model (built once, reused).
# --durations: the 30 slowest tests are listed at the end (the CI budget is watched from them)
exec "$root/.venv/bin/python" -m pytest tests --timeout=1200 --durations=30 "$@"
