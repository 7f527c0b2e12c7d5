#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, default 30, one after the other.
#
#   fuzz/run.sh                    # every target, 30 s each (CI)
#   fuzz/run.sh 600                # every target, 10 minutes each
#   fuzz/run.sh 3600 train_step    # one target, an hour
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly toolchain (libFuzzer's
# instrumentation uses nightly-only flags); FUZZ_TOOLCHAIN picks another one than `nightly`.
# FUZZ_SANITIZER (default `none`) may be `address`: the crate is `#![forbid(unsafe_code)]`, so
# ASan mostly costs speed (about 2x); debug assertions and overflow checks stay on either way.
#
# The committed seeds in fuzz/corpus/<target>/ are only read. What a run discovers goes to
# fuzz/target/corpus/<target>/ (ignored by git, reused by the next run), crashes to
# fuzz/artifacts/<target>/, logs to fuzz/target/logs/<target>.log. Exits non-zero if any
# target failed; every target still runs.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-30}
shift || true
toolchain=${FUZZ_TOOLCHAIN:-nightly}
sanitizer=${FUZZ_SANITIZER:-none}
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

mkdir -p target/logs
cargo "+$toolchain" fuzz build -s "$sanitizer" >/dev/null
failed=()
for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t" "corpus/$t"
    log="target/logs/$t.log"
    echo "== $t: ${secs}s"
    if cargo "+$toolchain" fuzz run -s "$sanitizer" "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    else
        failed+=("$t")
        grep -E -A12 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -40 || true
        echo "!! $t failed: see fuzz/$log and fuzz/artifacts/$t/"
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${secs}s each without a failure"
