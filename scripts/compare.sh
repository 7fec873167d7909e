#!/usr/bin/env bash
# Side-by-side performance comparison (issue 5): runs the PyTorch / ONNX
# Runtime anchors of shared/anchors and infomax's criterion benches in one go
# on this machine, then prints the ratio tables (scripts/compare.py).
#
#   scripts/compare.sh [ANCHORS_DIR]      # default: ../shared/anchors
#   ROUNDS=3 scripts/compare.sh           # alternate the two sides 3 times
#
# Every row of BENCHMARKS.md comes out of one invocation. Each round runs
# PyTorch's training steps (each under /usr/bin/time, for peak RSS), ONNX
# Runtime's inference, the FMA peak (the anchors' gemm-probe; GEMM_PROBE=path
# reuses a built binary), our training step's peak RSS (examples/train_steps
# under /usr/bin/time), then our training-step, GEMM-phase and inference
# benches. This machine's speed drifts by ±20% within minutes, so with
# ROUNDS > 1 the sides alternate and compare.py prints every round's ratio
# and their median.
#
# Optional tooling: needs the anchors' Python venv (shared/anchors/setup.sh,
# VENV=~/.venvs/dim-anchors by default) and GNU time (/usr/bin/time, Debian
# package `time`). CI does not run this.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="${1:-$ROOT/../shared/anchors}"
PY="${VENV:-$HOME/.venvs/dim-anchors}/bin/python"
ROUNDS="${ROUNDS:-1}"
if ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
    echo "ROUNDS must be a positive integer, got '$ROUNDS'" >&2
    exit 2
fi
if [ ! -x /usr/bin/time ]; then
    echo "/usr/bin/time (GNU time) is needed for the peak-RSS rows: apt-get install time" >&2
    exit 2
fi
WORK="$(mktemp -d /tmp/infomax-compare.XXXXXX)"
# The harness writes its artifacts beside itself: work on a copy.
cp -r "$SRC/." "$WORK/"
chmod -R u+w "$WORK" # the anchors may be read-only; gemm-probe builds in place
echo "anchors copy: $WORK"
"$PY" "$WORK/torch_dim.py" export --artifacts "$WORK/artifacts" --out "$WORK/export.jsonl" >/dev/null
PROBE="${GEMM_PROBE:-}"
if [ -z "$PROBE" ]; then
    (cd "$WORK/gemm-probe" && cargo build --release -q)
    PROBE="$WORK/gemm-probe/target/release/gemm-probe"
fi
cd "$ROOT"
# Build everything first, so no round times a compiler.
cargo build --release --example train_steps
cargo bench --bench train_step --bench kernels --bench infer --no-run
ROUND_DIRS=()
for r in $(seq 1 "$ROUNDS"); do
    D="$WORK/round$r"
    mkdir -p "$D"
    ROUND_DIRS+=("$D")
    for loss in jsd nce; do
        for t in 1 2; do
            /usr/bin/time -f "%M" -o "$D/rss.kb" \
                "$PY" "$WORK/torch_dim.py" train --variant conv32 --loss "$loss" --threads "$t" --steps 15 \
                --out "$D/anchors.jsonl"
            echo "{\"side\":\"pytorch\",\"loss\":\"$loss\",\"threads\":$t,\"max_rss_kb\":$(tail -1 "$D/rss.kb")}" >> "$D/rss.jsonl"
        done
    done
    "$PY" "$WORK/torch_dim.py" infer --runtime ort --threads 1 --artifacts "$WORK/artifacts" --out "$D/anchors.jsonl"
    "$PROBE" --only fma --threads 1 > "$D/fma.jsonl"
    for t in 1 2; do
        /usr/bin/time -f "%M" -o "$D/rss.kb" "$ROOT/target/release/examples/train_steps" conv32 jsd "$t" 15
        echo "{\"side\":\"infomax\",\"loss\":\"jsd\",\"threads\":$t,\"max_rss_kb\":$(tail -1 "$D/rss.kb")}" >> "$D/rss.jsonl"
    done
    cargo bench --bench train_step -- conv32
    cargo bench --bench kernels -- phases
    cargo bench --bench infer
    mkdir -p "$D/criterion"
    cp -r "$ROOT/target/criterion/train_step" "$ROOT/target/criterion/phases" "$ROOT/target/criterion/infer" "$D/criterion/"
done
"$PY" "$ROOT/scripts/compare.py" "${ROUND_DIRS[@]}"
