//! Activation functions on lanes: branch-free, vectorized over the sixteen samples of a
//! [`Lane`], for the generic network layer.
//!
//! Every function is a few polynomial FMAs, one exponential and one division, and selects
//! between a small-argument and a large-argument form lane by lane; none branches on lane
//! values. The exponential is [`exp_neg`], `e^x` for `x <= 0` only: every argument here is
//! `<= 0`, so it needs none of [`lanes::exp`]'s overflow and special-value handling and
//! costs about half as much. Each function is exact at the special values: `±0` keeps its
//! sign where the function is odd, `±inf` gives the limit, NaN gives NaN, and no finite
//! input gives NaN or an overflow.
//!
//! | function | formula | measured max error against `f64` |
//! |---|---|---|
//! | [`tanh`] | `x + x^3 P(x^2)` for `\|x\| < 0.625`, else `sign(x) (1 - q) / (1 + q)`, `q = e^(-2\|x\|)` | 1.5 ulp (relative `1.5e-7`); `tanh(x) == x` for tiny `x` |
//! | [`sigmoid`] | `1 / (1 + e)` for `x >= 0`, `e / (1 + e)` for `x < 0`, `e = e^(-\|x\|)` | 2.2 ulp (relative `1.8e-7`), subnormal results included |
//! | [`erf`] | `x P(x^2)` for `\|x\| <= 1`, else `sign(x) (1 - erfc(\|x\|))` (below) | absolute `1.4e-7`, relative `1.7e-7` (2.3 ulp) |
//! | [`gelu`] | `x Phi(x)`, `Phi` the standard normal distribution function (below) | relative `3.8e-7` where `\|gelu\| >= 1e-30`, absolute `2.2e-37` below |
//! | [`gelu_grad`] | `Phi(x) + x phi(x)`, `phi(x) = e^(-x^2/2) / sqrt(2 pi)` | relative `6.8e-7` where `\|gelu'\| >= 0.1`, absolute `6.8e-8` below (its zero at `x = -0.75`) |
//! | [`silu`] | `x sigmoid(x)` | relative `2.1e-7` where `\|silu\| >= 1e-30`, absolute `9.6e-38` below |
//! | [`silu_grad`] | `s (1 + x (1 - s))`, `s = sigmoid(x)` | relative `4e-7` where `\|silu'\| >= 0.1`, absolute `4e-8` below (its zero at `x = -1.28`) |
//!
//! The errors are the largest seen in the tests below over dense sweeps of `[-20, 20]`
//! (`[-90, 90]` for the sigmoid family), magnitudes `1e-30..1e30` of both signs and the
//! special values, in two builds on x86-64: AVX-512 with FMA and the SSE2 baseline without
//! FMA (the larger of the two). An ulp is the spacing of `f32` at the exact value.
//!
//! ## Cost
//! Throughput on one AVX-512 core (release build, sixteen lanes per call, independent
//! inputs), against `lanes::exp` at 0.58 ns per element: `tanh` 0.53, `sigmoid` 0.32,
//! `silu` 0.37, `silu_grad` 0.46, `gelu` 0.85, `gelu_grad` 0.84, `erf` 1.0 ns per element.
//! The normal family pays for a division and a degree-9 polynomial on top of its
//! exponential, the price of relative accuracy in the tail (below).
//!
//! ## The normal tail
//! `erf`, `gelu` and `gelu_grad` share one approximation of the upper tail of the standard
//! normal distribution, `Q(a) = 1 - Phi(a)` for `a >= 0`, as the density times a fitted Mills
//! ratio: `Q(a) = e^(-a^2/2) t P(t)` with `t = 1 / (1 + a/4)` and `P` of degree 9 (a
//! Chebyshev fit, relative error `2e-8`; the rounding errors of `t` are computed and added
//! through the derivative of `t P(t)`, which is up to 1.6). `a^2` is split exactly into
//! `h + l` (by one FMA, or by Veltkamp's split on targets without FMA) and `e^(-(h + l)/2)`
//! taken as
//! `e^(-h/2) (1 - l/2)`, so the rounding of `a^2` does not become a relative error of up to
//! `a^2/2 * 2^-24` (`5e-6` at `a = 13`) in the tail.
//! `Q` is accurate *relative* to itself, so `Phi(x) = Q(-x)` for `x < 0` and `gelu(x)` of a
//! negative `x` keep their relative accuracy deep into the tail (until `Phi` leaves the
//! normal `f32` range near `x = -13`). Then `erfc(y) = 2 Q(y sqrt 2)`, and `Phi(x) = 1 - Q(x)`
//! for `x >= 0`. `a` is clamped to `14.5`, where `e^(-a^2/2)` is already below the smallest
//! subnormal.
//!
//! ## Derivatives for the backward pass
//! - `tanh'(x) = 1 - y^2` from the output `y = tanh(x)`.
//! - `sigmoid'(x) = y (1 - y)` from the output `y = sigmoid(x)`.
//! - `silu'(x) = s (1 + x (1 - s))`, `s = sigmoid(x)`, from the input: [`silu_grad`] (it
//!   forms `1 - s` as `sigmoid(-x)` directly, without the cancellation of `1 - s` for large
//!   `x`).
//! - `gelu'(x) = Phi(x) + x phi(x)` from the input: [`gelu_grad`].
//!
//! `lanes` is the only module that names `wide` types; everything here is arithmetic on
//! [`Lane`] and the helpers of [`lanes`], so it builds on every target, without `std`.

use crate::lanes::{self, Lane, copysign, div, fma, fnma, gt, pow2i, select, splat, zero};

#[allow(
    dead_code,
    reason = "erf is documented and tested with the other activations; the layers use GELU's own form of the normal tail"
)]
/// `sqrt(2)`.
const SQRT_2: f32 = core::f32::consts::SQRT_2;
/// `1 / sqrt(2 pi)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `c[0] x^(n-1) + c[1] x^(n-2) + ... + c[n-1]` by Horner's rule (coefficients highest
/// degree first).
#[inline(always)]
fn horner(x: Lane, c: &[f32]) -> Lane {
    let mut p = splat(c[0]);
    for &k in &c[1..] {
        p = fma(p, x, splat(k));
    }
    p
}

/// `e^x` for `x <= 0` (or NaN), lane-wise: `lanes::exp` without its overflow, NaN and
/// infinity cases, which these arguments never need, and without branches.
///
/// `x = r ln 2 + f` with `r = round(x / ln 2)` and `|f| <= ln 2 / 2` (Cody and Waite's
/// two-part `ln 2`), `e^f = 1 + f + f^2 P(f)` with `lanes::exp`'s Taylor coefficients, times
/// `2^r`; measured within 1 ulp.
/// `2^r` is applied as `2^(r + 64)` and then `2^-64`, so results below the normal range are
/// rounded once, like any other (`e^-100 = 3.7e-44`); `x` is clamped to `-110`, where `e^x`
/// rounds to `0` (so `e^-inf = 0`). NaN compares false in the clamp and stays NaN.
#[inline(always)]
pub(crate) fn exp_neg(x: Lane) -> Lane {
    const P: [f32; 6] = [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        1.0 / 2.0,
    ];
    // 1.5 * 2^23: adding it rounds a float below 2^22 in magnitude to an integer.
    const ROUND: f32 = 12_582_912.0;
    // 2^-64, from its exponent bits.
    const TWO_M64: f32 = f32::from_bits(63 << 23);
    let lo = splat(-110.0);
    let x = select(gt(lo, x), lo, x);
    let r = fma(x, splat(core::f32::consts::LOG2_E), splat(ROUND)) - splat(ROUND);
    let f = fnma(r, splat(0.693_359_4), x);
    let f = fnma(r, splat(-2.121_944_4e-4), f);
    let p = fma(horner(f, &P), f * f, f) + splat(1.0);
    p * pow2i(r + splat(64.0)) * splat(TWO_M64)
}

/// `(tanh(x) - x) / x^3 = P(x^2)` on `|x| < 0.625` (Chebyshev fit in `x^2`, error `4e-8`).
const TANH_P: [f32; 5] = [
    -6.096_714e-3,
    2.099_718e-2,
    -5.385_090_8e-2,
    1.333_277e-1,
    -3.333_332_8e-1,
];

/// Below this `|x|`, [`tanh`] uses the polynomial.
const TANH_SMALL: f32 = 0.625;

/// Hyperbolic tangent, lane-wise.
///
/// `x + x^3 P(x^2)` for `|x| < 0.625` (so `tanh(x) == x` for tiny `x` and `tanh(-0) = -0`),
/// else `sign(x) (1 - q) / (1 + q)` with `q = e^(-2|x|)`, which never overflows:
/// `tanh(±inf) = ±1`, and `tanh(x) = ±1` exactly for large finite `x` (`tanh(±100)`).
///
/// Measured max error against `f64`: 1.5 ulp.
#[inline(always)]
pub(crate) fn tanh(x: Lane) -> Lane {
    let a = lanes::abs(x);
    // PERF: for |x| below about 2e-13, `a u` is subnormal (and `u` below 1e-19), which costs
    // a microcode assist per instruction on Intel cores; only such tiny inputs pay it.
    let u = a * a;
    let small = fma(a * u, horner(u, &TANH_P), a);
    let q = exp_neg(a * splat(-2.0));
    let one = splat(1.0);
    let large = div(one - q, one + q);
    // NaN compares false and takes the `large` form, which is NaN.
    copysign(select(gt(splat(TANH_SMALL), a), small, large), x)
}

/// `e^(-|x|)`, `1 + e^(-|x|)` and the mask of the negative lanes: the parts of the
/// logistic function shared by [`sigmoid`], [`silu`] and [`silu_grad`].
#[inline(always)]
fn logistic_parts(x: Lane) -> (Lane, Lane, Lane) {
    let e = exp_neg(-lanes::abs(x));
    (e, splat(1.0) + e, gt(zero(), x))
}

/// Logistic sigmoid `1 / (1 + e^-x)`, lane-wise.
///
/// `1 / (1 + e)` for `x >= 0` and `e / (1 + e)` for `x < 0`, with `e = e^(-|x|)` in
/// `(0, 1]`: one `exp` that never overflows, no cancellation, and accurate subnormal
/// results down to `x = -103` (`sigmoid(-100) = 3.72e-44`); `sigmoid(-inf) = 0`,
/// `sigmoid(inf) = 1`.
///
/// Measured max error against `f64`: 2.2 ulp.
#[inline(always)]
pub(crate) fn sigmoid(x: Lane) -> Lane {
    let (e, d, neg) = logistic_parts(x);
    div(select(neg, e, splat(1.0)), d)
}

/// Below this, `sigmoid(x)` is `0` in `f32` and `x` is clamped to it where it multiplies
/// a sigmoid (so that `-inf * 0` cannot make a NaN).
const SIGMOID_ZERO: f32 = -128.0;

/// SiLU (swish) `x sigmoid(x)`, lane-wise.
///
/// `silu(-inf) = -0`, `silu(inf) = inf`.
///
/// Measured max error against `f64`: `2.1e-7` relative (where `|silu(x)| >= 1e-30`).
#[inline(always)]
pub(crate) fn silu(x: Lane) -> Lane {
    let lo = splat(SIGMOID_ZERO);
    // NaN compares false and is kept.
    let xl = select(gt(lo, x), lo, x);
    xl * sigmoid(x)
}

/// Derivative of [`silu`] from its input: `s (1 + x (1 - s))` with `s = sigmoid(x)`.
///
/// `1 - s` is computed as `sigmoid(-x)` (`e / (1 + e)` for `x >= 0`), not by subtraction,
/// so `x (1 - s)` keeps its relative accuracy for large `x`. `silu_grad(-inf) = -0`,
/// `silu_grad(inf) = 1`.
///
/// Measured max error against `f64`: `4e-7` relative where `|silu'(x)| >= 0.1`,
/// `4e-8` absolute below.
#[inline(always)]
pub(crate) fn silu_grad(x: Lane) -> Lane {
    let (e, d, neg) = logistic_parts(x);
    let one = splat(1.0);
    let r = div(one, d);
    let s = select(neg, e, one) * r;
    let c = select(neg, one, e) * r;
    // Clamped to ±128, where `s (1 + x c)` is already 0 or 1; NaN compares false and is kept.
    let lo = splat(SIGMOID_ZERO);
    let hi = splat(-SIGMOID_ZERO);
    let xc = select(gt(lo, x), lo, select(gt(x, hi), hi, x));
    s * fma(xc, c, one)
}

/// `Q(a) / (e^(-a^2/2) t)` with `t = 1 / (1 + a/4)`, as a polynomial in `t` (Chebyshev fit
/// on `0 <= a <= 14.5`, relative error `2e-8`); see the module docs, "The normal tail".
const TAIL_P: [f32; 10] = [
    1.574_184_4e-2,
    -5.837_098e-2,
    4.158_928_6e-2,
    4.136_781e-2,
    2.400_358_7e-3,
    9.193_209_6e-2,
    7.027_288_5e-2,
    9.586_339e-2,
    9.945_357e-2,
    9.974_976e-2,
];

/// `a` is clamped to this in the normal tail: `e^(-a^2/2)` is below the smallest subnormal.
const TAIL_MAX: f32 = 14.5;

/// `e^(-s a^2)` for `s` = `1/2` or `1` and `|a| <= 14.5`, with the rounding error of `a^2`
/// compensated: `a^2 = h + l` exactly, `e^(-s (h + l)) ~ e^(-s h) (1 - s l)`.
#[inline(always)]
fn exp_neg_sq(a: Lane, s: f32) -> Lane {
    let h = a * a;
    let l = if lanes::HAS_FMA {
        fma(a, a, -h)
    } else {
        // Veltkamp's split, `a = hi + lo` with 12-bit halves, whose products are exact.
        let c = a * splat(4097.0);
        let hi = c - (c - a);
        let lo = a - hi;
        ((hi * hi - h) + splat(2.0) * hi * lo) + lo * lo
    };
    let e = exp_neg(h * splat(-s));
    fnma(e, l * splat(s), e)
}

/// The derivative of `t P(t)` ([`TAIL_P`]) in `t`, to 2% (Chebyshev fit of degree 3): it
/// only scales the rounding error of `t`, about `1e-7 t`.
const TAIL_DP: [f32; 4] = [2.529_139, -1.963_463, 1.026_327, 7.3e-4];

/// `t P(t)` with `t = 1 / (1 + a/4)`: `Q(a) / e^(-a^2/2)`, the upper normal tail over the
/// unscaled density, for `0 <= a <= 14.5`.
// The rounding of `t` (of `1 + a/4` and of the division, up to 1 ulp together) would cost
// up to 3 ulp of the result, since `t P(t)` changes by up to 1.6 times the change of `t`
// near `t = 1`; both roundings are computed (exactly with FMA) and their effect added
// through the derivative. That keeps `gelu'` accurate where it cancels, near `x = -0.75`.
#[inline(always)]
fn tail_ratio(a: Lane) -> Lane {
    let one = splat(1.0);
    let q = a * splat(0.25);
    let d = one + q;
    // `d - 1` is exact for `1 <= d <= 4.625`, so `dd` is the rounding error of `d`.
    let dd = q - (d - one);
    let t = div(one, d);
    // `1 / (d + dd) = t (1 + eps) (1 - t dd)` to first order, `eps = 1 - t d`.
    let eps = fnma(t, d, one);
    let t_lo = t * fnma(t, dd, eps);
    fma(horner(t, &TAIL_DP), t_lo, t * horner(t, &TAIL_P))
}

#[allow(
    dead_code,
    reason = "erf is documented and tested with the other activations; the layers use GELU's own form of the normal tail"
)]
/// `erf(x) / x = P(x^2)` on `|x| <= 1` (Chebyshev fit in `x^2`, error `1.2e-9`).
const ERF_P: [f32; 7] = [
    7.875_875e-5,
    -8.016_864_3e-4,
    5.189_087_2e-3,
    -2.685_421_1e-2,
    1.128_359_4e-1,
    -3.761_262_6e-1,
    core::f32::consts::FRAC_2_SQRT_PI,
];

#[allow(
    dead_code,
    reason = "erf is documented and tested with the other activations; the layers use GELU's own form of the normal tail"
)]
/// Error function, lane-wise.
///
/// `x P(x^2)` for `|x| <= 1` (odd: `erf(-0) = -0`, and `erf(x)` is `x` times `2/sqrt(pi)`
/// in `f32` for tiny `x`), else `sign(x) (1 - erfc(|x|))` with `erfc(y) = 2 Q(y sqrt 2)` from
/// the normal tail (module docs); `|x|` is clamped to `4` there, where `erf` is `±1` in
/// `f32`. `erf(±inf) = ±1`.
///
/// Measured max error against `f64`: `1.4e-7` absolute, `1.7e-7` relative.
#[inline(always)]
pub(crate) fn erf(x: Lane) -> Lane {
    let one = splat(1.0);
    let y = lanes::abs(x);
    let small = x * horner(x * x, &ERF_P);
    let four = splat(4.0);
    let yc = select(gt(y, four), four, y);
    let erfc = splat(2.0) * exp_neg_sq(yc, 1.0) * tail_ratio(yc * splat(SQRT_2));
    let large = copysign(one - erfc, x);
    // NaN compares false and takes the `small` form, which is NaN.
    select(gt(y, one), large, small)
}

/// The parts of `Phi(x)` (standard normal distribution function): `g = e^(-a^2/2)` and
/// `r = Q(a) / g` for `a = |x|` clamped to 14.5 (so `Phi(x)` is `g r` for `x < 0`, else
/// `1 - g r`), `a`, and the mask of the negative lanes.
#[inline(always)]
fn normal_parts(x: Lane) -> (Lane, Lane, Lane, Lane) {
    let a = lanes::abs(x);
    let max = splat(TAIL_MAX);
    // NaN compares false and is kept.
    let a = select(gt(a, max), max, a);
    (exp_neg_sq(a, 0.5), tail_ratio(a), a, gt(zero(), x))
}

/// GELU, exact form: `x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`, lane-wise (Keras's
/// `approximate=False`, PyTorch's default).
///
/// `Phi` from the normal tail (module docs), so `gelu(x)` keeps its relative accuracy for
/// negative `x` deep into the tail (tested down to `|gelu(x)| = 1e-30` at `x = -11.4`;
/// smaller results are within `2.2e-37`). `gelu(-inf) = -0`, `gelu(inf) = inf`.
///
/// Measured max error against `f64`: `3.8e-7` relative (where `|gelu(x)| >= 1e-30`).
#[inline(always)]
pub(crate) fn gelu(x: Lane) -> Lane {
    let (g, r, _, neg) = normal_parts(x);
    let q = g * r;
    let phi = select(neg, q, splat(1.0) - q);
    let lo = splat(-16.0);
    // `Phi` is 0 below -14.5; the clamp keeps `-inf * 0` from making a NaN (NaN is kept).
    select(gt(lo, x), lo, x) * phi
}

/// Derivative of [`gelu`] from its input: `Phi(x) + x phi(x)`, `phi` the standard normal
/// density, lane-wise.
///
/// `gelu_grad(-inf) = 0`, `gelu_grad(inf) = 1`.
///
/// Measured max error against `f64`: `6.8e-7` relative where `|gelu'(x)| >= 0.1`,
/// `6.8e-8` absolute below.
#[inline(always)]
pub(crate) fn gelu_grad(x: Lane) -> Lane {
    // With `Q = g r` and `x phi(x) = -a g / sqrt(2 pi)` for `x < 0`: `Q(a) - a phi(a)` for
    // `x < 0` and `1 - (Q(a) - a phi(a))` for `x >= 0`, with `g` factored out, so that the
    // error of `exp` stays relative to the difference where it cancels (the zero of
    // `gelu'` near `x = -0.75`).
    let (g, r, a, neg) = normal_parts(x);
    let m = g * fnma(a, splat(FRAC_1_SQRT_2PI), r);
    select(neg, m, splat(1.0) - m)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::lanes::LANES;
    use crate::rng::SplitMix64;

    /// `erf` in `f64` to about `1e-15`: the series `2/sqrt(pi) e^(-x^2) sum 2^n x^(2n+1) /
    /// (1 3 5 ... (2n+1))` (positive terms, no cancellation) for `|x| < 3`, the continued
    /// fraction of `erfc` beyond.
    fn erf64(x: f64) -> f64 {
        if x.is_nan() {
            return x;
        }
        let y = x.abs();
        let r = if y < 3.0 {
            erf_series(y)
        } else {
            1.0 - erfc_cf(y)
        };
        r.copysign(x)
    }

    /// `erfc(y)` for `y >= 0` in `f64`, relative to itself.
    fn erfc64(y: f64) -> f64 {
        if y < 2.0 {
            // erfc > 0.0046 here: the series' absolute 1e-16 is 2e-14 relative.
            1.0 - erf_series(y)
        } else {
            erfc_cf(y)
        }
    }

    fn erf_series(y: f64) -> f64 {
        let y2 = y * y;
        let mut term = y;
        let mut sum = y;
        let mut n = 0.0;
        while term > sum * 1e-18 {
            n += 1.0;
            term *= 2.0 * y2 / (2.0 * n + 1.0);
            sum += term;
        }
        2.0 / core::f64::consts::PI.sqrt() * (-y2).exp() * sum
    }

    /// `erfc(y) = e^(-y^2)/sqrt(pi) / (y + (1/2)/(y + 1/(y + (3/2)/(y + ...))))`,
    /// evaluated from 200 levels down (converged to `f64` for `y >= 2`).
    fn erfc_cf(y: f64) -> f64 {
        if y.is_infinite() {
            return 0.0;
        }
        let mut f = y;
        for k in (1..=200).rev() {
            f = y + f64::from(k) / 2.0 / f;
        }
        (-y * y).exp() / core::f64::consts::PI.sqrt() / f
    }

    /// Upper normal tail `Q(a) = erfc(a / sqrt 2) / 2`, relative to itself.
    fn q64(a: f64) -> f64 {
        erfc64(a / core::f64::consts::SQRT_2) / 2.0
    }

    fn ncdf64(x: f64) -> f64 {
        if x.is_nan() {
            x
        } else if x < 0.0 {
            q64(-x)
        } else {
            1.0 - q64(x)
        }
    }

    fn npdf64(x: f64) -> f64 {
        (-x * x / 2.0).exp() / (2.0 * core::f64::consts::PI).sqrt()
    }

    fn sigmoid64(x: f64) -> f64 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }

    fn tanh64(x: f64) -> f64 {
        x.tanh()
    }
    fn gelu64(x: f64) -> f64 {
        if x == f64::NEG_INFINITY {
            return 0.0;
        }
        x * ncdf64(x)
    }
    fn gelu_grad64(x: f64) -> f64 {
        if x.is_infinite() {
            return ncdf64(x);
        }
        ncdf64(x) + x * npdf64(x)
    }
    fn silu64(x: f64) -> f64 {
        if x == f64::NEG_INFINITY {
            return 0.0;
        }
        x * sigmoid64(x)
    }
    fn silu_grad64(x: f64) -> f64 {
        if x.is_infinite() {
            return sigmoid64(x);
        }
        let s = sigmoid64(x);
        s * (1.0 + x * sigmoid64(-x))
    }

    #[test]
    fn erf_reference_matches_known_values() {
        let known = [
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
        ];
        for (x, want) in known {
            assert!((erf64(x) - want).abs() < 1e-15, "erf({x}) = {}", erf64(x));
            assert!((erf64(-x) + want).abs() < 1e-15);
        }
        // erfc relative to itself (mpmath, 30 digits).
        let tails = [
            (0.5, 0.4795001221869535),
            (2.0, 0.004677734981047266),
            (3.0, 2.209_049_699_858_544e-5),
            (5.0, 1.537459794428035e-12),
            (10.0, 2.088487583762545e-45),
            (20.0, 5.395_865_611_607_901e-176),
        ];
        for (y, want) in tails {
            let got = erfc64(y);
            assert!(
                ((got - want) / want).abs() < 1e-13,
                "erfc({y}) = {got}, want {want}"
            );
        }
        // The two methods agree where they meet (to the series' absolute 1e-16, which is
        // 5e-11 relative to erfc(3)).
        for k in 0..100 {
            let y = 2.0 + f64::from(k) * 0.01;
            let (s, c) = (1.0 - erf_series(y), erfc_cf(y));
            assert!((s - c).abs() < 2e-15, "y = {y}: {s} vs {c}");
        }
    }

    /// Largest errors of one function over a set of inputs.
    #[derive(Debug, Default, Clone, Copy)]
    struct Errs {
        /// In units of the `f32` spacing at the exact value (`2^-149` for subnormal values).
        ulp: f64,
        /// Relative, over exact values of magnitude `1e-30` or more.
        rel: f64,
        /// Where the largest relative error was.
        rel_at: f32,
        /// Absolute, over exact values of magnitude below 1.
        abs: f64,
        /// Where the largest absolute error was.
        abs_at: f32,
        /// Absolute, over exact values of magnitude below `1e-30`.
        abs_tiny: f64,
        /// `err / max(|exact|, 0.1)`: relative error, or ten times the absolute error near 0.
        mixed: f64,
        /// Where the largest `mixed` was.
        mixed_at: f32,
    }

    fn ulp_of(w: f64) -> f64 {
        let w = w.abs();
        if w < f64::from(f32::MIN_POSITIVE) {
            return f64::from(f32::from_bits(1));
        }
        // 2^(floor(log2 w) - 23), from the exponent bits of `w`.
        let e = ((w.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        f64::powi(2.0, e - 23)
    }

    /// Runs `f` over `xs` sixteen at a time, checks that NaN and infinite exact values come
    /// out exactly and no other input gives NaN, and returns the largest errors against
    /// `reference`.
    fn measure(f: fn(Lane) -> Lane, reference: fn(f64) -> f64, xs: &[f32]) -> Errs {
        let mut e = Errs::default();
        for chunk in xs.chunks(LANES) {
            let got = lanes::to_array(f(lanes::load_partial(chunk)));
            for (&x, &g) in chunk.iter().zip(&got) {
                let want = reference(f64::from(x));
                if want.is_nan() {
                    assert!(g.is_nan(), "f({x}) = {g}, want NaN");
                    continue;
                }
                assert!(!g.is_nan(), "f({x}) = NaN, want {want}");
                if want.is_infinite() {
                    assert_eq!(f64::from(g), want, "f({x})");
                    continue;
                }
                let err = (f64::from(g) - want).abs();
                e.ulp = e.ulp.max(err / ulp_of(want));
                if err / want.abs().max(0.1) > e.mixed {
                    e.mixed = err / want.abs().max(0.1);
                    e.mixed_at = x;
                }
                if want.abs() < 1e-30 {
                    e.abs_tiny = e.abs_tiny.max(err);
                }
                if want.abs() >= 1e-30 && err / want.abs() > e.rel {
                    e.rel = err / want.abs();
                    e.rel_at = x;
                }
                if want.abs() < 1.0 && err > e.abs {
                    e.abs = err;
                    e.abs_at = x;
                }
            }
        }
        e
    }

    /// `[-r, r]` in steps of `2^-12`, then 20000 random `f32` of `[-r, r]`.
    fn sweep(r: f32) -> impl Iterator<Item = f32> {
        let n = (r * 4096.0) as i32;
        let mut rng = SplitMix64::new(11);
        (-n..=n)
            .map(|k| k as f32 / 4096.0)
            .chain((0..20_000).map(move |_| (rng.next_f64() * 2.0 - 1.0) as f32 * r))
    }

    /// `±10^(k/50)` for `10^-30..10^30`, `±0`, `±inf`, NaN, the extremes of `f32`.
    fn magnitudes() -> impl Iterator<Item = f32> {
        (-1500..=1500)
            .map(|k| 10f64.powf(f64::from(k) / 50.0) as f32)
            .chain([
                0.0,
                f32::INFINITY,
                f32::NAN,
                f32::MAX,
                f32::MIN_POSITIVE,
                f32::from_bits(1),
                f32::EPSILON,
            ])
            .flat_map(|v| [v, -v])
    }

    fn inputs(r: f32) -> std::vec::Vec<f32> {
        sweep(r).chain(magnitudes()).collect()
    }

    /// Lane-wise results of `f` at single points.
    fn at(f: fn(Lane) -> Lane, x: f32) -> f32 {
        lanes::to_array(f(splat(x)))[0]
    }

    #[test]
    fn exp_neg_is_within_1_ulp() {
        let xs: std::vec::Vec<f32> = sweep(110.0)
            .map(|x| -x.abs())
            .chain([
                0.0,
                -0.0,
                f32::NEG_INFINITY,
                f32::NAN,
                -1e-30,
                -1e30,
                -f32::MAX,
            ])
            .collect();
        let e = measure(exp_neg, |x| x.exp(), &xs);
        std::eprintln!("exp_neg {e:?}");
        assert!(e.ulp <= 1.0, "{e:?}");
        let tiny = f64::from(at(exp_neg, -100.0));
        assert!((tiny - (-100f64).exp()).abs() <= 0.7e-45, "{tiny}");
        assert_eq!(at(exp_neg, -0.0), 1.0);
    }

    #[test]
    fn tanh_is_within_2_ulp_and_exact_at_the_edges() {
        let e = measure(tanh, tanh64, &inputs(20.0));
        std::eprintln!("tanh {e:?}");
        assert!(e.ulp <= 2.0, "{e:?}");
        assert_eq!(at(tanh, 1e-10), 1e-10);
        assert_eq!(at(tanh, 100.0), 1.0);
        assert_eq!(at(tanh, -100.0), -1.0);
        assert_eq!(at(tanh, f32::INFINITY), 1.0);
        assert_eq!(at(tanh, f32::NEG_INFINITY), -1.0);
        assert!(at(tanh, -0.0).is_sign_negative() && at(tanh, -0.0) == 0.0);
        assert!(at(tanh, 0.0).is_sign_positive() && at(tanh, 0.0) == 0.0);
        assert!(at(tanh, f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_is_within_2_5_ulp_and_exact_at_the_edges() {
        let e = measure(sigmoid, sigmoid64, &inputs(90.0));
        std::eprintln!("sigmoid {e:?}");
        assert!(e.ulp <= 2.5, "{e:?}");
        let s = at(sigmoid, -100.0);
        assert!(
            (f64::from(s) - 3.720_075_976_020_836e-44).abs() <= 1.5e-45,
            "{s}"
        );
        assert_eq!(at(sigmoid, f32::NEG_INFINITY), 0.0);
        assert_eq!(at(sigmoid, f32::INFINITY), 1.0);
        assert_eq!(at(sigmoid, 0.0), 0.5);
        assert_eq!(at(sigmoid, -0.0), 0.5);
        assert!(at(sigmoid, f32::NAN).is_nan());
    }

    #[test]
    fn erf_is_within_1_5e_7() {
        let e = measure(erf, erf64, &inputs(20.0));
        std::eprintln!("erf {e:?}");
        assert!(e.abs <= 1.5e-7 && e.rel <= 2.5e-7, "{e:?}");
        assert_eq!(at(erf, f32::INFINITY), 1.0);
        assert_eq!(at(erf, f32::NEG_INFINITY), -1.0);
        assert!(at(erf, -0.0).is_sign_negative() && at(erf, -0.0) == 0.0);
        assert!(at(erf, f32::NAN).is_nan());
    }

    #[test]
    fn gelu_and_grad_are_within_1e_6_relative() {
        let xs = inputs(20.0);
        let e = measure(gelu, gelu64, &xs);
        std::eprintln!("gelu {e:?}");
        assert!(e.rel <= 6e-7, "{e:?}");
        let e = measure(gelu_grad, gelu_grad64, &xs);
        std::eprintln!("gelu_grad {e:?}");
        // Relative where |gelu'| >= 0.1, absolute 1e-7 near its zero at x = -0.75.
        assert!(e.mixed <= 1e-6, "{e:?}");
        assert_eq!(at(gelu, f32::NEG_INFINITY), 0.0);
        assert_eq!(at(gelu, f32::INFINITY), f32::INFINITY);
        assert_eq!(at(gelu_grad, f32::NEG_INFINITY), 0.0);
        assert_eq!(at(gelu_grad, f32::INFINITY), 1.0);
        assert!(at(gelu, f32::NAN).is_nan() && at(gelu_grad, f32::NAN).is_nan());
    }

    #[test]
    fn silu_and_grad_are_within_1e_6_relative() {
        let xs = inputs(90.0);
        let e = measure(silu, silu64, &xs);
        std::eprintln!("silu {e:?}");
        assert!(e.rel <= 5e-7, "{e:?}");
        let e = measure(silu_grad, silu_grad64, &xs);
        std::eprintln!("silu_grad {e:?}");
        // Relative where |silu'| >= 0.1, absolute 1e-7 near its zero at x = -1.28.
        assert!(e.mixed <= 8e-7, "{e:?}");
        assert_eq!(at(silu, f32::NEG_INFINITY), 0.0);
        assert_eq!(at(silu, f32::INFINITY), f32::INFINITY);
        assert_eq!(at(silu_grad, f32::NEG_INFINITY), 0.0);
        assert_eq!(at(silu_grad, f32::INFINITY), 1.0);
        assert!(at(silu, f32::NAN).is_nan() && at(silu_grad, f32::NAN).is_nan());
    }
}
