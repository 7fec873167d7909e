#!/usr/bin/env bash
# Do two builds compute the same bits? Builds OLD (a commit, default the one
# before the GEMM-core and layer refactor) in a git worktree, and NEW (this
# working tree), then with each:
#   - trains 50 steps of every DIM variant on the bundled subset at 1 and 2
#     threads, and hashes the checkpoint's weights and its optimiser state;
#   - encodes fixed images with both files in weights/ through
#     `infer::Plan::encode` at batches 1, 3, 6 and 64, and hashes Y;
#   - trains the linear and MLP probes on fixed features and hashes them;
#   - resumes with NEW runs that OLD checkpointed, mid-epoch and at an epoch
#     boundary (old checkpoints load and continue as OLD would continue them).
# Prints every hash side by side and exits non-zero on any difference.
#
#   scripts/same-bits.sh [OLD_REV]        # default bc56034
#
# Takes about 12 minutes on 2 cores (two release builds, 72 short runs).
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev=${1:-bc56034}
# shellcheck source=scripts/ab-builds.sh
. scripts/ab-builds.sh
ab_builds "$old_rev" --bin infomax --example ab_probe
old_bin=$work/target-old/release
new_bin=$root/target/release

variants=(
    "jsd|"
    "nce|--estimator nce"
    "dv|--estimator dv"
    "global|--alpha 0.5"
    "global-only|--alpha 1 --beta 0"
    "prior|--gamma 0.1"
    "prior-global|--alpha 0.5 --gamma 0.1"
    "concat|--head concat"
    "concat-nce|--head concat --estimator nce"
    "multi|--globals multi"
    "multi-sampled|--globals multi --global-samples 1 --estimator nce"
    "occlusion|--occlude 14"
    "fold28|--encoder fold28"
    "edge|--encoder edge --estimator nce"
)

train() { # BIN_DIR OUT THREADS STEPS FLAGS...
    local bin=$1 out=$2 threads=$3 steps=$4
    shift 4
    # shellcheck disable=SC2068
    "$bin/infomax" train -q --threads "$threads" --steps "$steps" --mi-units 64 --no-eval --no-export \
        --out "$out" $@ >/dev/null
}
latest() { echo "$1/$(cat "$1/latest")"; }
hash_ckpt() { # BIN_DIR CKPT -> "weights optim"
    local w o
    w=$("$1/examples/ab_probe" tensors "$2" weights | sha256sum | cut -c1-16)
    o=$("$1/examples/ab_probe" tensors "$2" optim | sha256sum | cut -c1-16)
    echo "$w $o"
}

runs=$work/runs
rm -rf "$runs"
mkdir -p "$runs"
declare -A result
for side in old new; do
    bin=${side}_bin
    bin=${!bin}
    for v in "${variants[@]}"; do
        name=${v%%|*}
        flags=${v#*|}
        for t in 1 2; do
            out=$runs/$side-$name-$t
            # shellcheck disable=SC2086
            train "$bin" "$out" "$t" 50 $flags
            result[$side,$name,$t]=$(hash_ckpt "$new_bin" "$(latest "$out")")
        done
    done
    result[$side,probes,1]=$("$bin/examples/ab_probe" probes | sha256sum | cut -c1-16)
    for w in weights/*.safetensors; do
        for b in 1 3 6 64; do
            result[$side,$(basename "$w" .safetensors),b$b]=$("$bin/examples/ab_probe" encode "$w" "$b" | sha256sum | cut -c1-16)
        done
    done
done

# Resume: checkpoints OLD wrote load and continue in NEW exactly as in OLD.
# Mid-epoch (25 steps, resumed to 50) NEW must match OLD's own resume; at an
# epoch boundary (1 epoch, resumed to 2) it must also match OLD's
# uninterrupted 2 epochs.
for v in "jsd|" "prior|--gamma 0.1"; do
    name=${v%%|*}
    flags=${v#*|}
    out=$runs/resume-$name
    # shellcheck disable=SC2086
    train "$old_bin" "$out-old" 2 25 $flags
    cp -r "$out-old" "$out-new"
    for side in old new; do
        bin=${side}_bin
        # shellcheck disable=SC2086
        "${!bin}/infomax" train -q --threads 2 --steps 50 --mi-units 64 --no-eval --no-export --out "$out-$side" \
            --resume $flags >/dev/null
        result[$side,resume-mid-epoch-$name,2]=$(hash_ckpt "$new_bin" "$(latest "$out-$side")")
    done
    epochs() { # BIN OUT EPOCHS [--resume]
        local bin=$1 out=$2 n=$3
        shift 3
        # shellcheck disable=SC2086
        "$bin/infomax" train -q --threads 2 --epochs "$n" --mi-units 64 --no-eval --no-export --out "$out" "$@" \
            $flags >/dev/null
    }
    epochs "$old_bin" "$out-straight" 2
    epochs "$old_bin" "$out-epoch" 1
    epochs "$new_bin" "$out-epoch" 2 --resume
    result[old,resume-epoch-$name,2]=$(hash_ckpt "$new_bin" "$(latest "$out-straight")")
    result[new,resume-epoch-$name,2]=$(hash_ckpt "$new_bin" "$(latest "$out-epoch")")
done

status=0
printf '%-32s %-34s %-34s %s\n' "run" "old (weights optim | Y)" "new" "same"
for key in $(printf '%s\n' "${!result[@]}" | grep '^old,' | cut -d, -f2- | sort); do
    o=${result[old,$key]}
    n=${result[new,$key]}
    same=yes
    if [ "$o" != "$n" ]; then
        same=NO
        status=1
    fi
    printf '%-32s %-34s %-34s %s\n' "$key" "$o" "$n" "$same"
done
if [ $status -eq 0 ]; then
    echo "same bits: every hash equal (${#result[@]} entries over both builds)"
else
    echo "same bits: DIFFERENT (rows marked NO)"
fi
exit $status
