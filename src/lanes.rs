//! The only module that names `wide` types.
//!
//! A *lane* holds one value for each of [`LANES`] samples: the training kernels store a block
//! of samples feature-major, `[Lane; I]`, so that feature `k` of sixteen samples sits in one
//! register and every kernel above this module is a sequence of lane-wise FMAs, with no
//! shuffles and no horizontal sums inside the sample loop (ARCHITECTURE.md, "The path of a
//! training step").
//!
//! The lane is `f32x16` on every target. With AVX-512 it is one `zmm` register; with AVX2
//! `wide` splits it into two `f32x8` halves, which is the two-way unrolling the FMA pipes want
//! anyway; on a Cortex-M it is sixteen scalar floats. Keeping the block size the same on every
//! target makes the summation order of every reduction the same on every target, so results
//! differ between targets only by FMA contraction (see the crate docs, "Numerics").

use wide::f32x16;

/// Sixteen `f32` values, one per sample of a block.
pub(crate) type Lane = f32x16;

/// Samples in one block: the width of [`Lane`].
pub(crate) const LANES: usize = 16;

/// The SIMD instructions this build of `wide` uses for a [`Lane`], decided at compile time.
pub(crate) const SIMD_LEVEL: &str = if cfg!(all(target_feature = "avx512f", target_feature = "fma"))
{
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

/// Whether this build fuses multiply and add in one rounding.
pub(crate) const HAS_FMA: bool = cfg!(any(
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

/// Natural logarithm, lane-wise; the one `ln` every kernel uses.
///
/// `wide`'s range reduction and coefficients (Cephes' `logf`: `x = m * 2^e` with `m` in
/// `[sqrt(1/2), sqrt(2))`, `ln x = e ln 2 + ln m`, `ln m` a degree-8 polynomial in
/// `t = m - 1`), but the polynomial is evaluated by Horner's rule. Inputs that are not
/// positive, finite and normal go to `wide`'s own `ln` (NaN, `-inf`, `+inf` as usual).
// PERF: `wide` evaluates the polynomial with Estrin's scheme, which forms `t^8`. The loss
// takes `ln` of softmax sums, and once a model is confident the sum is `1 + tiny`, so
// `|t|` is near 2^-23 and `t^8` is subnormal: on Intel cores every FMA with a subnormal
// operand takes a microcode assist of about 100 cycles. In the Iris step that one
// instruction took a third of the time. Horner's rule never forms a power above `t^3`
// (at least 2^-72 for `t != 0`), so no operand is subnormal.
#[inline(always)]
pub(crate) fn ln(x1: Lane) -> Lane {
    use wide::bytemuck::cast;
    use wide::u32x16;
    #[allow(
        clippy::excessive_precision,
        reason = "Cephes' coefficients as published (and as `wide` spells them)"
    )]
    const P: [f32; 9] = [
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
    let ok = x1.simd_ge(splat(f32::MIN_POSITIVE)) & x1.simd_lt(splat(f32::INFINITY));
    if !ok.all() {
        return x1.ln();
    }
    let bits: u32x16 = cast(x1);
    // m in [0.5, 1) with the bits of x's mantissa; x = m * 2^(e + 1).
    let m: Lane = cast((bits & u32x16::splat(0x007F_FFFF)) | u32x16::splat(0x3F00_0000));
    let e_bits: u32x16 = (bits >> 23) | u32x16::splat(0x4B00_0000);
    let e = cast::<u32x16, Lane>(e_bits) - splat(8_388_608.0 + 127.0);
    let big = m.simd_gt(splat(core::f32::consts::FRAC_1_SQRT_2));
    let m = big.select(m, m + m);
    let fe = big.select(e + splat(1.0), e);
    let t = m - splat(1.0);
    let mut p = splat(P[8]);
    for &c in P[..8].iter().rev() {
        p = p.mul_add(t, splat(c));
    }
    let t2 = t * t;
    let r = t2 * t * p;
    let r = fe.mul_add(splat(-2.121_944_4E-4), r);
    let r = r + t2.mul_neg_add(splat(0.5), t);
    fe.mul_add(splat(0.693_359_4), r)
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

/// The sums of sixteen lanes at once: lane `m` of the result is [`sum`]`(x[m])`, bit for bit,
/// because every lane goes through the same pairwise tree.
// PERF: reducing one accumulator at a time costs about eight dependent shuffles and adds per
// weight; here each tree level combines two registers with two two-source shuffles and one
// add, 45 operations for sixteen weights (under three per weight), and the levels of
// different pairs are independent, so they overlap. The two levels within 128-bit chunks
// come first (`shufps`), then two at 128-bit granularity (`shuff32x4`): in the opposite
// order LLVM merged the levels into loads of pieces of spilled registers, which stall
// store forwarding (`perf annotate` of the Iris step).
#[inline(always)]
pub(crate) fn sum16(x: &[Lane; 16]) -> Lane {
    // Written out (no loops or `from_fn`): LLVM only recognizes the shuffles in straight-
    // line code; in a loop it gathered them element by element through the stack.
    #[inline(always)]
    fn level(a: Lane, b: Lane, lo: [u8; 16], hi: [u8; 16]) -> Lane {
        shuffle2(a, b, lo) + shuffle2(a, b, hi)
    }
    // Level 1: chunk `c` of pair (a, b) -> [a01, a23, b01, b23] of that chunk.
    let a0 = level(x[0], x[1], LO1, HI1);
    let a1 = level(x[2], x[3], LO1, HI1);
    let a2 = level(x[4], x[5], LO1, HI1);
    let a3 = level(x[6], x[7], LO1, HI1);
    let a4 = level(x[8], x[9], LO1, HI1);
    let a5 = level(x[10], x[11], LO1, HI1);
    let a6 = level(x[12], x[13], LO1, HI1);
    let a7 = level(x[14], x[15], LO1, HI1);
    // Level 2: chunk `c` holds the chunk sums of four accumulators, in order.
    let b0 = level(a0, a1, LO1, HI1);
    let b1 = level(a2, a3, LO1, HI1);
    let b2 = level(a4, a5, LO1, HI1);
    let b3 = level(a6, a7, LO1, HI1);
    // Level 3: chunks 0 + 1 and 2 + 3 of two such vectors.
    let c0 = level(b0, b1, LO4, HI4);
    let c1 = level(b2, b3, LO4, HI4);
    // Level 4: (c0 + c1) + (c2 + c3); chunk `q` holds accumulators `4q..4q + 4`.
    level(c0, c1, LO4, HI4)
}

/// The sums of four lanes at once: element `m` is [`sum`]`(x[m])`, bit for bit (the same
/// pairwise tree in every lane).
// PERF: the levels of [`sum16`] for four accumulators: 8 shuffles and 4 adds in all, where
// four separate [`sum`]s take about 15 operations each.
#[inline(always)]
pub(crate) fn sum4(x: &[Lane; 4]) -> [f32; 4] {
    let a = shuffle2(x[0], x[1], LO1) + shuffle2(x[0], x[1], HI1);
    let b = shuffle2(x[2], x[3], LO1) + shuffle2(x[2], x[3], HI1);
    let c = shuffle2(a, b, LO1) + shuffle2(a, b, HI1);
    let d = shuffle2(c, c, LO4) + shuffle2(c, c, HI4);
    let s = (shuffle2(d, d, LO4) + shuffle2(d, d, HI4)).to_array();
    [s[0], s[1], s[2], s[3]]
}

/// Four floats repeated four times (`v.len()` must be 4).
#[inline(always)]
pub(crate) fn repeat4(v: &[f32]) -> Lane {
    Lane::new(core::array::from_fn(|i| v[i % 4]))
}

/// Sums of groups of four: lane `4 v + c` of the result is the sum of lanes `4 c..4 c + 4`
/// of `p[v]`, added as `(a + b) + (c + d)`; for four vectors of four rows of four products,
/// the sixteen row sums in row order.
// PERF: two levels of the in-chunk pair shuffles of [`sum16`]'s last levels (single
// `shufps` each) and adds, then one permute: chunk `c` holds rows `4 v + c` after the
// levels, the permute transposes the 4 x 4 of (chunk, row).
#[inline(always)]
pub(crate) fn sum4x4(p: &[Lane; 4]) -> Lane {
    let q0 = shuffle2(p[0], p[1], LO1) + shuffle2(p[0], p[1], HI1);
    let q1 = shuffle2(p[2], p[3], LO1) + shuffle2(p[2], p[3], HI1);
    let r = shuffle2(q0, q1, LO1) + shuffle2(q0, q1, HI1);
    shuffle2(r, r, T4X4)
}

/// Lane `4 v + c` takes lane `4 c + v`: the 4 x 4 transpose of [`sum4x4`].
const T4X4: [u8; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/// Index tables of [`sum16`]: lane `i` of the result takes lane `t[i]` of `a ++ b`. `LO1`
/// and `HI1` pick the even and odd lanes of each 128-bit chunk of `a` and `b` (`shufps`),
/// `LO4` and `HI4` the even and odd 128-bit chunks of `a` and `b` (`shuff32x4`).
const LO4: [u8; 16] = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27];
const HI4: [u8; 16] = [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31];
const LO1: [u8; 16] = [0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30];
const HI1: [u8; 16] = [1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31];

/// Lane `i` is lane `t[i]` of the 32 lanes `a ++ b`; with a constant table LLVM emits one
/// two-source permute (or a 128-bit-granular shuffle).
#[inline(always)]
fn shuffle2(a: Lane, b: Lane, t: [u8; 16]) -> Lane {
    let (a, b) = (a.to_array(), b.to_array());
    #[inline(always)]
    fn at(a: &[f32; 16], b: &[f32; 16], j: u8) -> f32 {
        let j = usize::from(j);
        if j < 16 { a[j] } else { b[j - 16] }
    }
    Lane::new([
        at(&a, &b, t[0]),
        at(&a, &b, t[1]),
        at(&a, &b, t[2]),
        at(&a, &b, t[3]),
        at(&a, &b, t[4]),
        at(&a, &b, t[5]),
        at(&a, &b, t[6]),
        at(&a, &b, t[7]),
        at(&a, &b, t[8]),
        at(&a, &b, t[9]),
        at(&a, &b, t[10]),
        at(&a, &b, t[11]),
        at(&a, &b, t[12]),
        at(&a, &b, t[13]),
        at(&a, &b, t[14]),
        at(&a, &b, t[15]),
    ])
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

/// The floats of a run of lanes viewed as rows of `N`: the memory of `8 x N` lanes holds
/// `8 * 16` rows. `N` must not be zero.
#[inline(always)]
pub(crate) fn as_rows_mut<const N: usize>(v: &mut [[Lane; N]]) -> &mut [[f32; N]] {
    let flat: &mut [f32] = wide::bytemuck::cast_slice_mut(v.as_flattened_mut());
    flat.as_chunks_mut::<N>().0
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
    for (k, lane) in out.iter_mut().enumerate() {
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

/// `2^n` for integer-valued `n` in `[-126, 127]`, lane-wise, built from the exponent bits.
// Adding `2^23 + 127` puts `n + 127` in the low mantissa bits; the shift moves it to the
// exponent field.
#[inline(always)]
pub(crate) fn pow2i(n: Lane) -> Lane {
    use wide::bytemuck::cast;
    use wide::i32x16;
    let biased: i32x16 = cast(n + splat(8_388_608.0 + 127.0));
    cast(biased << 23)
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
