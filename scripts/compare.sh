#!/usr/bin/env bash
# Side-by-side performance comparison (issue 5): runs the PyTorch / ONNX
# Runtime peer (scripts/torch/peer.py, on the reference model of
# scripts/torch/dim_ref.py) and infomax's criterion benches in one go on this
# machine, then prints the ratio tables (scripts/compare.py).
#
#   scripts/compare.sh                    # one round
#   ROUNDS=3 scripts/compare.sh           # alternate the two sides 3 times
#
# Every row of BENCHMARKS.md comes out of one invocation. It builds
# everything first (our benches and examples, the ONNX export), then each
# round runs PyTorch's training steps (each under /usr/bin/time, for peak
# RSS), ONNX Runtime's inference, the FMA peak (examples/fma_peak), our
# training step's peak RSS (examples/train_steps under /usr/bin/time), then
# our training-step, GEMM-phase and inference benches. This machine's speed
# drifts by ±20% within minutes, so with ROUNDS > 1 the sides alternate and
# compare.py prints every round's ratio and their median.
#
# Optional tooling: needs the Python venv of scripts/torch/setup.sh
# (VENV=~/.venvs/dim-anchors by default, the same variable as there) and GNU
# time (/usr/bin/time, Debian package `time`). CI does not run this. Results
# go to a fresh folder /tmp/infomax-compare.XXXXXX, printed first.
set -euo pipefail
if [ "$#" -gt 0 ]; then
    echo "usage: [ROUNDS=N] [VENV=dir] scripts/compare.sh (no arguments)" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${VENV:-$HOME/.venvs/dim-anchors}/bin/python"
PEER="$ROOT/scripts/torch/peer.py"
ROUNDS="${ROUNDS:-1}"
if ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
    echo "ROUNDS must be a positive integer, got '$ROUNDS'" >&2
    exit 2
fi
if [ ! -x "$PY" ]; then
    echo "no Python venv at ${PY%/bin/python}: run scripts/torch/setup.sh (or set VENV)" >&2
    exit 2
fi
if [ ! -x /usr/bin/time ]; then
    echo "/usr/bin/time (GNU time) is needed for the peak-RSS rows: apt-get install time" >&2
    exit 2
fi
WORK="$(mktemp -d /tmp/infomax-compare.XXXXXX)"
echo "results: $WORK"
cd "$ROOT"
# Build everything first, so no round times a compiler.
"$PY" "$PEER" export --arch conv32 --artifacts "$WORK/artifacts" --out "$WORK/export.jsonl"
cargo build --release --example train_steps --example fma_peak
cargo bench --bench train_step --bench kernels --bench infer --no-run
ROUND_DIRS=()
for r in $(seq 1 "$ROUNDS"); do
    D="$WORK/round$r"
    mkdir -p "$D"
    ROUND_DIRS+=("$D")
    for loss in jsd nce; do
        for t in 1 2; do
            /usr/bin/time -f "%M" -o "$D/rss.kb" \
                "$PY" "$PEER" train --arch conv32 --loss "$loss" --threads "$t" --steps 15 --out "$D/peer.jsonl"
            echo "{\"side\":\"pytorch\",\"loss\":\"$loss\",\"threads\":$t,\"max_rss_kb\":$(tail -1 "$D/rss.kb")}" >> "$D/rss.jsonl"
        done
    done
    "$PY" "$PEER" infer --arch conv32 --runtime ort --threads 1 --artifacts "$WORK/artifacts" --out "$D/peer.jsonl"
    "$ROOT/target/release/examples/fma_peak" --threads 1 > "$D/fma.jsonl"
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
