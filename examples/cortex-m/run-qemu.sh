#!/usr/bin/env bash
# Build the Cortex-M4F example in release mode, print its flash / static RAM
# footprint, run it in QEMU (mps2-an386) and exit with QEMU's exit status:
#   0   = all self-checks passed (guest called debug::exit(EXIT_SUCCESS))
#   1   = a check failed or the guest panicked (semihosting exit with failure)
#   124 = timeout (guest hung), other = QEMU/build error.
# It also fails (exit 3) if the program does not fit a small part: flash (text + data) over
# MAX_FLASH bytes, or RAM (static .data + .bss + .uninit, plus the painted peak stack) over
# MAX_RAM bytes.
# Usage: ./run-qemu.sh [extra cargo build args, e.g. --features demo-fail]
# Env:   QEMU_TIMEOUT (seconds, default 300), MAX_FLASH (default 32768 = 32 KiB),
#        MAX_RAM (default 16384 = 16 KiB)
set -euo pipefail
cd "$(dirname "$0")"

TIMEOUT="${QEMU_TIMEOUT:-300}"
MAX_FLASH="${MAX_FLASH:-32768}"
MAX_RAM="${MAX_RAM:-16384}"
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
flash=
if [ -n "$SIZE" ]; then
    read -r text data bss _ < <("$SIZE" "$ELF" | awk 'NR==2')
    flash=$((text + data))
    echo "size ($SIZE): flash = $flash bytes (text $text + data $data)," \
         "static RAM = $((data + bss)) bytes (data $data + bss $bss)"
else
    echo "size: no rust-size / arm-none-eabi-size found, skipping footprint"
fi

echo "qemu: mps2-an386 (Cortex-M4F), timeout ${TIMEOUT}s"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
timeout "$TIMEOUT" qemu-system-arm \
    -machine mps2-an386 -cpu cortex-m4 \
    -semihosting-config enable=on,target=native \
    -nographic -monitor none -serial none \
    -kernel "$ELF" </dev/null | tee "$log"
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 124 ] && echo "qemu: TIMEOUT after ${TIMEOUT}s" >&2
echo "qemu exit status: $status"
[ "$status" -ne 0 ] && exit "$status"

# The footprint bounds (the program printed its static RAM and peak stack).
static=$(sed -n 's/^static RAM (.data+.bss+.uninit): \([0-9]*\) bytes.*/\1/p' "$log")
peak=$(sed -n 's/^peak stack used: \([0-9]*\) bytes.*/\1/p' "$log")
ram=$((static + peak))
echo "footprint: flash ${flash:-?} bytes (bound $MAX_FLASH), RAM $ram bytes = static $static + peak stack $peak (bound $MAX_RAM)"
if [ -z "$flash" ]; then
    echo "footprint: FAIL: no size tool, flash not measured" >&2
    exit 3
fi
if [ "$flash" -gt "$MAX_FLASH" ] || [ "$ram" -gt "$MAX_RAM" ]; then
    echo "footprint: FAIL: over the bound" >&2
    exit 3
fi
echo "footprint: PASS"
