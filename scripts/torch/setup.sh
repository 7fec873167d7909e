#!/usr/bin/env bash
# Creates the Python venv for scripts/torch/ and tests/golden/make_*.py and
# installs scripts/torch/requirements.txt into it, then prints the versions.
#
#   scripts/torch/setup.sh                 # venv at $HOME/.venvs/dim-anchors
#   VENV=/some/dir scripts/torch/setup.sh  # elsewhere (scripts/compare.sh reads VENV too)
#   PYTHON=python3.11 scripts/torch/setup.sh
#
# The download is about 5.6 GB: PyPI's Linux torch is the CUDA build and needs
# the nvidia-* wheels to import at all, even on a machine without a GPU (see
# requirements.txt). Rerunning it on an existing venv only checks the pins.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$HOME/.venvs/dim-anchors}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r "$HERE/requirements.txt"
echo "venv: $VENV"
"$VENV/bin/python" - <<'PYEOF'
import platform

import numpy, onnx, onnxruntime, safetensors, threadpoolctl, torch

print("python", platform.python_version())
print("torch", torch.__version__, "| CPU capability", torch.backends.cpu.get_cpu_capability(),
      "| oneDNN", torch.backends.mkldnn.is_available())
print("numpy", numpy.__version__)
for i in threadpoolctl.threadpool_info():
    if i.get("user_api") == "blas":
        print("  numpy BLAS:", i.get("internal_api"), i.get("version"), i.get("architecture"))
print("onnx", onnx.__version__)
print("onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())
print("safetensors", safetensors.__version__)
print("threadpoolctl", threadpoolctl.__version__)
PYEOF
