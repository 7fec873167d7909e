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
targets=(idx idx_gz cifar stl10 config args memory_plan safetensors_reader load_encode)
max_len=32768 # one STL-10 image is 27 648 bytes

cargo "+$toolchain" fuzz build # all targets, once
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
summary=""
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    # The inference targets (issue 4) get at least 60 s each.
    secs=$seconds
    case $t in safetensors_reader | load_encode) secs=$((seconds > 60 ? seconds : 60)) ;; esac
    if ! cargo "+$toolchain" fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len="$max_len" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $t FAILED"
        exit 1
    fi
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -n 1)
    summary+=$(printf '%-18s %s\n' "$t" "$runs")$'\n'
done
echo "fuzz executions per target (${seconds}s each, inference targets at least 60s):"
printf '%s' "$summary"
