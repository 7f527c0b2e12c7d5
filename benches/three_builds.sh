#!/usr/bin/env bash
# The README's build table: examples/perf_report's headline figures for
#   native     -C target-cpu=native      (what this repository builds with)
#   haswell    -C target-cpu=haswell     (AVX2 + FMA, tuned for the oldest AVX2 cores: what
#                                         users on CPUs without AVX-512 get)
#   x86-64-v3  -C target-cpu=x86-64-v3   (AVX2 + FMA: the portable choice for a fleet)
#   x86-64     -C target-cpu=x86-64      (SSE2: what a dependent crate gets with no flags)
# each built in its own --target-dir (target, target/haswell, target/x86-64-v3, target/baseline: the last is
# the one CI's baseline test step uses), then run back to back, interleaved, ROUNDS times
# (default 5; each run is `perf_report --headline --quick`), and printed as one markdown table
# of the per-build medians. Percentages divide by the FMA peak that the *native* build
# measured in the same rounds (a baseline build's own probe is SSE2 mul + add).
#
#   bash benches/three_builds.sh                          # build (first time: minutes), measure
#   ROUNDS=9 bash benches/three_builds.sh                 # more rounds on a busy machine
#   BUILDS="native haswell x86-64" ROUNDS=3 bash benches/three_builds.sh   # what CI prints
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
read -r -a names <<<"${BUILDS:-native haswell x86-64-v3 x86-64}"
[ "${names[0]}" = native ] || { echo "BUILDS must start with native (the peak)" >&2; exit 2; }
dir() {
    case $1 in
        native) echo target ;;
        x86-64) echo target/baseline ;;
        *) echo "target/$1" ;;
    esac
}

for b in "${names[@]}"; do
    RUSTFLAGS="-C target-cpu=$b" cargo build --quiet --release --example perf_report \
        --target-dir "$(dir "$b")"
done

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$rounds"); do
    for b in "${names[@]}"; do
        "$(dir "$b")/release/examples/perf_report" --headline --quick |
            awk -v b="$b" '
                /^SIMD level:/ {
                    level = $0; sub(/^SIMD level: `/, "", level); sub(/`.*/, "", level)
                    peak = $0; sub(/.*in this run: /, "", peak); sub(/ .*/, "", peak)
                    print b "\tSIMD_LEVEL\t" level; print b "\tpeak\t" peak
                }
                /^\| [^|]+ \| [0-9.]+ \| / {
                    split($0, f, " *\\| *"); print b "\t" f[2] "\t" f[3] "\t" f[4]
                }' >>"$out"
    done
done

model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
printf 'CPU: %s (%s logical CPUs); rustc %s; medians of %s round(s); load average %s\n\n' \
    "$model" "$(nproc)" "$(rustc --version | cut -d' ' -f2)" "$rounds" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
awk -F'\t' -v names="${names[*]}" '
    function median(key, b,    n, i, j, t, v) {
        n = split(vals[b, key], v, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
            t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
        }
        return v[int((n + 1) / 2)]
    }
    {
        if ($2 == "SIMD_LEVEL") { level[$1] = $3; next }
        if (!(($1, $2) in vals)) { vals[$1, $2] = $3 } else { vals[$1, $2] = vals[$1, $2] " " $3 }
        if ($2 != "peak" && !($2 in seen)) { seen[$2] = 1; order[++nk] = $2; unit[$2] = $4 }
    }
    END {
        nb = split(names, b, " ")
        peak = median("peak", b[1])
        printf "| workload |"
        for (i = 1; i <= nb; i++) printf " %s (`%s`) |", b[i], level[b[i]]
        printf "\n|---|"
        for (i = 1; i <= nb; i++) printf "---:|"
        printf "\n"
        for (k = 1; k <= nk; k++) {
            key = order[k]; u = unit[key]
            printf "| %s |", key
            for (i = 1; i <= nb; i++) {
                v = median(key, b[i]); base = median(key, b[1])
                if (u == "GFLOP/s") {
                    printf " %.1f GFLOP/s (%.0f%% of peak) |", v, 100 * v / peak
                } else if (i == 1) {
                    printf " %s %s |", v, u
                } else {
                    printf " %s %s (%.1fx) |", v, u, v / base
                }
            }
            printf "\n"
        }
        printf "| FMA probe of the build'"'"'s own lanes (see below) |"
        for (i = 1; i <= nb; i++) printf " %.1f GFLOP/s |", median("peak", b[i])
        printf "\n\nPercentages: of the native build'"'"'s FMA peak, %.1f GFLOP/s, measured in the same rounds; (N.Nx): time relative to native. The probe keeps each of its chains in one register of the build'"'"'s widest vector (zmm with AVX-512, ymm with AVX2, xmm otherwise); without FMA multiply and add are separate, so a baseline build'"'"'s figure is its own, not the machine'"'"'s.\n", peak
    }' "$out"
