#!/usr/bin/env bash
# Build the Cortex-M4F example in release mode, print its flash / static RAM
# footprint, run it in QEMU (mps2-an386) and exit with QEMU's exit status:
#   0   = all self-checks passed (guest called debug::exit(EXIT_SUCCESS))
#   1   = a check failed or the guest panicked (semihosting exit with failure)
#   124 = timeout (guest hung), other = QEMU/build error.
# Usage: ./run-qemu.sh [extra cargo build args, e.g. --features demo-fail]
# Env:   QEMU_TIMEOUT (seconds, default 300)
set -euo pipefail
cd "$(dirname "$0")"

TIMEOUT="${QEMU_TIMEOUT:-300}"
TARGET=thumbv7em-none-eabihf
ELF="target/$TARGET/release/fusedprop-cortex-m"

start=$(date +%s)
cargo build --release "$@"
echo "build: $(( $(date +%s) - start )) s"

# Footprint. Berkeley format: text = .vector_table+.text+.rodata; data = .data
# (initial values live in flash, copied to RAM); bss = .bss+.uninit.
if command -v rust-size >/dev/null 2>&1; then
    SIZE=rust-size           # cargo install cargo-binutils; rustup component add llvm-tools
elif command -v arm-none-eabi-size >/dev/null 2>&1; then
    SIZE=arm-none-eabi-size  # apt-get install binutils-arm-none-eabi
else
    SIZE=
fi
if [ -n "$SIZE" ]; then
    read -r text data bss _ < <("$SIZE" "$ELF" | awk 'NR==2')
    echo "size ($SIZE): flash = $((text + data)) bytes (text $text + data $data)," \
         "static RAM = $((data + bss)) bytes (data $data + bss $bss)"
else
    echo "size: no rust-size / arm-none-eabi-size found, skipping footprint"
fi

echo "qemu: mps2-an386 (Cortex-M4F), timeout ${TIMEOUT}s"
set +e
timeout "$TIMEOUT" qemu-system-arm \
    -machine mps2-an386 -cpu cortex-m4 \
    -semihosting-config enable=on,target=native \
    -nographic -monitor none -serial none \
    -kernel "$ELF" </dev/null
status=$?
set -e
[ "$status" -eq 124 ] && echo "qemu: TIMEOUT after ${TIMEOUT}s" >&2
echo "qemu exit status: $status"
exit "$status"
