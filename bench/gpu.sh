#!/usr/bin/env bash
# The CUDA path checked and measured in one run (see bench/gpu.py and bench/README.md).
#   bench/gpu.sh            on a GPU machine: gpu tests, precisions, interrupt/resume, throughput
#   bench/gpu.sh --smoke    anywhere: the same steps at toy sizes on the CPU
# Exit status: 0 all checks pass (or no CUDA device), 1 a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then  # the project's venv when there is one, else the python on PATH
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON="$(command -v python || command -v python3)"; fi
fi
exec "$PYTHON" -m bench.gpu "$@"
