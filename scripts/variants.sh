#!/usr/bin/env bash
# Issue 7's results table: DIM variants on the bundled Fashion-MNIST subset
# at equal wall time. All runs train at once, one thread each, so they share
# the machine alike; then each is evaluated (paper protocol, no baselines).
#
#   scripts/variants.sh [MINUTES] [OUT]      # default 6 minutes, runs/variants
#
# Prints one line per run (Y and conv taps, linear and MLP); the full
# reports are in OUT/<variant>/eval.json.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-6}
out=${2:-runs/variants}
cargo build --release -q
bin=target/release/infomax
declare -A flags=(
    [single]=""
    [occlusion]="--occlude 14"
    [multi]="--globals multi"
    [multi-alpha]="--globals multi --alpha 0.5"
    [folded]="--encoder fold28"
)
mkdir -p "$out"
for v in "${!flags[@]}"; do
    # shellcheck disable=SC2086
    "$bin" train -q --threads 1 --minutes "$minutes" --mi-units 512 ${flags[$v]} --no-baselines --no-export \
        --out "$out/$v" >"$out-$v.log" 2>&1 &
done
wait
for v in single occlusion multi multi-alpha folded; do
    echo "== $v (${flags[$v]:-defaults})"
    grep -E "^trained|\| DIM \| (y|conv) " "$out-$v.log" || tail -n 5 "$out-$v.log"
done
