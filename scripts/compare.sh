#!/usr/bin/env bash
# Side-by-side performance comparison (issue 5): runs the PyTorch / ONNX
# Runtime anchors of shared/anchors and infomax's criterion benches in one go
# on this machine, then prints the ratio table (scripts/compare.py).
#
#   scripts/compare.sh [ANCHORS_DIR]      # default: ../shared/anchors
#
# Optional tooling: needs the anchors' Python venv (shared/anchors/setup.sh,
# VENV=~/.venvs/dim-anchors by default). CI does not run this.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="${1:-$ROOT/../shared/anchors}"
PY="${VENV:-$HOME/.venvs/dim-anchors}/bin/python"
WORK="$(mktemp -d /tmp/infomax-compare.XXXXXX)"
# The harness writes its artifacts beside itself: work on a copy.
cp -r "$SRC/." "$WORK/"
OUT="$WORK/anchors.jsonl"
echo "anchors copy: $WORK"
"$PY" "$WORK/torch_dim.py" export --artifacts "$WORK/artifacts" --out "$OUT" >/dev/null
for loss in jsd nce; do
    for t in 1 2; do
        "$PY" "$WORK/torch_dim.py" train --variant conv32 --loss "$loss" --threads "$t" --steps 15 --out "$OUT"
    done
done
"$PY" "$WORK/torch_dim.py" infer --runtime ort --threads 1 --artifacts "$WORK/artifacts" --out "$OUT"
cd "$ROOT"
cargo bench --bench train_step -- conv32
cargo bench --bench infer
"$PY" "$ROOT/scripts/compare.py" "$OUT" "$ROOT/target/criterion"
