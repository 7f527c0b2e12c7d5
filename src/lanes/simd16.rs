//! The lane where `wide` has SIMD (x86 with SSE2, aarch64 with NEON, wasm32 with simd128):
//! `wide::f32x16`, and the helpers of [`super`] that depend on its representation (casts to
//! integer lanes, shuffles, the `Pod` view of lanes as rows).

use super::{LN_P, splat};
use wide::f32x16;

/// This build uses `f32x16` (not the narrow lane).
pub(crate) const NARROW: bool = false;

/// Whether the memory of blocks can be viewed as rows ([`as_rows_mut`]).
pub(crate) const ROW_VIEW: bool = true;

/// Sixteen `f32` values, one per sample of a block.
pub(crate) type Lane = f32x16;

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
    let mut p = splat(LN_P[8]);
    for &c in LN_P[..8].iter().rev() {
        p = p.mul_add(t, splat(c));
    }
    let t2 = t * t;
    let r = t2 * t * p;
    let r = fe.mul_add(splat(-2.121_944_4E-4), r);
    let r = r + t2.mul_neg_add(splat(0.5), t);
    fe.mul_add(splat(0.693_359_4), r)
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

/// The floats of a run of lanes viewed as rows of `N`: the memory of `8 x N` lanes holds
/// `8 * 16` rows. `N` must not be zero.
#[inline(always)]
pub(crate) fn as_rows_mut<const N: usize>(v: &mut [[Lane; N]]) -> &mut [[f32; N]] {
    let flat: &mut [f32] = wide::bytemuck::cast_slice_mut(v.as_flattened_mut());
    flat.as_chunks_mut::<N>().0
}

/// Whether [`load_block_rows`] is the fast path of [`super::load_rows`]: where `wide`'s
/// `f32x8::transpose` is AVX shuffles.
pub(crate) const FAST_TRANSPOSE: bool = cfg!(target_feature = "avx");

/// `out[k]` lane `s` = `rows[s][k]` for the sixteen rows of a full block and the columns
/// `k0..k0 + 16`: four 8 x 8 transposes in registers.
// PERF: the lane-by-lane loads of `load_rows` are one gather (`vgatherdps`) a column, and
// gathers were 4% of a 64-128-64-10 step from rows; this is 8 loads, 24 shuffles and 8
// stores per 8 x 8. `wide`'s `f32x8::transpose` (AVX `unpcklps`/`shufps`/`vperm2f128`)
// rather than this module's `shuffle2`: the array form of `shuffle2` on freshly loaded
// values is seen through by LLVM, which turned the transpose into scalar loads.
#[inline(always)]
pub(crate) fn load_block_rows<const N: usize>(rows: &[[f32; N]], k0: usize, out: &mut [Lane]) {
    use wide::f32x8;
    let flat: &mut [f32] = wide::bytemuck::cast_slice_mut(&mut out[k0..k0 + 16]);
    for c in 0..2 {
        for h in 0..2 {
            let m: [f32x8; 8] = core::array::from_fn(|s| {
                let row = &rows[8 * h + s][k0 + 8 * c..k0 + 8 * c + 8];
                let mut a = [0.0f32; 8];
                a.copy_from_slice(row);
                f32x8::new(a)
            });
            for (kk, v) in f32x8::transpose(m).iter().enumerate() {
                let at = 16 * (8 * c + kk) + 8 * h;
                flat[at..at + 8].copy_from_slice(v.as_array());
            }
        }
    }
}

/// The inverse of [`load_block_rows`]: `rows[s][k] = lane s of blocks[k]` for the sixteen
/// rows of a block and the columns `k0..k0 + 16`, by four 8 x 8 transposes in registers.
#[inline(always)]
pub(crate) fn store_block_rows<const N: usize>(
    lanes: &[Lane; N],
    k0: usize,
    rows: &mut [[f32; N]],
) {
    use wide::f32x8;
    let flat: &[f32] = wide::bytemuck::cast_slice(&lanes[k0..k0 + 16]);
    for c in 0..2 {
        for h in 0..2 {
            let m: [f32x8; 8] = core::array::from_fn(|kk| {
                let at = 16 * (8 * c + kk) + 8 * h;
                let mut a = [0.0f32; 8];
                a.copy_from_slice(&flat[at..at + 8]);
                f32x8::new(a)
            });
            for (s, v) in f32x8::transpose(m).iter().enumerate() {
                rows[8 * h + s][k0 + 8 * c..k0 + 8 * c + 8].copy_from_slice(v.as_array());
            }
        }
    }
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
