//! The f64 oracle: every kernel of the crate, and the whole [`Mlp`](crate::Mlp), as plain
//! loops in `f64`, written to be obviously right rather than fast.
//!
//! Hidden from the docs and outside semver: tests, benches and fuzz targets share it. It is
//! `no_std` and allocation-free like the rest of the crate (arrays and slices, outputs in
//! caller-owned buffers), so that fuzz targets and embedded tests can use it too. `core` has no
//! `f64::exp` or `f64::ln`, so this module brings its own ([`exp`], [`ln`]), accurate to a few
//! units in the last place (checked against `std` in `tests/reference.rs`).
//!
//! Inputs are generic over `T: Into<f64>`, so the same oracle takes the `f32` data a kernel
//! ran on (converted exactly) or the `f64` points of a finite-difference check.
//!
//! Conventions are the crate's: weights `[[_; I]; O]` (one row per output), ReLU's
//! derivative at 0 is 0, losses are means over the batch, and every gradient is the gradient
//! of the *mean* loss.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops read like the formulas they implement"
)]

use crate::Mlp;

/// `ln 2` split in a high part with trailing zero bits (so `k * LN2_HI` is exact for
/// `|k| < 2^11`) and the rest (Cody and Waite's range reduction).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// `2^k` for `-1022 <= k <= 1023`, built from its bits.
fn pow2(k: i32) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// `e^x` in `f64`, relative error below `1e-15` (a few ulps).
///
/// `x = k ln 2 + r` with `|r| <= ln 2 / 2`, `e^r` by its Taylor series (terms until they stop
/// changing the sum; at most 20 for `|r| <= 0.35`), scaled by `2^k` in two steps so that
/// results down to the subnormals are right.
#[must_use]
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.782_712_893_384 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    let k = (x / core::f64::consts::LN_2 + if x < 0.0 { -0.5 } else { 0.5 }) as i32;
    let r = (x - f64::from(k) * LN2_HI) - f64::from(k) * LN2_LO;
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 1..30 {
        term *= r / f64::from(n);
        let next = sum + term;
        if next == sum {
            break;
        }
        sum = next;
    }
    // Two factors keep each power of two inside the normal range.
    let k1 = k / 2;
    sum * pow2(k1) * pow2(k - k1)
}

/// Natural logarithm in `f64`, relative error below `1e-15` for positive normal `x`; `ln 0 =
/// -inf`, `ln` of a negative number or NaN is NaN, `ln inf = inf`.
///
/// `x = m 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, and `ln m = 2 atanh(s)` with
/// `s = (m - 1) / (m + 1)`, `|s| < 0.172`, summed as `2 (s + s^3/3 + s^5/5 + ...)`.
#[must_use]
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x == f64::INFINITY {
        return x;
    }
    // Subnormals: scale into the normal range first.
    let (x, extra) = if x < f64::MIN_POSITIVE {
        (x * pow2(54), -54)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52)); // in [1, 2)
    if m > core::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut n = 1.0;
    loop {
        let next = sum + term / n;
        if next == sum {
            break;
        }
        sum = next;
        term *= s2;
        n += 2.0;
    }
    let e = f64::from(e + extra);
    (e * LN2_HI + 2.0 * sum) + e * LN2_LO
}

/// `tanh x` in `f64`: `-expm1(-2|x|) / (1 + e^-2|x|)` with the sign of `x`, where
/// `expm1` is its Taylor series for small arguments (so `tanh x ~ x` keeps full relative
/// accuracy near 0).
#[must_use]
pub fn tanh(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    if a > 22.0 {
        return 1.0f64.copysign(x);
    }
    let e = exp(-2.0 * a);
    // 1 - e, accurately for small a: -expm1(-2a) by series.
    let em1 = if a < 0.25 {
        let u = -2.0 * a;
        let mut term = u;
        let mut sum = 0.0;
        for n in 2..40 {
            let next = sum + term;
            if next == sum {
                break;
            }
            sum = next;
            term *= u / f64::from(n);
        }
        -sum
    } else {
        1.0 - e
    };
    (em1 / (1.0 + e)).copysign(x)
}

/// The logistic sigmoid `1 / (1 + e^-x)` in `f64`.
#[must_use]
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + exp(-x))
    } else {
        let e = exp(x);
        e / (1.0 + e)
    }
}

/// The error function in `f64`, absolute error about `1e-16`: its Maclaurin series for
/// `|x| < 1.5` (terms below 2, so cancellation costs at most one digit), and `1 - erfc x` by
/// 120 terms of the continued fraction of `erfc` beyond (converged to `f64` from 1.5 on).
/// With the series up to 3 the cancellation cost `3e-14` near `x = 3`, which a finite
/// difference of a GELU network's loss divides by its step and reads as a `1e-10` error.
#[must_use]
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 1.5 {
        // erf x = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n + 1))
        let x2 = a * a;
        let mut term = a; // (-1)^n x^(2n+1) / n!
        let mut sum = 0.0;
        for n in 0..200 {
            let next = sum + term / f64::from(2 * n + 1);
            if next == sum && n > 2 {
                break;
            }
            sum = next;
            term *= -x2 / f64::from(n + 1);
        }
        sum * 2.0 / crate::rng::sqrt_f64(core::f64::consts::PI)
    } else if a > 6.0 {
        1.0
    } else {
        // erfc x = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
        let mut f = a;
        for k in (1..120).rev() {
            f = a + f64::from(k) / 2.0 / f;
        }
        1.0 - exp(-a * a) / crate::rng::sqrt_f64(core::f64::consts::PI) / f
    };
    r.copysign(x)
}

/// The standard normal distribution function `Φ(x) = (1 + erf(x / √2)) / 2`.
#[must_use]
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x / core::f64::consts::SQRT_2))
}

/// The standard normal density `φ(x) = e^(-x²/2) / √(2π)`.
#[must_use]
pub fn normal_pdf(x: f64) -> f64 {
    exp(-0.5 * x * x) / crate::rng::sqrt_f64(2.0 * core::f64::consts::PI)
}

/// `y = W x + b` for one sample.
#[must_use]
pub fn dense_forward<T: Copy + Into<f64>, const I: usize, const O: usize>(
    w: &[[T; I]; O],
    b: &[T; O],
    x: &[T; I],
) -> [f64; O] {
    let mut y = [0.0; O];
    for j in 0..O {
        let mut sum = b[j].into();
        for k in 0..I {
            sum += w[j][k].into() * x[k].into();
        }
        y[j] = sum;
    }
    y
}

/// Gradients of a dense layer over a batch: `dw[j][k] = sum_s dy[s][j] x[s][k]`,
/// `db[j] = sum_s dy[s][j]` (overwritten), and `dx[s][k] = sum_j w[j][k] dy[s][j]`.
///
/// # Panics
/// If `dy` or `dx` has another length than `x`.
pub fn dense_backward<T: Copy + Into<f64>, const I: usize, const O: usize>(
    w: &[[T; I]; O],
    x: &[[T; I]],
    dy: &[[T; O]],
    dw: &mut [[f64; I]; O],
    db: &mut [f64; O],
    dx: &mut [[f64; I]],
) {
    assert_eq!(x.len(), dy.len());
    assert_eq!(x.len(), dx.len());
    *dw = [[0.0; I]; O];
    *db = [0.0; O];
    for s in 0..x.len() {
        for j in 0..O {
            let d = dy[s][j].into();
            db[j] += d;
            for k in 0..I {
                dw[j][k] += d * x[s][k].into();
            }
        }
        for k in 0..I {
            let mut sum = 0.0;
            for j in 0..O {
                sum += w[j][k].into() * dy[s][j].into();
            }
            dx[s][k] = sum;
        }
    }
}

/// `max(x, 0)`.
#[must_use]
pub fn relu(x: f64) -> f64 {
    if x > 0.0 { x } else { 0.0 }
}

/// ReLU's backward from its output `y`: `dy` where `y > 0`, else 0 (derivative 0 at 0).
#[must_use]
pub fn relu_backward(y: f64, dy: f64) -> f64 {
    if y > 0.0 { dy } else { 0.0 }
}

/// The largest entry of a row.
fn row_max<T: Copy + Into<f64>, const N: usize>(z: &[T; N]) -> f64 {
    let mut m = f64::NEG_INFINITY;
    for &v in z {
        let v = v.into();
        if v > m {
            m = v;
        }
    }
    m
}

/// `ln sum_j e^{z_j}`, shifted by the row maximum so that it is finite for any finite row.
#[must_use]
pub fn log_sum_exp<T: Copy + Into<f64>, const N: usize>(z: &[T; N]) -> f64 {
    let m = row_max(z);
    let mut s = 0.0;
    for &v in z {
        s += exp(v.into() - m);
    }
    m + ln(s)
}

/// `p_i = e^{z_i} / sum_j e^{z_j}` for one row.
#[must_use]
pub fn softmax<T: Copy + Into<f64>, const N: usize>(z: &[T; N]) -> [f64; N] {
    let m = row_max(z);
    let mut p = [0.0; N];
    let mut s = 0.0;
    for i in 0..N {
        p[i] = exp(z[i].into() - m);
        s += p[i];
    }
    for v in &mut p {
        *v /= s;
    }
    p
}

/// Softmax's backward for one row: `dz_j = sum_i dp_i dp_i/dz_j` with the Jacobian
/// `dp_i/dz_j = p_i (delta_ij - p_j)` written out.
#[must_use]
pub fn softmax_backward<T: Copy + Into<f64>, const N: usize>(p: &[T; N], dp: &[T; N]) -> [f64; N] {
    let mut dz = [0.0; N];
    for j in 0..N {
        let mut sum = 0.0;
        for i in 0..N {
            let delta = if i == j { 1.0 } else { 0.0 };
            sum += dp[i].into() * p[i].into() * (delta - p[j].into());
        }
        dz[j] = sum;
    }
    dz
}

/// `l_i = z_i - ln sum_j e^{z_j}` for one row.
#[must_use]
pub fn log_softmax<T: Copy + Into<f64>, const N: usize>(z: &[T; N]) -> [f64; N] {
    let lse = log_sum_exp(z);
    let mut l = [0.0; N];
    for i in 0..N {
        l[i] = z[i].into() - lse;
    }
    l
}

/// Log-softmax's backward for one row from its output `l`: the Jacobian
/// `dl_i/dz_j = delta_ij - p_j` with `p_j = e^{l_j}`, written out.
#[must_use]
pub fn log_softmax_backward<T: Copy + Into<f64>, const N: usize>(
    l: &[T; N],
    dl: &[T; N],
) -> [f64; N] {
    let mut dz = [0.0; N];
    for j in 0..N {
        let p_j = exp(l[j].into());
        let mut sum = 0.0;
        for i in 0..N {
            let delta = if i == j { 1.0 } else { 0.0 };
            sum += dl[i].into() * (delta - p_j);
        }
        dz[j] = sum;
    }
    dz
}

/// Mean sparse categorical cross-entropy: `(1/N) sum_s (ln sum_j e^{z_sj} - z_{s,y_s})`.
///
/// # Panics
/// If the lengths differ, the batch is empty or a label is out of range.
#[must_use]
pub fn cross_entropy<T: Copy + Into<f64>, const O: usize>(
    logits: &[[T; O]],
    labels: &[u32],
) -> f64 {
    assert_eq!(logits.len(), labels.len());
    assert!(!logits.is_empty());
    let mut total = 0.0;
    for (z, &y) in logits.iter().zip(labels) {
        total += log_sum_exp(z) - z[y as usize].into();
    }
    total / logits.len() as f64
}

/// The fused softmax-cross-entropy gradient `dz[s][j] = (p_sj - [j == y_s]) / N` (into `dz`,
/// overwritten); returns the mean loss.
///
/// # Panics
/// As [`cross_entropy`], and if `dz` has another length than `logits`.
pub fn softmax_cross_entropy_backward<T: Copy + Into<f64>, const O: usize>(
    logits: &[[T; O]],
    labels: &[u32],
    dz: &mut [[f64; O]],
) -> f64 {
    assert_eq!(logits.len(), dz.len());
    let n = logits.len() as f64;
    for ((z, &y), d) in logits.iter().zip(labels).zip(dz.iter_mut()) {
        let p = softmax(z);
        for j in 0..O {
            let onehot = if j == y as usize { 1.0 } else { 0.0 };
            d[j] = (p[j] - onehot) / n;
        }
    }
    cross_entropy(logits, labels)
}

/// One plain SGD step: `params[i] -= lr * grads[i]`.
///
/// # Panics
/// If the lengths differ.
pub fn sgd_step(params: &mut [f64], grads: &[f64], lr: f64) {
    assert_eq!(params.len(), grads.len());
    for (p, g) in params.iter_mut().zip(grads) {
        *p -= lr * g;
    }
}

/// The parameters (or the gradients) of an `Mlp<I, H, O>` in `f64`, in the crate's layout.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct MlpParams<const I: usize, const H: usize, const O: usize> {
    /// Hidden weights, `[[_; I]; H]`.
    pub w1: [[f64; I]; H],
    /// Hidden biases.
    pub b1: [f64; H],
    /// Output weights, `[[_; H]; O]`.
    pub w2: [[f64; H]; O],
    /// Output biases.
    pub b2: [f64; O],
}

impl<const I: usize, const H: usize, const O: usize> MlpParams<I, H, O> {
    /// All zero.
    pub const ZERO: Self = Self {
        w1: [[0.0; I]; H],
        b1: [0.0; H],
        w2: [[0.0; H]; O],
        b2: [0.0; O],
    };

    /// Number of parameters, `I*H + H + H*O + O`.
    pub const LEN: usize = I * H + H + H * O + O;

    /// The parameters of a model, converted exactly.
    #[must_use]
    pub fn from_mlp(m: &Mlp<I, H, O>) -> Self {
        let mut p = Self::ZERO;
        p.load(m);
        p
    }

    /// [`MlpParams::from_mlp`] on the heap, allocated zeroed with no copy on any stack (for
    /// large models in debug builds: 784-256-10 is 1.6 MB in `f64`).
    #[cfg(feature = "std")]
    #[must_use]
    pub fn from_mlp_boxed(m: &Mlp<I, H, O>) -> std::boxed::Box<Self> {
        let mut p: std::boxed::Box<Self> = bytemuck::zeroed_box();
        p.load(m);
        p
    }

    /// Sets every parameter from a model, converted exactly.
    fn load(&mut self, m: &Mlp<I, H, O>) {
        let p = self;
        for j in 0..H {
            for k in 0..I {
                p.w1[j][k] = m.hidden().weights()[j][k].into();
            }
            p.b1[j] = m.hidden().bias()[j].into();
        }
        for j in 0..O {
            for k in 0..H {
                p.w2[j][k] = m.output().weights()[j][k].into();
            }
            p.b2[j] = m.output().bias()[j].into();
        }
    }

    /// The parameter with flat index `i` in [`Mlp::write_params`] order (hidden weights
    /// row-major, hidden biases, output weights, output biases).
    ///
    /// # Panics
    /// If `i >= LEN`.
    #[must_use]
    pub fn get(&self, i: usize) -> f64 {
        let mut me = self.clone();
        *me.slot(i)
    }

    /// Sets the parameter with flat index `i` (as [`MlpParams::get`]).
    ///
    /// # Panics
    /// If `i >= LEN`.
    pub fn set(&mut self, i: usize, v: f64) {
        *self.slot(i) = v;
    }

    fn slot(&mut self, i: usize) -> &mut f64 {
        let mut i = i;
        if i < I * H {
            return &mut self.w1[i / I][i % I];
        }
        i -= I * H;
        if i < H {
            return &mut self.b1[i];
        }
        i -= H;
        if i < H * O {
            return &mut self.w2[i / H][i % H];
        }
        i -= H * O;
        &mut self.b2[i]
    }

    /// The hidden activations `relu(W1 x + b1)` of one sample.
    #[must_use]
    pub fn hidden<T: Copy + Into<f64>>(&self, x: &[T; I]) -> [f64; H] {
        let mut a = dense_forward(&self.w1, &self.b1, &x.map(Into::into));
        for v in &mut a {
            *v = relu(*v);
        }
        a
    }

    /// The hidden pre-activations `W1 x + b1` of one sample (to find ReLU kinks).
    #[must_use]
    pub fn pre_activations<T: Copy + Into<f64>>(&self, x: &[T; I]) -> [f64; H] {
        dense_forward(&self.w1, &self.b1, &x.map(Into::into))
    }

    /// The logits `W2 relu(W1 x + b1) + b2` of one sample.
    #[must_use]
    pub fn logits<T: Copy + Into<f64>>(&self, x: &[T; I]) -> [f64; O] {
        dense_forward(&self.w2, &self.b2, &self.hidden(x))
    }

    /// Mean cross-entropy of the model over a batch.
    ///
    /// # Panics
    /// As [`cross_entropy`].
    #[must_use]
    pub fn loss<T: Copy + Into<f64>>(&self, x: &[[T; I]], labels: &[u32]) -> f64 {
        assert_eq!(x.len(), labels.len());
        assert!(!x.is_empty());
        let mut total = 0.0;
        for (xs, &y) in x.iter().zip(labels) {
            let z = self.logits(xs);
            total += log_sum_exp(&z) - z[y as usize];
        }
        total / x.len() as f64
    }

    /// Gradients of the mean loss over the batch into `g` (overwritten), sample by sample
    /// through the chain rule with the oracle's own kernels; returns the mean loss.
    ///
    /// # Panics
    /// As [`cross_entropy`].
    pub fn gradients<T: Copy + Into<f64>>(
        &self,
        x: &[[T; I]],
        labels: &[u32],
        g: &mut Self,
    ) -> f64 {
        assert_eq!(x.len(), labels.len());
        assert!(!x.is_empty());
        *g = Self::ZERO;
        for (xs, &y) in x.iter().zip(labels) {
            let xs = xs.map(Into::into);
            let a = self.hidden(&xs);
            let z = dense_forward(&self.w2, &self.b2, &a);
            let mut dz = [[0.0; O]; 1];
            softmax_cross_entropy_backward(&[z], &[y], &mut dz);
            // The per-sample gradient is of the sample's loss; the mean divides by N.
            for d in &mut dz[0] {
                *d /= x.len() as f64;
            }
            let (mut dw2, mut db2, mut da) = ([[0.0; H]; O], [0.0; O], [[0.0; H]; 1]);
            dense_backward(&self.w2, &[a], &dz, &mut dw2, &mut db2, &mut da);
            let mut dh = [[0.0; H]; 1];
            for k in 0..H {
                dh[0][k] = relu_backward(a[k], da[0][k]);
            }
            let (mut dw1, mut db1, mut dx) = ([[0.0; I]; H], [0.0; H], [[0.0; I]; 1]);
            dense_backward(&self.w1, &[xs], &dh, &mut dw1, &mut db1, &mut dx);
            for j in 0..H {
                for k in 0..I {
                    g.w1[j][k] += dw1[j][k];
                }
                g.b1[j] += db1[j];
            }
            for j in 0..O {
                for k in 0..H {
                    g.w2[j][k] += dw2[j][k];
                }
                g.b2[j] += db2[j];
            }
        }
        self.loss(x, labels)
    }
}
