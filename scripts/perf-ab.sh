#!/usr/bin/env bash
# Is the working tree as fast as OLD (a commit)? Builds both in release,
# then in ROUNDS alternating rounds (OLD first in odd rounds, NEW first in
# even ones, so drift hits both alike) measures with each build:
#   - the training step: conv28 and conv32, JSD and infoNCE, 1 and 2
#     threads (`examples/train_steps`, median img/s over STEPS steps);
#   - inference: `infer::Plan::encode` of weights/dim-fmnist-conv28 at
#     batches 1 and 64, and of the edge encoder at batch 1 (`ab_probe time`).
# Prints every row's per-round new/old ratio and the median; a median
# under 0.97 is marked SLOWER. With CALLGRIND=1 it also counts instructions
# per training step under valgrind (conv28 JSD, 1 thread), where ±2% is the
# bar; that adds about 15 minutes (valgrind runs a step ~1000 times slower).
#
#   ROUNDS=3 STEPS=15 scripts/perf-ab.sh [OLD_REV]   # default bc56034
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev=${1:-bc56034}
rounds=${ROUNDS:-3}
steps=${STEPS:-15}
# shellcheck source=scripts/ab-builds.sh
. scripts/ab-builds.sh
ab_builds "$old_rev" --example train_steps --example ab_probe
declare -A bin=([old]=$work/target-old/release/examples [new]=$root/target/release/examples)

rows=()
for enc in conv28 conv32; do
    for est in jsd nce; do
        for t in 1 2; do rows+=("train $enc $est ${t}t"); done
    done
done
rows+=("infer conv28 b1" "infer conv28 b64" "infer edge b1")

measure() { # SIDE ROW -> img/s
    local b=${bin[$1]}
    set -- $2
    case $1 in
        train) "$b/train_steps" "$2" "$3" "${4%t}" "$steps" | sed -E 's/.*: ([0-9.]+) img\/s.*/\1/' ;;
        infer) "$b/ab_probe" time "weights/dim-fmnist-$2.safetensors" "${3#b}" 3 | cut -d' ' -f1 ;;
    esac
}

declare -A val
for r in $(seq 1 "$rounds"); do
    order="old new"
    [ $((r % 2)) -eq 0 ] && order="new old"
    for row in "${rows[@]}"; do
        for side in $order; do
            val[$side,$r,$row]=$(measure "$side" "$row")
        done
    done
    echo "round $r done"
done

printf '%-22s' "row (img/s new/old)"
for r in $(seq 1 "$rounds"); do printf ' %8s' "round $r"; done
printf ' %8s\n' median
slower=0
for row in "${rows[@]}"; do
    ratios=()
    for r in $(seq 1 "$rounds"); do
        ratios+=("$(awk -v n="${val[new,$r,$row]}" -v o="${val[old,$r,$row]}" 'BEGIN { printf "%.3f", n / o }')")
    done
    med=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    flag=""
    if awk -v m="$med" 'BEGIN { exit !(m < 0.97) }'; then
        flag=" SLOWER"
        slower=1
    fi
    printf '%-22s' "$row"
    printf ' %8s' "${ratios[@]}"
    printf ' %8s%s\n' "$med" "$flag"
done

if [ "${CALLGRIND:-0}" = 1 ]; then
    # Only the step's own code is counted (forward/backward and Adam, by
    # --toggle-collect), over the warm-up step and one timed step: the same
    # two steps in both builds, so setup and input synthesis drop out.
    echo "instructions per training step (callgrind, 1 thread, conv28 JSD)"
    declare -A per
    for side in old new; do
        out=$(mktemp)
        valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*forward_backward*' \
            --toggle-collect='*adam_step_par*' "${bin[$side]}/train_steps" conv28 jsd 1 1 >/dev/null 2>&1
        per[$side]=$(($(awk '/^summary:|^totals:/ { print $2; exit }' "$out") / 2))
        rm -f "$out"
    done
    awk -v o="${per[old]}" -v n="${per[new]}" 'BEGIN { printf "old %d new %d new/old %.4f\n", o, n, n / o }'
fi
exit $slower
