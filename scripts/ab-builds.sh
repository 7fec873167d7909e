# Sourced by same-bits.sh and perf-ab.sh: builds OLD_REV (in a git
# worktree under target/same-bits) and the working tree, in release.
#   ab_builds OLD_REV CARGO_BUILD_ARGS...
# Sets: root, work, old_tree; OLD's binaries land in $work/target-old.
ab_builds() {
    local old_rev=$1
    shift
    root=$PWD
    work=$root/target/same-bits
    old_tree=$work/old-$old_rev
    mkdir -p "$work"
    if [ ! -d "$old_tree" ]; then
        git worktree add --detach "$old_tree" "$old_rev" >/dev/null
    fi
    # The probe uses only APIs both builds share; OLD gets this copy of it.
    cp examples/ab_probe.rs "$old_tree/examples/ab_probe.rs"
    echo "building $old_rev and the working tree"
    (cd "$old_tree" && CARGO_TARGET_DIR=$work/target-old cargo build --release -q "$@")
    (cd "$root" && CARGO_TARGET_DIR=$root/target cargo build --release -q "$@")
}
