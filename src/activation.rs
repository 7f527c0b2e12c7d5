//! Activations: ReLU, softmax and log-softmax, forward and backward side by side.
//!
//! Every function here works on a batch of rows, `&[[f32; N]]`, of any length, and runs the
//! same lane kernels that the models use inside training, so a row gives bit for bit what it
//! gives inside a model.
//!
//! # Gradients
//! ReLU: `y = max(x, 0)`, so `dL/dx = dL/dy` where `y > 0` and `0` elsewhere. The derivative
//! at exactly `x = 0` is taken as `0`, TensorFlow's convention. Computing the mask from the
//! *output* `y` (what the forward pass keeps) gives the same answer as from `x`.
//!
//! Softmax: `p_i = e^{z_i} / sum_j e^{z_j}`, so `dp_i/dz_j = p_i (delta_ij - p_j)` and
//!
//! ```text
//! dL/dz_j = p_j (dL/dp_j - sum_i p_i dL/dp_i)
//! ```
//!
//! Log-softmax: `l_i = z_i - log sum_j e^{z_j}`, so `dl_i/dz_j = delta_ij - p_j` and
//!
//! ```text
//! dL/dz_j = dL/dl_j - p_j sum_i dL/dl_i
//! ```
//!
//! Both shift by the row maximum first: `e^{z - max}` never overflows, and the row's largest
//! term is exactly 1, so the sum is at least 1 and its logarithm is finite.
//!
//! # NaN and infinity
//! ReLU keeps NaN (`relu(NaN) = NaN`) rather than turning it into 0, so a NaN cannot vanish
//! on its way to the loss (its backward gives 0 for a NaN output: `NaN > 0` is false);
//! `relu(+inf) = +inf`, `relu(-inf) = 0`. Softmax of a row with a NaN is NaN in every entry; a row with `+inf` gives NaN (`inf - inf`); `-inf` entries get
//! probability 0 as long as one entry is finite.

use crate::error::{Error, same_len};
use crate::lanes::{self, LANES, Lane};
use crate::math;
use crate::reference;

/// `y = max(x, 0)` for each element of each row (NaN stays NaN).
///
/// # Errors
/// [`Error::LengthMismatch`] if `y` has another length than `x`.
///
/// # Examples
/// ```
/// let mut y = [[0.0; 3]];
/// fusedprop::relu(&[[-1.0, 0.0, 2.5]], &mut y).unwrap();
/// assert_eq!(y, [[0.0, 0.0, 2.5]]);
/// ```
pub fn relu<const N: usize>(x: &[[f32; N]], y: &mut [[f32; N]]) -> Result<(), Error> {
    same_len("outputs", x.len(), y.len())?;
    let mut l = [lanes::zero(); N];
    for (xs, ys) in x.chunks(LANES).zip(y.chunks_mut(LANES)) {
        lanes::load_rows(xs, &mut l);
        relu_block(&mut l);
        lanes::store_rows(&l, ys);
    }
    Ok(())
}

/// `dx = dy` where `y > 0`, else `0`, from ReLU's output `y`.
///
/// # Errors
/// [`Error::LengthMismatch`] if `dy` or `dx` has another length than `y`.
///
/// # Examples
/// ```
/// let mut dx = [[9.0; 3]];
/// fusedprop::relu_backward(&[[0.0, 0.0, 2.5]], &[[1.0, 2.0, 3.0]], &mut dx).unwrap();
/// assert_eq!(dx, [[0.0, 0.0, 3.0]]);
/// ```
pub fn relu_backward<const N: usize>(
    y: &[[f32; N]],
    dy: &[[f32; N]],
    dx: &mut [[f32; N]],
) -> Result<(), Error> {
    same_len("output gradients", y.len(), dy.len())?;
    same_len("input gradients", y.len(), dx.len())?;
    let mut yl = [lanes::zero(); N];
    let mut dl = [lanes::zero(); N];
    for ((ys, dys), dxs) in y
        .chunks(LANES)
        .zip(dy.chunks(LANES))
        .zip(dx.chunks_mut(LANES))
    {
        lanes::load_rows(ys, &mut yl);
        lanes::load_rows(dys, &mut dl);
        for (d, &yv) in dl.iter_mut().zip(&yl) {
            *d = lanes::relu_mask(yv, *d);
        }
        lanes::store_rows(&dl, dxs);
    }
    Ok(())
}

/// Numerically stable softmax of each row.
///
/// # Errors
/// [`Error::LengthMismatch`] if `p` has another length than `z`.
///
/// # Examples
/// ```
/// let mut p = [[0.0; 2]];
/// fusedprop::softmax(&[[1e30, -1e30]], &mut p).unwrap();
/// assert_eq!(p, [[1.0, 0.0]]);
/// ```
pub fn softmax<const N: usize>(z: &[[f32; N]], p: &mut [[f32; N]]) -> Result<(), Error> {
    same_len("outputs", z.len(), p.len())?;
    let mut l = [lanes::zero(); N];
    for (zs, ps) in z.chunks(LANES).zip(p.chunks_mut(LANES)) {
        lanes::load_rows(zs, &mut l);
        let s = exp_shifted_block(&mut l);
        for v in &mut l {
            *v = lanes::div(*v, s);
        }
        lanes::store_rows(&l, ps);
    }
    Ok(())
}

/// `dz_j = p_j (dp_j - sum_i p_i dp_i)`: softmax's backward from its output `p` and the
/// upstream gradient `dp`.
///
/// # Errors
/// [`Error::LengthMismatch`] if `dp` or `dz` has another length than `p`.
pub fn softmax_backward<const N: usize>(
    p: &[[f32; N]],
    dp: &[[f32; N]],
    dz: &mut [[f32; N]],
) -> Result<(), Error> {
    same_len("output gradients", p.len(), dp.len())?;
    same_len("input gradients", p.len(), dz.len())?;
    let mut pl = [lanes::zero(); N];
    let mut dl = [lanes::zero(); N];
    for ((ps, dps), dzs) in p
        .chunks(LANES)
        .zip(dp.chunks(LANES))
        .zip(dz.chunks_mut(LANES))
    {
        lanes::load_rows(ps, &mut pl);
        lanes::load_rows(dps, &mut dl);
        let mut dot = lanes::zero();
        for (&pv, &dv) in pl.iter().zip(&dl) {
            dot = lanes::fma(pv, dv, dot);
        }
        for (d, &pv) in dl.iter_mut().zip(&pl) {
            *d = pv * (*d - dot);
        }
        lanes::store_rows(&dl, dzs);
    }
    Ok(())
}

/// `l = z - max(z) - ln(sum e^(z - max(z)))` for each row: the logarithm of the softmax,
/// accurate where the softmax itself would round to 0.
///
/// # Errors
/// [`Error::LengthMismatch`] if `l` has another length than `z`.
///
/// # Examples
/// ```
/// let mut l = [[0.0; 2]];
/// fusedprop::log_softmax(&[[0.0, 0.0]], &mut l).unwrap();
/// assert!((l[0][0] + core::f32::consts::LN_2).abs() < 1e-7);
/// ```
pub fn log_softmax<const N: usize>(z: &[[f32; N]], l: &mut [[f32; N]]) -> Result<(), Error> {
    same_len("outputs", z.len(), l.len())?;
    let mut zl = [lanes::zero(); N];
    for (zs, ls) in z.chunks(LANES).zip(l.chunks_mut(LANES)) {
        lanes::load_rows(zs, &mut zl);
        let m = row_max(&zl);
        let mut s = lanes::zero();
        for &v in &zl {
            s += lanes::exp(v - m);
        }
        let log_s = lanes::ln(s);
        for v in &mut zl {
            *v = (*v - m) - log_s;
        }
        lanes::store_rows(&zl, ls);
    }
    Ok(())
}

/// `dz_j = dl_j - p_j sum_i dl_i`: log-softmax's backward from its output `l`
/// (`p = e^l`) and the upstream gradient `dl`.
///
/// # Errors
/// [`Error::LengthMismatch`] if `dl` or `dz` has another length than `l`.
pub fn log_softmax_backward<const N: usize>(
    l: &[[f32; N]],
    dl: &[[f32; N]],
    dz: &mut [[f32; N]],
) -> Result<(), Error> {
    same_len("output gradients", l.len(), dl.len())?;
    same_len("input gradients", l.len(), dz.len())?;
    let mut ll = [lanes::zero(); N];
    let mut dd = [lanes::zero(); N];
    for ((ls, dls), dzs) in l
        .chunks(LANES)
        .zip(dl.chunks(LANES))
        .zip(dz.chunks_mut(LANES))
    {
        lanes::load_rows(ls, &mut ll);
        lanes::load_rows(dls, &mut dd);
        let mut total = lanes::zero();
        for &d in &dd {
            total += d;
        }
        for (d, &lv) in dd.iter_mut().zip(&ll) {
            *d = lanes::fnma(lanes::exp(lv), total, *d);
        }
        lanes::store_rows(&dd, dzs);
    }
    Ok(())
}

/// ReLU in place on a block.
#[inline(always)]
pub(crate) fn relu_block<const N: usize>(x: &mut [Lane; N]) {
    for v in x {
        *v = lanes::relu(*v);
    }
}

/// The maximum over a row, lane-wise (one row per sample); NaN propagates.
#[inline(always)]
pub(crate) fn row_max<const N: usize>(z: &[Lane; N]) -> Lane {
    let mut m = lanes::splat(f32::NEG_INFINITY);
    for &v in z {
        m = lanes::max_keep_nan(v, m);
    }
    m
}

/// Index (as a float) of the largest logit of each sample; the first on ties.
#[inline(always)]
pub(crate) fn argmax_block<const O: usize>(z: &[Lane; O]) -> Lane {
    let mut best = z[0];
    let mut idx = lanes::zero();
    for (j, &v) in z.iter().enumerate().skip(1) {
        let better = lanes::gt(v, best);
        best = lanes::select(better, v, best);
        idx = lanes::select(better, lanes::splat(j as f32), idx);
    }
    idx
}

/// Replaces `z` by `e^(z - max z)` and returns the row sums `sum_j e^(z_j - max z)`.
#[inline(always)]
pub(crate) fn exp_shifted_block<const N: usize>(z: &mut [Lane; N]) -> Lane {
    exp_shifted_by(z, row_max(z))
}

/// [`exp_shifted_block`] with the row maximum `m` already known.
#[inline(always)]
pub(crate) fn exp_shifted_by<const N: usize>(z: &mut [Lane; N], m: Lane) -> Lane {
    let mut s = lanes::zero();
    for v in z.iter_mut() {
        *v = lanes::exp(*v - m);
        s += *v;
    }
    s
}

/// The activation of a [`Dense`](crate::Dense) layer, fused into its forward and backward
/// passes: [`Linear`], [`Relu`], [`LeakyRelu`], [`Tanh`], [`Sigmoid`], [`Silu`], [`Gelu`].
///
/// The forward pass of a training step keeps, for each activation, what its derivative needs
/// (the output, or the derivative itself) in the layer's tile buffers, so the backward pass
/// is one multiply (or one select) per element.
///
/// | activation | `y = f(z)` | `dL/dz` from | accuracy of `f` against `f64` |
/// |---|---|---|---|
/// | [`Linear`] | `z` | `dL/dy` | exact |
/// | [`Relu`] | `max(z, 0)`, NaN kept | `dL/dy` where `y > 0` | exact |
/// | [`LeakyRelu`] | `z` if `z > 0`, else `slope z` | `dL/dy` or `slope dL/dy` | one rounding |
/// | [`Tanh`] | `tanh z` | `dL/dy (1 - y²)` | see `math` below |
/// | [`Sigmoid`] | `1 / (1 + e^-z)` | `dL/dy y (1 - y)` | see below |
/// | [`Silu`] | `z sigmoid(z)` | `dL/dy s (1 + z (1 - s))`, `s = sigmoid(z)` | see below |
/// | [`Gelu`] | `z Φ(z)` (exact, with `erf`) | `dL/dy (Φ(z) + z φ(z))` | see below |
///
/// The accuracy of the transcendental activations is stated and tested in the crate's
/// `math` module docs (ARCHITECTURE.md, "Activations").
pub trait Activation:
    sealed::ActKernel + Copy + PartialEq + core::fmt::Debug + Send + Sync
{
    /// Keras's name of the activation (`"relu"`, `"tanh"` ...), for summaries.
    fn name(&self) -> &'static str;
    /// The activation in `f64`, written for clarity: the oracle of the tests.
    fn eval_f64(&self, z: f64) -> f64;
    /// Its derivative in `f64` (at ReLU's kink, 0: TensorFlow's convention).
    fn grad_f64(&self, z: f64) -> f64;
}

/// An activation with no parameter to choose, so that a layer of it has a `const` zero value
/// ([`Dense::ZERO`](crate::Dense)): every activation but [`LeakyRelu`].
pub trait ConstActivation: Activation {
    /// The activation's one value.
    const DEFAULT: Self;
}

pub(crate) mod sealed {
    use crate::lanes::Lane;

    /// The lane kernels of an activation (crate-internal).
    pub trait ActKernel {
        /// Whether the backward pass needs anything kept from the forward pass (not for
        /// [`Linear`](super::Linear)).
        const KEEPS: bool;
        /// Whether this is [`Relu`](super::Relu), which the one-sample latency path applies
        /// to each output as it is produced.
        const RELU: bool = false;
        /// An upper bound of `|f'(z)|` over every `z`, as the kept values hold it in `f32`
        /// (rounded up): the refusal bound carries `dL/dz` down through the layer with it.
        const GRAD_BOUND: f64 = 1.0;
        /// Whether what the backward pass needs is the output itself (ReLU's mask): then the
        /// forward pass stores nothing more and the backward pass reads the outputs.
        const KEPT_IS_OUTPUT: bool = false;
        /// `f(z)`, lane-wise, for inference.
        fn forward(&self, z: Lane) -> Lane;
        /// `(f(z), kept)`: the output and what [`ActKernel::backward`] needs.
        fn forward_train(&self, z: Lane) -> (Lane, Lane);
        /// `dL/dz` from what the forward pass kept and `dL/dy`.
        fn backward(&self, kept: Lane, dy: Lane) -> Lane;
        /// The type's name in the crate's root (for `Network::to_rust_source`).
        const RUST_TYPE: &'static str;
        /// A `const` expression of this value, as Rust source.
        fn rust_value(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
            write!(out, "::fusedprop::{}", Self::RUST_TYPE)
        }
    }
}

/// No activation: `y = z` (the last layer of a network, whose head applies its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Linear;

/// `y = max(z, 0)`; NaN stays NaN; derivative 0 at `z = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Relu;

/// `y = z` for `z > 0`, `slope * z` otherwise. The slope is the caller's: Keras's `LeakyReLU`
/// defaults to 0.3 (its `leaky_relu` function to 0.2), PyTorch's to 0.01.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct LeakyRelu {
    slope: f32,
}

impl LeakyRelu {
    /// Leaky ReLU with `slope` for negative inputs (Keras's `negative_slope`).
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] unless `0 <= slope <= 1`.
    pub fn new(slope: f32) -> Result<Self, Error> {
        if (0.0..=1.0).contains(&slope) {
            Ok(Self { slope })
        } else {
            Err(Error::InvalidHyperparameter {
                name: "negative_slope",
                value: slope,
            })
        }
    }

    /// [`LeakyRelu::new`] in a `const` context (for a model in a `static`).
    ///
    /// # Panics
    /// Unless `0 <= slope <= 1`: at compile time when evaluated in a `const`.
    #[must_use]
    pub const fn new_const(slope: f32) -> Self {
        assert!(
            slope >= 0.0 && slope <= 1.0,
            "LeakyRelu: the slope must be in [0, 1]"
        );
        Self { slope }
    }

    /// The slope for negative inputs.
    #[must_use]
    pub fn slope(&self) -> f32 {
        self.slope
    }
}

/// `y = tanh z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Tanh;

/// The logistic sigmoid, `y = 1 / (1 + e^-z)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Sigmoid;

/// SiLU (swish), `y = z sigmoid(z)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Silu;

/// GELU in its exact form, `y = z Φ(z) = z (1 + erf(z / √2)) / 2` (Keras's
/// `approximate=False` and PyTorch's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Gelu;

macro_rules! const_activation {
    ($($t:ident),*) => {$(
        impl ConstActivation for $t {
            const DEFAULT: Self = $t;
        }
    )*};
}
const_activation!(Linear, Relu, Tanh, Sigmoid, Silu, Gelu);

impl sealed::ActKernel for Linear {
    const RUST_TYPE: &'static str = "Linear";
    const KEEPS: bool = false;
    #[inline(always)]
    fn forward(&self, z: Lane) -> Lane {
        z
    }
    #[inline(always)]
    fn forward_train(&self, z: Lane) -> (Lane, Lane) {
        (z, z)
    }
    #[inline(always)]
    fn backward(&self, _kept: Lane, dy: Lane) -> Lane {
        dy
    }
}

impl Activation for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn eval_f64(&self, z: f64) -> f64 {
        z
    }
    fn grad_f64(&self, _z: f64) -> f64 {
        1.0
    }
}

impl sealed::ActKernel for Relu {
    const RUST_TYPE: &'static str = "Relu";
    const KEEPS: bool = true;
    const RELU: bool = true;
    const KEPT_IS_OUTPUT: bool = true;
    #[inline(always)]
    fn forward(&self, z: Lane) -> Lane {
        lanes::relu(z)
    }
    #[inline(always)]
    fn forward_train(&self, z: Lane) -> (Lane, Lane) {
        let y = lanes::relu(z);
        (y, y)
    }
    #[inline(always)]
    fn backward(&self, y: Lane, dy: Lane) -> Lane {
        lanes::relu_mask(y, dy)
    }
}

impl Activation for Relu {
    fn name(&self) -> &'static str {
        "relu"
    }
    fn eval_f64(&self, z: f64) -> f64 {
        if z > 0.0 { z } else { 0.0 }
    }
    fn grad_f64(&self, z: f64) -> f64 {
        if z > 0.0 { 1.0 } else { 0.0 }
    }
}

impl sealed::ActKernel for LeakyRelu {
    const RUST_TYPE: &'static str = "LeakyRelu";
    fn rust_value(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        // `{:?}` is the shortest decimal that reads back as the same f32.
        write!(out, "::fusedprop::LeakyRelu::new_const({:?})", self.slope)
    }
    const KEEPS: bool = true;
    #[inline(always)]
    fn forward(&self, z: Lane) -> Lane {
        lanes::select(lanes::gt(z, lanes::zero()), z, z * lanes::splat(self.slope))
    }
    #[inline(always)]
    fn forward_train(&self, z: Lane) -> (Lane, Lane) {
        let pos = lanes::gt(z, lanes::zero());
        let y = lanes::select(pos, z, z * lanes::splat(self.slope));
        (
            y,
            lanes::select(pos, lanes::splat(1.0), lanes::splat(self.slope)),
        )
    }
    #[inline(always)]
    fn backward(&self, slope: Lane, dy: Lane) -> Lane {
        dy * slope
    }
}

impl Activation for LeakyRelu {
    fn name(&self) -> &'static str {
        "leaky_relu"
    }
    fn eval_f64(&self, z: f64) -> f64 {
        if z > 0.0 {
            z
        } else {
            f64::from(self.slope) * z
        }
    }
    fn grad_f64(&self, z: f64) -> f64 {
        if z > 0.0 { 1.0 } else { f64::from(self.slope) }
    }
}

impl sealed::ActKernel for Tanh {
    const RUST_TYPE: &'static str = "Tanh";
    const KEEPS: bool = true;
    #[inline(always)]
    fn forward(&self, z: Lane) -> Lane {
        math::tanh(z)
    }
    #[inline(always)]
    fn forward_train(&self, z: Lane) -> (Lane, Lane) {
        let y = math::tanh(z);
        (y, lanes::splat(1.0) - y * y)
    }
    #[inline(always)]
    fn backward(&self, d: Lane, dy: Lane) -> Lane {
        dy * d
    }
}

impl Activation for Tanh {
    fn name(&self) -> &'static str {
        "tanh"
    }
    fn eval_f64(&self, z: f64) -> f64 {
        reference::tanh(z)
    }
    fn grad_f64(&self, z: f64) -> f64 {
        let t = reference::tanh(z);
        1.0 - t * t
    }
}

impl sealed::ActKernel for Sigmoid {
    const RUST_TYPE: &'static str = "Sigmoid";
    const KEEPS: bool = true;
    // max s(1 - s) = 1/4, at z = 0; the f32 product of values in [0, 1] does not exceed it.
    const GRAD_BOUND: f64 = 0.25;
    #[inline(always)]
    fn forward(&self, z: Lane) -> Lane {
        math::sigmoid(z)
    }
    #[inline(always)]
    fn forward_train(&self, z: Lane) -> (Lane, Lane) {
        let y = math::sigmoid(z);
        (y, y * (lanes::splat(1.0) - y))
    }
    #[inline(always)]
    fn backward(&self, d: Lane, dy: Lane) -> Lane {
        dy * d
    }
}

impl Activation for Sigmoid {
    fn name(&self) -> &'static str {
        "sigmoid"
    }
    fn eval_f64(&self, z: f64) -> f64 {
        reference::sigmoid(z)
    }
    fn grad_f64(&self, z: f64) -> f64 {
        let s = reference::sigmoid(z);
        s * (1.0 - s)
    }
}

impl sealed::ActKernel for Silu {
    const RUST_TYPE: &'static str = "Silu";
    const KEEPS: bool = true;
    // max of s(z)(1 + z(1 - s(z))) is 1.0998 (z = 2.3994), with room for the kernel's error.
    const GRAD_BOUND: f64 = 1.125;
    #[inline(always)]
    fn forward(&self, z: Lane) -> Lane {
        math::silu(z)
    }
    #[inline(always)]
    fn forward_train(&self, z: Lane) -> (Lane, Lane) {
        (math::silu(z), math::silu_grad(z))
    }
    #[inline(always)]
    fn backward(&self, d: Lane, dy: Lane) -> Lane {
        dy * d
    }
}

impl Activation for Silu {
    fn name(&self) -> &'static str {
        "silu"
    }
    fn eval_f64(&self, z: f64) -> f64 {
        z * reference::sigmoid(z)
    }
    fn grad_f64(&self, z: f64) -> f64 {
        let s = reference::sigmoid(z);
        s * (1.0 + z * (1.0 - s))
    }
}

impl sealed::ActKernel for Gelu {
    const RUST_TYPE: &'static str = "Gelu";
    const KEEPS: bool = true;
    // max of Φ(z) + z φ(z) is 1.1289 (z = √2), with room for the kernel's error.
    const GRAD_BOUND: f64 = 1.25;
    #[inline(always)]
    fn forward(&self, z: Lane) -> Lane {
        math::gelu(z)
    }
    #[inline(always)]
    fn forward_train(&self, z: Lane) -> (Lane, Lane) {
        (math::gelu(z), math::gelu_grad(z))
    }
    #[inline(always)]
    fn backward(&self, d: Lane, dy: Lane) -> Lane {
        dy * d
    }
}

impl Activation for Gelu {
    fn name(&self) -> &'static str {
        "gelu"
    }
    fn eval_f64(&self, z: f64) -> f64 {
        z * reference::normal_cdf(z)
    }
    fn grad_f64(&self, z: f64) -> f64 {
        reference::normal_cdf(z) + z * reference::normal_pdf(z)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    /// `|f'(z)|` as the forward pass keeps it (the output itself for ReLU) over `z`.
    fn kept_max<A: Activation>(a: &A, zs: &[f32]) -> f32 {
        zs.iter()
            .map(|&z| {
                let (y, kept) = a.forward_train(lanes::splat(z));
                let k = if A::KEPT_IS_OUTPUT {
                    // ReLU's backward of an upstream 1 is its derivative.
                    a.backward(y, lanes::splat(1.0))
                } else if A::KEEPS {
                    a.backward(kept, lanes::splat(1.0))
                } else {
                    lanes::splat(1.0)
                };
                lanes::reduce_max(lanes::abs(k))
            })
            .fold(0.0, f32::max)
    }

    /// The refusal bound's `GRAD_BOUND` must hold for every `f32` the kernels see: every
    /// 2^-12 step in [-16, 16] (where the derivatives peak), and the extremes.
    #[test]
    fn grad_bound_holds_for_every_kept_derivative() {
        let mut zs: Vec<f32> = (-65536..=65536).map(|i| i as f32 / 4096.0).collect();
        zs.extend([
            f32::MAX,
            -f32::MAX,
            1e30,
            -1e30,
            88.0,
            -88.0,
            1e-30,
            -1e-30,
            0.0,
        ]);
        fn check<A: Activation>(a: A, zs: &[f32]) {
            let m = f64::from(kept_max(&a, zs));
            assert!(
                m <= A::GRAD_BOUND,
                "{}: max |f'| {m} > {}",
                a.name(),
                A::GRAD_BOUND
            );
        }
        check(Linear, &zs);
        check(Relu, &zs);
        check(LeakyRelu::new(0.3).unwrap(), &zs);
        check(LeakyRelu::new(1.0).unwrap(), &zs);
        check(Tanh, &zs);
        check(Sigmoid, &zs);
        check(Silu, &zs);
        check(Gelu, &zs);
    }
}
