#!/usr/bin/env bash
# Build the Cortex-M0 inference example in release mode, print its flash / static RAM
# footprint, run it in QEMU (microbit: nRF51, Cortex-M0, no FPU) and exit with:
#   0   = every class equals the host build's and the footprint is within its bounds
#   1   = a class differs or the guest panicked (semihosting exit with failure)
#   3   = flash (text + data) over MAX_FLASH or RAM (static + peak stack) over MAX_RAM
#   124 = timeout (guest hung), other = QEMU/build error.
# Usage: ./run-qemu.sh [extra cargo build args]
# Env:   QEMU_TIMEOUT (seconds, default 60), MAX_FLASH (default 8192 = 8 KiB),
#        MAX_RAM (default 2048 = 2 KiB)
set -euo pipefail
cd "$(dirname "$0")"

TIMEOUT="${QEMU_TIMEOUT:-60}"
MAX_FLASH="${MAX_FLASH:-8192}"
MAX_RAM="${MAX_RAM:-2048}"
TARGET=thumbv6m-none-eabi
ELF="target/$TARGET/release/fusedprop-cortex-m0"

start=$(date +%s)
cargo build --release "$@"
echo "build: $(( $(date +%s) - start )) s"

if command -v rust-size >/dev/null 2>&1; then
    SIZE=rust-size
elif command -v arm-none-eabi-size >/dev/null 2>&1; then
    SIZE=arm-none-eabi-size
else
    echo "size: no rust-size / arm-none-eabi-size found; cannot check the flash bound" >&2
    exit 3
fi
read -r text data bss _ < <("$SIZE" "$ELF" | awk 'NR==2')
flash=$((text + data))
echo "size ($SIZE): flash = $flash bytes (text $text + data $data)," \
     "static RAM = $((data + bss)) bytes (data $data + bss $bss)"

echo "qemu: microbit (Cortex-M0), timeout ${TIMEOUT}s"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
timeout "$TIMEOUT" qemu-system-arm \
    -machine microbit \
    -semihosting-config enable=on,target=native \
    -nographic -monitor none -serial none \
    -kernel "$ELF" </dev/null | tee "$log"
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 124 ] && echo "qemu: TIMEOUT after ${TIMEOUT}s" >&2
echo "qemu exit status: $status"
[ "$status" -ne 0 ] && exit "$status"

static=$(sed -n 's/^static RAM (.data+.bss+.uninit): \([0-9]*\) bytes.*/\1/p' "$log")
peak=$(sed -n 's/^peak stack used: \([0-9]*\) bytes.*/\1/p' "$log")
ram=$((static + peak))
echo "footprint: flash $flash bytes (bound $MAX_FLASH), RAM $ram bytes = static $static + peak stack $peak (bound $MAX_RAM)"
if [ "$flash" -gt "$MAX_FLASH" ] || [ "$ram" -gt "$MAX_RAM" ]; then
    echo "footprint: FAIL: over the bound" >&2
    exit 3
fi
echo "footprint: PASS"
