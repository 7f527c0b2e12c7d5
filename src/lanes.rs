//! The only module that names `wide` types.
//!
//! A *lane* holds one value for each of [`LANES`] samples: the training kernels store a block
//! of samples feature-major, `[Lane; I]`, so that feature `k` of sixteen samples sits in one
//! register and every kernel above this module is a sequence of lane-wise FMAs, with no
//! shuffles and no horizontal sums inside the sample loop (ARCHITECTURE.md, "The path of a
//! training step").
//!
//! A lane is sixteen `f32` on every target. Where `wide` has SIMD (x86 with SSE2, aarch64 with
//! NEON, wasm32 with simd128) it is `wide::f32x16` (`lanes/simd16.rs`): with AVX-512 one `zmm`
//! register; with AVX2 two `f32x8` halves, which is the two-way unrolling the FMA pipes want
//! anyway. Elsewhere (Cortex-M, RISC-V, ...), and with `--cfg fusedprop_narrow` (which tests
//! it on x86-64), `f32x16` would be sixteen scalar operations written out at every use, most
//! of a firmware's code; there the lane is a struct of sixteen floats whose operations are
//! loops (`lanes/narrow.rs`), with the values of `wide`'s scalar fallback. Keeping the block
//! size the same on every target makes the summation order of every reduction within a tile
//! the same on every target, so results differ between targets only by FMA contraction and
//! by the tile size (`driver::TILE_BLOCKS`, smaller with the narrow lane;
//! see the crate docs, "Numerics").

// The narrow lane where `wide` has no SIMD backend (SIMD_LEVEL below says "scalar") or when
// asked for with `--cfg fusedprop_narrow`.
#[cfg_attr(
    any(
        fusedprop_narrow,
        not(any(
            target_feature = "sse2",
            all(target_arch = "aarch64", target_feature = "neon"),
            all(target_arch = "wasm32", target_feature = "simd128")
        ))
    ),
    path = "lanes/narrow.rs"
)]
#[cfg_attr(
    not(any(
        fusedprop_narrow,
        not(any(
            target_feature = "sse2",
            all(target_arch = "aarch64", target_feature = "neon"),
            all(target_arch = "wasm32", target_feature = "simd128")
        ))
    )),
    path = "lanes/simd16.rs"
)]
mod imp;

pub(crate) use imp::{
    FAST_TRANSPOSE, Lane, NARROW, ROW_VIEW, as_rows_mut, ln, load_block_rows, pow2i,
    store_block_rows, sum4, sum4x4, sum16,
};

/// Samples in one block: the width of [`Lane`].
pub(crate) const LANES: usize = 16;

/// How many lanes fit in the vector registers: 32 with AVX-512 (a lane is one of 32 `zmm`),
/// 8 with AVX2 (two of 16 `ymm`) or NEON (four of 32 `q`), 4 with SSE2 or simd128 (four of
/// 16 `xmm`). The narrow lane keeps the AVX-512 tiles (its code, sized for firmware, does
/// not depend on them: one-block tiles).
const REG_LANES: usize = if NARROW || cfg!(target_feature = "avx512f") {
    32
} else if cfg!(target_feature = "avx") || cfg!(target_arch = "aarch64") {
    8
} else {
    4
};

/// The register tiles of the training kernels (`dense.rs`): `TILE_R` outputs (inputs,
/// weight rows) by `TILE_B` blocks (or 16-column vectors), `TILE_R * TILE_B` lanes of
/// accumulators, half of the registers, so that the operands and the broadcast weights
/// fit beside them: 4 x 4 with AVX-512, 2 x 2 with AVX2 and NEON, 2 x 1 with SSE2.
// PERF: with the 4 x 4 tiles everywhere, an `x86-64-v3` build stored and reloaded its
// accumulators around every FMA (16 lanes are 32 `ymm`) and ran at half the native speed
// on Zen 4, whose FMA throughput is the same with AVX2. The tile shape does not change a
// result: each accumulator still adds its terms in the same order.
pub(crate) const TILE_R: usize = if REG_LANES >= 32 { 4 } else { 2 };
/// See [`TILE_R`].
pub(crate) const TILE_B: usize = if REG_LANES >= 32 {
    4
} else if REG_LANES >= 8 {
    2
} else {
    1
};
/// The register tile of the weight gradients from rows (`dense::param_grads_rows`):
/// `ROWS_R` weight rows by `ROWS_V` vectors of 16 columns; 8 x 2 with AVX-512 (a panel of
/// half the columns of 4 x 4 stays in L1 beside the streaming `dz`), else the training tile.
pub(crate) const ROWS_R: usize = if REG_LANES >= 32 { 8 } else { TILE_R };
/// See [`ROWS_R`].
pub(crate) const ROWS_V: usize = if REG_LANES >= 32 { 2 } else { TILE_B };
/// Accumulators of one register tile: [`TILE_R`] x [`TILE_B`].
pub(crate) const TILE_ACC: usize = TILE_R * TILE_B;

/// Fewer than 32 lanes fit in the registers (AVX2, NEON, SSE2, simd128) or the lane is the
/// narrow one: kernels that would hold sixteen lanes of accumulators at once (`predict_one`'s
/// transposing reductions) reduce one output at a time instead, with the same values.
pub(crate) const FEW_REGS: bool = NARROW || REG_LANES < 32;

/// Cephes' `logf` coefficients of [`ln`]'s polynomial, highest power last.
#[allow(
    clippy::excessive_precision,
    reason = "Cephes' coefficients as published (and as `wide` spells them)"
)]
pub(crate) const LN_P: [f32; 9] = [
    3.333_333_1E-1,
    -2.499_999_4E-1,
    2.000_071_4E-1,
    -1.666_805_8E-1,
    1.424_932_3E-1,
    -1.242_014_1E-1,
    1.167_699_9E-1,
    -1.151_461_1E-1,
    7.037_683_6E-2,
];

/// The SIMD instructions this build of `wide` uses for a [`Lane`], decided at compile time
/// (`"scalar"` with the narrow lane).
pub(crate) const SIMD_LEVEL: &str = if NARROW {
    "scalar"
} else if cfg!(all(target_feature = "avx512f", target_feature = "fma")) {
    "avx512+fma"
} else if cfg!(target_feature = "avx512f") {
    "avx512"
} else if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
    "avx2+fma"
} else if cfg!(target_feature = "avx") {
    "avx"
} else if cfg!(target_feature = "sse4.1") {
    "sse4.1"
} else if cfg!(target_feature = "sse2") {
    "sse2"
} else if cfg!(all(target_arch = "aarch64", target_feature = "neon")) {
    "neon"
} else if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
    "simd128"
} else {
    "scalar"
};

/// `a == b` in a `const` (`str`'s `==` is not `const`).
#[cfg(all(
    not(fusedprop_narrow),
    any(
        all(target_arch = "aarch64", target_feature = "neon"),
        all(target_arch = "wasm32", target_feature = "simd128")
    )
))]
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// Where `wide` has NEON or simd128 the lane is its SIMD `f32x16`, and `SIMD_LEVEL` says so.
// Checked when the crate compiles, so that CI's wasm32 build, which runs no tests, checks it
// too (`tests/simd_level.rs` checks every target the suite runs on, aarch64 under QEMU).
#[cfg(all(
    target_arch = "aarch64",
    target_feature = "neon",
    not(fusedprop_narrow)
))]
const _: () = assert!(!NARROW && str_eq(SIMD_LEVEL, "neon"));
#[cfg(all(
    target_arch = "wasm32",
    target_feature = "simd128",
    not(fusedprop_narrow)
))]
const _: () = assert!(!NARROW && str_eq(SIMD_LEVEL, "simd128"));

/// Whether this build fuses multiply and add in one rounding.
pub(crate) const HAS_FMA: bool = !NARROW
    && cfg!(any(
        target_feature = "fma",
        all(target_arch = "aarch64", target_feature = "neon")
    ));

// PERF: every helper below is a single instruction (or a handful) on the hot path of every
// kernel; `#[inline(always)]` keeps them from becoming calls in debug-assertion release builds
// and across the crate's const-generic instantiations.

/// All lanes zero.
#[inline(always)]
pub(crate) fn zero() -> Lane {
    Lane::ZERO
}

/// All lanes `v`.
#[inline(always)]
pub(crate) fn splat(v: f32) -> Lane {
    Lane::splat(v)
}

/// `a * b + c`, fused where the target has FMA.
#[inline(always)]
pub(crate) fn fma(a: Lane, b: Lane, c: Lane) -> Lane {
    a.mul_add(b, c)
}

/// `c - a * b`, fused where the target has FMA.
#[inline(always)]
pub(crate) fn fnma(a: Lane, b: Lane, c: Lane) -> Lane {
    a.mul_neg_add(b, c)
}

/// Lane-wise maximum. NaN in `a` is kept (used for the softmax shift, where a NaN logit must
/// poison the row rather than vanish).
#[inline(always)]
pub(crate) fn max_keep_nan(a: Lane, b: Lane) -> Lane {
    a.is_nan().select(a, a.max(b))
}

/// ReLU: `x` where `x > 0`, `+0` where `x <= 0`, NaN kept as NaN (crate docs, "NaN policy").
// PERF: two instructions instead of four (two compares, a mask-or and a blend): `fast_max`
// is the bare max instruction, which for `max(0, x)` returns its second operand `x` when `x`
// is NaN and when `x` is `-0`; adding `+0` then turns `-0` into `+0` and changes no other
// value (`x + 0 == x` for every non-zero `x`, NaN stays NaN).
#[inline(always)]
pub(crate) fn relu(x: Lane) -> Lane {
    zero().fast_max(x) + zero()
}

/// `dy` where `y > 0`, else `0`: ReLU's backward from its output (derivative 0 at the kink).
#[inline(always)]
pub(crate) fn relu_mask(y: Lane, dy: Lane) -> Lane {
    y.simd_gt(zero()).select(dy, zero())
}

/// `e^x`, lane-wise; the one `exp` every kernel uses.
#[inline(always)]
pub(crate) fn exp(x: Lane) -> Lane {
    x.exp()
}

/// `1 / x`, exactly rounded division (not the approximate reciprocal instruction).
#[inline(always)]
pub(crate) fn div(a: Lane, b: Lane) -> Lane {
    a / b
}

/// Whether every lane is finite.
#[inline(always)]
pub(crate) fn all_finite(x: Lane) -> bool {
    x.is_finite().all()
}

/// Lane-wise `|x|`.
#[inline(always)]
pub(crate) fn abs(x: Lane) -> Lane {
    x.abs()
}

/// Lane-wise maximum of two values known to be free of NaN (with a NaN the result is one
/// of the operands, unspecified which: callers detect NaN elsewhere).
// PERF: the bare max instruction; `wide`'s `max` adds a NaN test and a blend.
#[inline(always)]
pub(crate) fn max(a: Lane, b: Lane) -> Lane {
    a.fast_max(b)
}

/// The largest lane of `x` (NaN-free input).
#[inline(always)]
pub(crate) fn reduce_max(x: Lane) -> f32 {
    let a = x.to_array();
    let mut m = a[0];
    for v in &a[1..] {
        m = m.max(*v);
    }
    m
}

/// Sum of the sixteen lanes in one fixed order on every target: each 128-bit chunk as
/// `(a[4c] + a[4c + 1]) + (a[4c + 2] + a[4c + 3])`, then the chunks as
/// `(c0 + c1) + (c2 + c3)`.
#[inline(always)]
pub(crate) fn sum(x: Lane) -> f32 {
    let a = x.to_array();
    let c: [f32; 4] =
        core::array::from_fn(|k| (a[4 * k] + a[4 * k + 1]) + (a[4 * k + 2] + a[4 * k + 3]));
    (c[0] + c[1]) + (c[2] + c[3])
}

/// Four floats repeated four times (`v.len()` must be 4).
#[inline(always)]
pub(crate) fn repeat4(v: &[f32]) -> Lane {
    Lane::new(core::array::from_fn(|i| v[i % 4]))
}

/// Sixteen consecutive floats as a lane (`v.len()` must be 16).
#[inline(always)]
pub(crate) fn load16(v: &[f32]) -> Lane {
    let mut a = [0.0f32; LANES];
    a.copy_from_slice(v);
    Lane::new(a)
}

/// Stores a lane to sixteen consecutive floats (`v.len()` must be 16).
#[inline(always)]
pub(crate) fn store16(x: Lane, v: &mut [f32]) {
    v.copy_from_slice(&x.to_array());
}

/// Two runs of eight floats as one lane: `a` in lanes 0..8, `b` in lanes 8..16.
#[inline(always)]
pub(crate) fn load8x2(a: &[f32], b: &[f32]) -> Lane {
    let mut v = [0.0f32; LANES];
    v[..8].copy_from_slice(a);
    v[8..].copy_from_slice(b);
    Lane::new(v)
}

/// Stores lanes 0..8 to `a` and lanes 8..16 to `b`.
#[inline(always)]
pub(crate) fn store8x2(x: Lane, a: &mut [f32], b: &mut [f32]) {
    let v = x.to_array();
    a.copy_from_slice(&v[..8]);
    b.copy_from_slice(&v[8..]);
}

/// Up to sixteen floats as a lane, zero in the lanes past `v.len()`.
#[inline(always)]
pub(crate) fn load_partial(v: &[f32]) -> Lane {
    let mut a = [0.0f32; LANES];
    a[..v.len()].copy_from_slice(v);
    Lane::new(a)
}

/// Lane `l` of `x`, read in place: in the kernels a broadcast straight from memory.
#[inline(always)]
pub(crate) fn lane(x: &Lane, l: usize) -> f32 {
    x.as_array()[l]
}

/// Feature-major blocks back to rows for the first `k16` features (a multiple of 16):
/// `rows[16 b + l][k]` = lane `l` of `blocks[b][k]`, for the first `rows.len()` samples.
// PERF: sixteen features of a block at a time through one 16 x 16 transpose.
#[inline(always)]
pub(crate) fn blocks_to_rows<const N: usize>(
    blocks: &[[Lane; N]],
    k16: usize,
    rows: &mut [[f32; N]],
) {
    for (xb, rb) in blocks.iter().zip(rows.chunks_mut(LANES)) {
        let mut k = 0;
        // PERF: AVX 8 x 8 transposes (`wide`'s `f32x16::transpose` is element by element).
        while FAST_TRANSPOSE && rb.len() == LANES && k < k16 {
            store_block_rows(xb, k, rb);
            k += 16;
        }
        while k < k16 {
            let t = Lane::transpose(core::array::from_fn(|i| xb[k + i]));
            for (row, v) in rb.iter_mut().zip(t) {
                row[k..k + 16].copy_from_slice(v.as_array());
            }
            k += 16;
        }
    }
}

/// The lanes of `x` as an array.
#[inline(always)]
pub(crate) fn to_array(x: Lane) -> [f32; LANES] {
    x.to_array()
}

/// Whether every lane of a [`valid`] mask is valid (the block has no padding lane).
#[inline(always)]
pub(crate) fn all_valid(valid: Lane) -> bool {
    valid.simd_gt(zero()).all()
}

/// `x` in the valid lanes of a [`valid`] mask, `0` in the padding lanes, whatever `x` holds
/// there (NaN and infinity included, which `x * valid` would keep).
#[inline(always)]
pub(crate) fn zero_padding(x: Lane, valid: Lane) -> Lane {
    valid.simd_gt(zero()).select(x, zero())
}

/// Whether every lane of `y` (labels as floats, `-1` for padding) is below `classes`.
#[inline(always)]
pub(crate) fn labels_below(y: Lane, classes: usize) -> bool {
    y.simd_lt(splat(classes as f32)).all()
}

/// Lane `i` is `1.0` for `i < n` and `0.0` for the rest: the mask of the valid samples of a
/// partial block.
#[inline(always)]
pub(crate) fn valid(n: usize) -> Lane {
    let mut a = [0.0f32; LANES];
    for v in a.iter_mut().take(n) {
        *v = 1.0;
    }
    Lane::new(a)
}

/// Loads up to sixteen rows into feature-major lanes: `out[k]` lane `s` is `rows[s][k]`;
/// lanes past `rows.len()` are zero.
#[inline(always)]
pub(crate) fn load_rows<const N: usize>(rows: &[[f32; N]], out: &mut [Lane; N]) {
    debug_assert!(rows.len() <= LANES);
    let mut k0 = 0;
    // PERF: a full block, sixteen columns at a time, by transposes in registers where they
    // are AVX shuffles (`load_block_rows`); elsewhere, and for the last `N % 16` columns and
    // partial blocks, lane by lane (gathers or scalar moves).
    if FAST_TRANSPOSE && rows.len() == LANES {
        while k0 + 16 <= N {
            load_block_rows(rows, k0, out);
            k0 += 16;
        }
    }
    for (k, lane) in out.iter_mut().enumerate().skip(k0) {
        let mut a = [0.0f32; LANES];
        for (v, row) in a.iter_mut().zip(rows) {
            *v = row[k];
        }
        *lane = Lane::new(a);
    }
}

/// Stores feature-major lanes back to rows: `rows[s][k]` = lane `s` of `lanes[k]`, for the
/// first `rows.len()` samples.
#[inline(always)]
pub(crate) fn store_rows<const N: usize>(lanes: &[Lane; N], rows: &mut [[f32; N]]) {
    debug_assert!(rows.len() <= LANES);
    for (k, lane) in lanes.iter().enumerate() {
        let a = lane.to_array();
        for (row, v) in rows.iter_mut().zip(a) {
            row[k] = v;
        }
    }
}

/// The labels of a block as floats, `-1` in the lanes past `labels.len()`, so that
/// [`class_mask`] never matches a padded sample.
#[inline(always)]
pub(crate) fn labels(labels: &[u32]) -> Lane {
    let mut a = [-1.0f32; LANES];
    for (v, &l) in a.iter_mut().zip(labels) {
        // Labels are checked to be < O before any kernel runs, and O is far below 2^24, so
        // the conversion is exact.
        *v = l as f32;
    }
    Lane::new(a)
}

/// The mask (all ones where true) of the lanes whose label is `class`.
#[inline(always)]
pub(crate) fn class_mask(labels: Lane, class: usize) -> Lane {
    labels.simd_eq(splat(class as f32))
}

/// `if mask { a } else { b }`, lane-wise, for a mask from a comparison.
#[inline(always)]
pub(crate) fn select(mask: Lane, a: Lane, b: Lane) -> Lane {
    mask.select(a, b)
}

/// The mask of the lanes where `a > b`.
#[inline(always)]
pub(crate) fn gt(a: Lane, b: Lane) -> Lane {
    a.simd_gt(b)
}

/// Index of the first lane (below `n`) that is not finite.
#[inline]
pub(crate) fn first_non_finite(x: Lane, n: usize) -> Option<usize> {
    x.to_array().iter().take(n).position(|v| !v.is_finite())
}

/// Whether every lane is `> 0`.
#[inline(always)]
pub(crate) fn all_positive(x: Lane) -> bool {
    x.simd_gt(zero()).all()
}

/// Lane-wise square root, correctly rounded (IEEE `sqrt` on every target).
#[inline(always)]
pub(crate) fn sqrt(x: Lane) -> Lane {
    x.sqrt()
}

/// The mask of the lanes where `a > b`, as `1.0` / `0.0` values.
#[inline(always)]
pub(crate) fn gt_ones(a: Lane, b: Lane) -> Lane {
    a.simd_gt(b).select(splat(1.0), zero())
}

/// `|mag|` with the sign bit of `sign`, lane-wise (`-0` and NaN signs included).
#[inline(always)]
pub(crate) fn copysign(mag: Lane, sign: Lane) -> Lane {
    mag.abs() | (sign & Lane::splat(-0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn sum16_is_sixteen_sums_bit_for_bit() {
        let mut rng = SplitMix64::new(5);
        for _ in 0..100 {
            let x: [Lane; 16] = core::array::from_fn(|_| {
                Lane::new(core::array::from_fn(|_| {
                    rng.uniform(1.0) * (1u64 << (rng.next_u64() % 20)) as f32
                }))
            });
            let got = sum16(&x).to_array();
            for (m, xm) in x.iter().enumerate() {
                assert_eq!(got[m].to_bits(), sum(*xm).to_bits(), "lane {m}");
            }
        }
    }

    /// Full and partial blocks, widths below, at and past multiples of 16: every lane is
    /// the row's value, and lanes past the rows are +0.
    #[test]
    fn load_rows_is_the_transpose_of_the_rows() {
        fn check<const N: usize>() {
            let rows: [[f32; N]; 16] =
                core::array::from_fn(|s| core::array::from_fn(|k| (1000 * s + k) as f32 - 7.5));
            for n in [16, 15, 1, 0] {
                let mut out = [Lane::splat(f32::NAN); N];
                load_rows(&rows[..n], &mut out);
                for (k, lane) in out.iter().enumerate() {
                    for (s, &v) in lane.to_array().iter().enumerate() {
                        let want = if s < n { rows[s][k] } else { 0.0 };
                        assert_eq!(v.to_bits(), want.to_bits(), "N {N}, n {n}, [{s}][{k}]");
                    }
                }
            }
        }
        check::<1>();
        check::<15>();
        check::<16>();
        check::<17>();
        check::<33>();
        check::<64>();
    }

    /// Blocks back to rows: the first `k16` columns of every row, full and partial last
    /// blocks; the other columns untouched.
    #[test]
    fn blocks_to_rows_is_the_transpose_of_the_lanes() {
        fn check<const N: usize>() {
            let blocks: [[Lane; N]; 3] = core::array::from_fn(|b| {
                core::array::from_fn(|k| {
                    Lane::new(core::array::from_fn(|s| {
                        (1000 * (16 * b + s) + k) as f32 - 0.5
                    }))
                })
            });
            let k16 = N - N % 16;
            for n in [48usize, 47, 33, 16, 5] {
                let mut rows = [[f32::NAN; N]; 48];
                blocks_to_rows(&blocks[..n.div_ceil(16)], k16, &mut rows[..n]);
                for (r, row) in rows.iter().enumerate() {
                    for (k, &v) in row.iter().enumerate() {
                        if r < n && k < k16 {
                            let want = blocks[r / 16][k].to_array()[r % 16];
                            assert_eq!(v.to_bits(), want.to_bits(), "N {N}, n {n}, [{r}][{k}]");
                        } else {
                            assert!(v.is_nan(), "N {N}, n {n}, [{r}][{k}] written");
                        }
                    }
                }
            }
        }
        check::<15>();
        check::<16>();
        check::<17>();
        check::<40>();
        check::<64>();
    }

    #[test]
    fn ln_matches_f64_and_handles_edges() {
        let mut rng = SplitMix64::new(6);
        for _ in 0..2000 {
            let v: [f32; 16] = core::array::from_fn(|i| match i {
                0 => 1.0 + (rng.next_u64() % 64) as f32 * f32::EPSILON,
                1 => 1.0 - (rng.next_u64() % 64) as f32 * f32::EPSILON / 2.0,
                _ => (rng.next_f64() * 80.0 - 40.0).exp2() as f32,
            });
            let got = ln(Lane::new(v)).to_array();
            for (g, x) in got.iter().zip(v) {
                let want = f64::from(x).ln();
                let err = (f64::from(*g) - want).abs();
                assert!(
                    err <= 2.5e-7 * want.abs().max(1e-30) + 1e-12,
                    "ln({x}) = {g}, want {want}"
                );
            }
        }
        let edge = ln(Lane::new([
            0.0,
            -0.0,
            -1.0,
            f32::INFINITY,
            f32::NAN,
            1.0,
            2.0,
            1e-40,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
        ]))
        .to_array();
        assert_eq!(edge[0], f32::NEG_INFINITY);
        assert_eq!(edge[1], f32::NEG_INFINITY);
        assert!(edge[2].is_nan() && edge[4].is_nan());
        assert_eq!(edge[3], f32::INFINITY);
        assert_eq!(edge[5], 0.0);
        assert!((edge[6] - core::f32::consts::LN_2).abs() <= f32::EPSILON);
    }
}
