//! The lane on targets where `wide` has no SIMD backend (Cortex-M, RISC-V, 32-bit Arm, ...)
//! and in builds with `--cfg fusedprop_narrow` (which test this path on x86-64).
//!
//! There `wide::f32x16` is sixteen scalar operations written out one after another, in every
//! kernel and at every inlined call: most of a firmware's code. This [`Lane`] holds the same
//! sixteen `f32` and does each lane-wise operation as a loop over them, so an operation is a
//! few instructions of code however many times it is inlined. The values are those of
//! `wide`'s scalar fallback, lane for lane: multiply-add is `a * b + c` with two roundings (as
//! `wide` does without FMA), `max` is `f32::max`, `fast_max` is x86's `if a > b { a } else { b }` (the fallback's would lose a NaN in ReLU),
//! comparisons give all-ones / all-zeros masks, `exp` is `wide`'s algorithm one lane at a time
//! ([`exp1`], tested bit for bit against `f32x16::exp`), and the `ln` fallback and `sqrt` are
//! `wide`'s own, four lanes at a time through `f32x4`. The width stays sixteen, so every
//! reduction adds in the same order as with `f32x16`.

use core::ops::{
    Add, AddAssign, BitAnd, BitOr, Div, DivAssign, Mul, MulAssign, Neg, Not, Sub, SubAssign,
};
use wide::f32x4;

/// This build uses the narrow lane (no `f32x16`).
pub(crate) const NARROW: bool = true;

/// Sixteen `f32` values, one per sample of a block, operated on in loops.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Lane([f32; 16]);

/// All ones: the "true" of a mask.
const TRUE: f32 = f32::from_bits(u32::MAX);

// PERF: every operation below is one loop in a function of its own that takes its operands
// by reference (`#[inline(never)]` behind an `#[inline(always)]` method), so a kernel that
// uses it is a call with three pointers: no copy of the sixteen-float operands, no unrolled
// code, and the temporaries of one operation share a frame that is gone when it returns.
// Inlined loops (or by-value calls, which copy their 64-byte operands) were several
// kilobytes more flash and stack on a Cortex-M0.

#[inline(always)]
fn map(a: &Lane, f: impl Fn(f32) -> f32) -> Lane {
    let mut r = a.0;
    for v in &mut r {
        *v = f(*v);
    }
    Lane(r)
}

#[inline(always)]
fn zip(a: &Lane, b: &Lane, f: impl Fn(f32, f32) -> f32) -> Lane {
    let mut r = a.0;
    for (v, w) in r.iter_mut().zip(&b.0) {
        *v = f(*v, *w);
    }
    Lane(r)
}

#[inline(always)]
fn bits(a: &Lane, b: &Lane, f: impl Fn(u32, u32) -> u32) -> Lane {
    zip(a, b, |x, y| f32::from_bits(f(x.to_bits(), y.to_bits())))
}

#[inline(always)]
fn mask(a: &Lane, b: &Lane, f: impl Fn(f32, f32) -> bool) -> Lane {
    zip(a, b, |x, y| if f(x, y) { TRUE } else { 0.0 })
}

/// Four lanes at a time through `wide`'s `f32x4`.
#[inline(always)]
fn by4(a: &Lane, f: impl Fn(f32x4) -> f32x4) -> Lane {
    let mut r = a.0;
    for c in r.chunks_exact_mut(4) {
        let v = f(f32x4::new([c[0], c[1], c[2], c[3]])).to_array();
        c.copy_from_slice(&v);
    }
    Lane(r)
}

/// The out-of-line functions behind the methods and operators (PERF note above).
mod ool {
    use super::{Lane, bits, by4, exp1, map, mask, zip};
    use wide::f32x4;

    macro_rules! unary {
        ($($name:ident($x:ident) $body:expr;)*) => {$(
            #[inline(never)]
            pub(super) fn $name(a: &Lane) -> Lane {
                map(a, |$x| $body)
            }
        )*};
    }
    macro_rules! binary {
        ($($name:ident($x:ident, $y:ident) $body:expr;)*) => {$(
            #[inline(never)]
            pub(super) fn $name(a: &Lane, b: &Lane) -> Lane {
                zip(a, b, |$x, $y| $body)
            }
        )*};
    }
    unary! {
        neg(x) -x;
        abs(x) f32::from_bits(x.to_bits() & 0x7fff_ffff);
        not(x) f32::from_bits(!x.to_bits());
        exp(x) exp1(x);
    }
    binary! {
        add(x, y) x + y;
        sub(x, y) x - y;
        mul(x, y) x * y;
        div(x, y) x / y;
        max(x, y) x.max(y);
        fast_max(x, y) if x > y { x } else { y };
    }
    #[inline(never)]
    pub(super) fn bitand(a: &Lane, b: &Lane) -> Lane {
        bits(a, b, |x, y| x & y)
    }
    #[inline(never)]
    pub(super) fn bitor(a: &Lane, b: &Lane) -> Lane {
        bits(a, b, |x, y| x | y)
    }
    #[inline(never)]
    pub(super) fn is_nan(a: &Lane) -> Lane {
        mask(a, a, |x, _| x.is_nan())
    }
    #[inline(never)]
    pub(super) fn is_finite(a: &Lane) -> Lane {
        mask(a, a, |x, _| x.is_finite())
    }
    #[inline(never)]
    pub(super) fn gt(a: &Lane, b: &Lane) -> Lane {
        mask(a, b, |x, y| x > y)
    }
    #[inline(never)]
    pub(super) fn lt(a: &Lane, b: &Lane) -> Lane {
        mask(a, b, |x, y| x < y)
    }
    #[inline(never)]
    pub(super) fn eq(a: &Lane, b: &Lane) -> Lane {
        mask(a, b, |x, y| x == y)
    }
    #[inline(never)]
    pub(super) fn mul_add(a: &Lane, b: &Lane, c: &Lane) -> Lane {
        let mut r = a.0;
        for ((v, w), z) in r.iter_mut().zip(&b.0).zip(&c.0) {
            *v = *v * *w + *z;
        }
        Lane(r)
    }
    #[inline(never)]
    pub(super) fn mul_neg_add(a: &Lane, b: &Lane, c: &Lane) -> Lane {
        let mut r = a.0;
        for ((v, w), z) in r.iter_mut().zip(&b.0).zip(&c.0) {
            *v = *z - *v * *w;
        }
        Lane(r)
    }
    #[inline(never)]
    pub(super) fn select(m: &Lane, a: &Lane, b: &Lane) -> Lane {
        let mut r = a.0;
        for ((v, w), k) in r.iter_mut().zip(&b.0).zip(&m.0) {
            let k = k.to_bits();
            *v = f32::from_bits((v.to_bits() & k) | (w.to_bits() & !k));
        }
        Lane(r)
    }
    #[inline(never)]
    pub(super) fn sqrt(a: &Lane) -> Lane {
        by4(a, f32x4::sqrt)
    }
    #[inline(never)]
    pub(super) fn ln(a: &Lane) -> Lane {
        by4(a, f32x4::ln)
    }
}

impl Lane {
    /// All lanes zero.
    pub(crate) const ZERO: Self = Self([0.0; 16]);

    /// The lanes of `a`.
    #[inline(always)]
    pub(crate) const fn new(a: [f32; 16]) -> Self {
        Self(a)
    }

    /// All lanes `v`.
    #[inline(always)]
    pub(crate) const fn splat(v: f32) -> Self {
        Self([v; 16])
    }

    /// The lanes as an array.
    #[inline(always)]
    pub(crate) const fn to_array(self) -> [f32; 16] {
        self.0
    }

    /// The lanes as an array, in place.
    #[inline(always)]
    pub(crate) const fn as_array(&self) -> &[f32; 16] {
        &self.0
    }

    /// `self * b + c`, two roundings.
    #[inline(always)]
    pub(crate) fn mul_add(self, b: Self, c: Self) -> Self {
        ool::mul_add(&self, &b, &c)
    }

    /// `c - self * b`, two roundings.
    #[inline(always)]
    pub(crate) fn mul_neg_add(self, b: Self, c: Self) -> Self {
        ool::mul_neg_add(&self, &b, &c)
    }

    /// Mask of the NaN lanes.
    #[inline(always)]
    pub(crate) fn is_nan(self) -> Self {
        ool::is_nan(&self)
    }

    /// Mask of the finite lanes.
    #[inline(always)]
    pub(crate) fn is_finite(self) -> Self {
        ool::is_finite(&self)
    }

    /// Mask of `self > b`.
    #[inline(always)]
    pub(crate) fn simd_gt(self, b: Self) -> Self {
        ool::gt(&self, &b)
    }

    /// Mask of `self < b`.
    #[inline(always)]
    pub(crate) fn simd_lt(self, b: Self) -> Self {
        ool::lt(&self, &b)
    }

    /// Mask of `self == b`.
    #[inline(always)]
    pub(crate) fn simd_eq(self, b: Self) -> Self {
        ool::eq(&self, &b)
    }

    /// `if self { a } else { b }` bit by bit (`self` a mask).
    #[inline(always)]
    pub(crate) fn select(self, a: Self, b: Self) -> Self {
        ool::select(&self, &a, &b)
    }

    /// Whether the sign bit of every lane is set (every lane of a mask true).
    #[inline(always)]
    pub(crate) fn all(self) -> bool {
        self.0.iter().all(|v| v.is_sign_negative())
    }

    /// `f32::max` lane-wise.
    #[inline(always)]
    pub(crate) fn max(self, b: Self) -> Self {
        ool::max(&self, &b)
    }

    /// `if self > b { self } else { b }` lane-wise: the x86 `maxps` rule, which returns `b`
    /// when either is NaN (so that `lanes::relu` keeps a NaN; `wide`'s scalar fallback
    /// returns `self` there and would turn it into zero).
    #[inline(always)]
    pub(crate) fn fast_max(self, b: Self) -> Self {
        ool::fast_max(&self, &b)
    }

    /// `|self|` lane-wise (the sign bit cleared).
    #[inline(always)]
    pub(crate) fn abs(self) -> Self {
        ool::abs(&self)
    }

    /// `wide`'s square root.
    #[inline(always)]
    pub(crate) fn sqrt(self) -> Self {
        ool::sqrt(&self)
    }

    /// `wide`'s `exp`, lane by lane ([`exp1`]).
    #[inline(always)]
    pub(crate) fn exp(self) -> Self {
        ool::exp(&self)
    }

    /// `wide`'s `ln`.
    #[inline(always)]
    pub(crate) fn ln(self) -> Self {
        ool::ln(&self)
    }

    /// The 16 x 16 transpose: lane `l` of result `k` is lane `k` of `x[l]`.
    #[inline(always)]
    pub(crate) fn transpose(x: [Self; 16]) -> [Self; 16] {
        let mut t = [Self::ZERO; 16];
        for (l, v) in x.iter().enumerate() {
            for (k, tk) in t.iter_mut().enumerate() {
                tk.0[l] = v.0[k];
            }
        }
        t
    }
}

macro_rules! operator {
    ($($tr:ident $f:ident $atr:ident $af:ident),*) => {$(
        impl $tr for Lane {
            type Output = Self;
            #[inline(always)]
            fn $f(self, b: Self) -> Self {
                ool::$f(&self, &b)
            }
        }
        impl $atr for Lane {
            #[inline(always)]
            fn $af(&mut self, b: Self) {
                *self = ool::$f(self, &b);
            }
        }
    )*};
}
operator!(Add add AddAssign add_assign, Sub sub SubAssign sub_assign,
    Mul mul MulAssign mul_assign, Div div DivAssign div_assign);

impl Neg for Lane {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        ool::neg(&self)
    }
}

impl BitAnd for Lane {
    type Output = Self;
    #[inline(always)]
    fn bitand(self, b: Self) -> Self {
        ool::bitand(&self, &b)
    }
}

impl BitOr for Lane {
    type Output = Self;
    #[inline(always)]
    fn bitor(self, b: Self) -> Self {
        ool::bitor(&self, &b)
    }
}

impl Not for Lane {
    type Output = Self;
    #[inline(always)]
    fn not(self) -> Self {
        ool::not(&self)
    }
}

/// Natural logarithm: [`super::ln`]'s Horner evaluation lane by lane where every lane is
/// positive, finite and normal, `wide`'s `ln` for all sixteen otherwise (as with `f32x16`).
#[inline(always)]
pub(crate) fn ln(x1: Lane) -> Lane {
    let ok =
        x1.0.iter()
            .all(|&x| (f32::MIN_POSITIVE..f32::INFINITY).contains(&x));
    if !ok {
        return x1.ln();
    }
    map(&x1, ln_horner)
}

/// One lane of [`ln`]: the steps of the `f32x16` version, in the same order and roundings.
#[inline(never)]
fn ln_horner(x: f32) -> f32 {
    let bits = x.to_bits();
    let m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F00_0000);
    let e = f32::from_bits((bits >> 23) | 0x4B00_0000) - (8_388_608.0 + 127.0);
    let big = m > core::f32::consts::FRAC_1_SQRT_2;
    let m = if big { m } else { m + m };
    let fe = if big { e + 1.0 } else { e };
    let t = m - 1.0;
    let mut p = super::LN_P[8];
    for &c in super::LN_P[..8].iter().rev() {
        p = p * t + c;
    }
    let t2 = t * t;
    let r = t2 * t * p;
    let r = fe * -2.121_944_4E-4 + r;
    let r = r + (t - t2 * 0.5);
    fe * 0.693_359_4 + r
}

/// The sums of sixteen lanes at once: lane `m` is [`super::sum`]`(x[m])`.
#[inline(always)]
pub(crate) fn sum16(x: &[Lane; 16]) -> Lane {
    let mut r = [0.0; 16];
    for (s, v) in r.iter_mut().zip(x) {
        *s = super::sum(*v);
    }
    Lane(r)
}

/// The sums of four lanes at once: element `m` is [`super::sum`]`(x[m])`.
#[inline(always)]
pub(crate) fn sum4(x: &[Lane; 4]) -> [f32; 4] {
    let mut r = [0.0; 4];
    for (s, v) in r.iter_mut().zip(x) {
        *s = super::sum(*v);
    }
    r
}

/// Lane `4 v + c` is the sum of lanes `4 c..4 c + 4` of `p[v]`, as `(a + b) + (c + d)`.
#[inline(always)]
pub(crate) fn sum4x4(p: &[Lane; 4]) -> Lane {
    let mut r = [0.0; 16];
    for (i, s) in r.iter_mut().enumerate() {
        let a = &p[i / 4].0[4 * (i % 4)..4 * (i % 4) + 4];
        *s = (a[0] + a[1]) + (a[2] + a[3]);
    }
    Lane(r)
}

/// `2^n` for integer-valued `n` in `[-126, 127]`, from the exponent bits.
#[inline(always)]
pub(crate) fn pow2i(n: Lane) -> Lane {
    map(&(n + Lane::splat(8_388_608.0 + 127.0)), |b| {
        f32::from_bits(b.to_bits() << 23)
    })
}

/// The narrow lane has no fast path for [`super::load_rows`].
pub(crate) const FAST_TRANSPOSE: bool = false;

/// `out[k]` lane `s` = `rows[s][k]` for sixteen rows and columns `k0..k0 + 16` (the
/// simd16 lane's fast path, written plainly; `load_rows` does not call it here).
pub(crate) fn load_block_rows<const N: usize>(rows: &[[f32; N]], k0: usize, out: &mut [Lane]) {
    for (k, lane) in out[k0..k0 + 16].iter_mut().enumerate() {
        for (v, row) in lane.0.iter_mut().zip(rows) {
            *v = row[k0 + k];
        }
    }
}

/// `rows[s][k] = lane s of lanes[k]` for sixteen rows and columns `k0..k0 + 16` (the simd16
/// lane's fast path, written plainly; nothing calls it with the narrow lane).
pub(crate) fn store_block_rows<const N: usize>(
    lanes: &[Lane; N],
    k0: usize,
    rows: &mut [[f32; N]],
) {
    for (s, row) in rows.iter_mut().take(16).enumerate() {
        for (k, v) in row[k0..k0 + 16].iter_mut().enumerate() {
            *v = lanes[k0 + k].0[s];
        }
    }
}

/// Whether the memory of blocks can be viewed as rows ([`as_rows_mut`]): not with this
/// lane, which is not `Pod`; the weight gradients then use the lane kernels for every column.
pub(crate) const ROW_VIEW: bool = false;

/// No view of lanes as rows with this lane (callers check [`ROW_VIEW`] first): an empty
/// slice.
#[inline(always)]
pub(crate) fn as_rows_mut<const N: usize>(_: &mut [[Lane; N]]) -> &mut [[f32; N]] {
    &mut []
}

/// `wide`'s `exp` (1.7, `f32x4::exp`) on one lane, step for step with its scalar fallback's
/// roundings (products and sums rounded separately, no FMA): `r = round(x log2 e)`,
/// `x - r ln2` in two parts, the degree-5 polynomial in Estrin's order, times `2^r` split in
/// two factors so that `r` up to 128 does not overflow the exponent, then the special cases
/// in `wide`'s order. One lane at a time it is a fifth of `f32x4`'s four-lane code.
// PERF: flash; `exp` runs once per sample and class in the softmax, never in an inner loop.
#[inline(never)]
pub(crate) fn exp1(x: f32) -> f32 {
    const P: [f32; 6] = [
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
    let finite = x.is_finite();
    let nan = x.is_nan();
    if nan {
        return f32::from_bits(0x7FC0_0000 | 0x101);
    }
    if finite && x > 88.723 || !finite && !x.is_sign_negative() {
        return f32::INFINITY;
    }
    if !finite || x < -103.63 {
        return 0.0;
    }
    let r = round_ties_even(x * core::f32::consts::LOG2_E);
    let big = r > 127.0;
    let r_safe = if big { 127.0 } else { r };
    let scale = pow2n(if big { r - 127.0 } else { 0.0 });
    let x = x - r * 0.693_359_4;
    let x = x - r * -2.121_944_4E-4;
    let x2 = x * x;
    let x4 = x2 * x2;
    let z = (P[3] * x + P[2]) * x2 + ((P[5] * x + P[4]) * x4 + (P[1] * x + P[0]));
    let z = z * x2 + x;
    (z + 1.0) * scale * pow2n(r_safe)
}

/// `wide`'s `round_ties_even` on one lane: IEEE round to nearest, ties to even, the sign of
/// zero kept.
#[inline(always)]
fn round_ties_even(v: f32) -> f32 {
    let e = (v.to_bits() >> 23) & 0xff;
    if e >= 0x7f + 23 {
        v
    } else if e < 0x7f - 1 {
        v * 0.0
    } else {
        const TO_INT: f32 = 1.0 / f32::EPSILON;
        let x = v.abs();
        let y = x + TO_INT - TO_INT;
        if v.is_sign_negative() { -y } else { y }
    }
}

/// `wide`'s `vm_pow2n` on one lane: `2^n` for integer-valued `n <= 127`, subnormal below
/// `-126`, zero below `-149`.
#[inline(always)]
fn pow2n(n: f32) -> f32 {
    if n < -126.0 {
        if n >= -149.0 {
            f32::from_bits(1 << ((n + 149.0) as i32))
        } else {
            0.0
        }
    } else {
        f32::from_bits((n + (127.0 + 8_388_608.0)).to_bits() << 23)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// [`exp1`] is `wide::f32x16::exp` bit for bit, edges included (where `wide` does not
    /// fuse its multiply-adds).
    #[test]
    #[cfg(not(target_feature = "fma"))]
    fn exp1_is_wides_exp() {
        let mut rng = SplitMix64::new(11);
        let mut xs: [f32; 16] = [
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            88.72,
            88.73,
            -103.6,
            -103.7,
            -87.5,
            -100.0,
            1e-30,
            -1e-30,
            0.5,
            -0.5,
            f32::MAX,
        ];
        for round in 0..20_000 {
            let got = xs.map(exp1);
            let want = wide::f32x16::new(xs).exp().to_array();
            for ((g, w), x) in got.iter().zip(want).zip(xs) {
                assert!(
                    g.to_bits() == w.to_bits() || g.is_nan() && w.is_nan(),
                    "exp({x:e}) = {g:e}, wide {w:e}"
                );
            }
            for (i, v) in xs.iter_mut().enumerate() {
                *v = match (round + i) % 3 {
                    0 => (rng.next_f64() * 200.0 - 105.0) as f32,
                    1 => (rng.next_f64() * 2.0 - 1.0) as f32,
                    _ => f32::from_bits(rng.next_u64() as u32),
                };
            }
        }
    }
}
