#!/usr/bin/env bash
# Create .venv and install pose-tuner with its pinned TVM, TVM-FFI and CPU torch.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/python -c "import tvm, torch, onnxruntime; print('pose-tuner ready: tvm', tvm.__version__, '| torch', torch.__version__)"
