#!/usr/bin/env bash
# The main job on the embedded default: installs/reuses .venv, then runs `gcpo train` (SmolLM2-135M-Instruct,
# gcpo preset, easy arithmetic, local Ray, local MLflow store). Extra arguments go to `gcpo`, e.g.
#   bash scripts/run.sh train preset=grpo trainer.steps=10     bash scripts/run.sh eval
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
if [ "$#" -eq 0 ]; then set -- train; fi
exec "$root/.venv/bin/gcpo" "$@"
