#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20) on TOOLCHAIN (default
# nightly), seeded from the committed corpus/<target>; new inputs go to a
# scratch folder, so the committed corpus stays small. Prints the executions
# per target; exits non-zero on the first crash (its input is saved under
# fuzz/artifacts/<target>/ with the reproduce command).
#   fuzz/run.sh [SECONDS] [TOOLCHAIN]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-20}
toolchain=${2:-nightly}
# Inference targets (issue 4) join this list: safetensors_reader load_encode
targets=(idx idx_gz cifar stl10 config)
max_len=32768 # one STL-10 image is 27 648 bytes

cargo "+$toolchain" fuzz build # all targets, once
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
summary=""
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    if ! cargo "+$toolchain" fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $t FAILED"
        exit 1
    fi
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -n 1)
    summary+=$(printf '%-8s %s\n' "$t" "$runs")$'\n'
done
echo "fuzz executions per target (${seconds}s each):"
printf '%s' "$summary"
