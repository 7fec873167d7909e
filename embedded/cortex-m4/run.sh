#!/usr/bin/env bash
# Builds the Cortex-M4F firmware and runs it on QEMU (mps2-an386), under a
# timeout. Exits with the firmware's code: 0 only if its outputs match the
# host's. Prints the flash/RAM sizes of the ELF.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release
elf="${CARGO_TARGET_DIR:-target}/thumbv7em-none-eabihf/release/infomax-cortex-m4"

# Sizes: llvm-size from rustup's llvm-tools, else one on PATH.
size_tool="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-size"
[ -x "$size_tool" ] || size_tool=$(command -v llvm-size || command -v arm-none-eabi-size || true)
if [ -n "$size_tool" ]; then
    "$size_tool" -A "$elf" | grep -E '^(section|\.vector_table|\.text|\.rodata|\.data|\.bss|\.uninit|Total)'
    # Flash holds the vector table, code, read-only data and .data's initial values.
    "$size_tool" -A "$elf" | awk '/^\.(vector_table|text|rodata|data) / { f += $2 } END { print "flash bytes:", f }'
fi

timeout 60 qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
    -semihosting-config enable=on,target=native -kernel "$elf"
