//! Loss heads: what a [`Network`](crate::Network) does with its last layer's outputs.
//!
//! A head owns the output nonlinearity that belongs to its loss, so that the pair is computed
//! stably and its gradient is the simple fused one (the last [`Dense`](crate::Dense) layer is
//! then usually [`Linear`](crate::Linear)):
//!
//! | head | outputs (`predict_proba`) | loss per sample | `dL/dz` (mean over `N` samples) |
//! |---|---|---|---|
//! | [`SoftmaxCrossEntropy`] | `p = softmax(z)` | `logsumexp(z) - z_y` | `(p - onehot(y)) / N` |
//! | [`MeanSquaredError`] | `z` | `Σ_j (z_j - t_j)² / O` | `2 (z - t) / (N O)` |
//! | [`BinaryCrossEntropy`] | `p = sigmoid(z)` | `Σ_j [max(z_j, 0) - z_j t_j + ln(1 + e^-|z_j|)] / O` | `(p - t) / (N O)` |
//!
//! The means are Keras's and PyTorch's: over the batch and, for MSE and binary
//! cross-entropy, over the outputs. Binary cross-entropy is computed from the logits, finite for
//! every finite logit (Keras's `from_logits=True` form); Keras clips probabilities to
//! `[1e-7, 1 - 1e-7]` in its probability form, which only matters for logits beyond ±16.
//!
//! Padded lanes of a partial block never reach a result: their losses and gradients are
//! selected to zero, not multiplied by a zero mask (a NaN times zero is NaN).

use crate::activation::Activation;
use crate::activation::exp_shifted_block;
use crate::error::Error;
use crate::lanes::{self, Lane};
use crate::layer::{Dim, Shape};
use crate::loss::{xent_lanes, xent_lanes_n};
use crate::math;
use crate::optim::ConstZero;
use crate::reference;

/// Softmax over the outputs with sparse categorical cross-entropy: labels are class indices
/// (Keras's `SparseCategoricalCrossentropy(from_logits=True)`, PyTorch's `CrossEntropyLoss`).
/// Needs at least two outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct SoftmaxCrossEntropy;

/// Mean squared error on the raw outputs (regression): targets are `[f32; O]` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct MeanSquaredError;

/// A sigmoid on each output with binary cross-entropy, from the logits: targets are `[f32; O]`
/// rows of values in `[0, 1]` (one output for binary classification, several for
/// multi-label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct BinaryCrossEntropy;

impl ConstZero for SoftmaxCrossEntropy {
    const ZERO: Self = SoftmaxCrossEntropy;
}
impl ConstZero for MeanSquaredError {
    const ZERO: Self = MeanSquaredError;
}
impl ConstZero for BinaryCrossEntropy {
    const ZERO: Self = BinaryCrossEntropy;
}

/// A loss head for outputs of shape `S` (sealed: [`SoftmaxCrossEntropy`],
/// [`MeanSquaredError`], [`BinaryCrossEntropy`]).
pub trait Head<S: Shape>: sealed::HeadKernel<S> + Copy + core::fmt::Debug + Send + Sync {
    /// A short description for summaries.
    const NAME: &'static str;
}

/// A head whose outputs name a class: [`SoftmaxCrossEntropy`] (the most probable class) and
/// [`BinaryCrossEntropy`] with one output (class 1 where `p > 0.5`).
pub trait Classifier<S: Shape>: Head<S> {}

impl<const O: usize> Classifier<Dim<O>> for SoftmaxCrossEntropy {}
impl Classifier<Dim<1>> for BinaryCrossEntropy {}

pub(crate) mod sealed {
    use super::*;

    /// The lane kernels of a head (crate-internal).
    pub trait HeadKernel<S: crate::layer::ShapeKernel>: Sized {
        /// A sample's target: a class index (`u32`) or a row of `f32`.
        type T: Copy + core::fmt::Debug + Send + Sync;
        /// The number of classes of a classifier (0 for regression).
        const CLASSES: usize;
        /// The type's name in the crate's root (for `Network::to_rust_source`).
        const RUST_TYPE: &'static str;
        /// The fewest outputs the head works with (checked at compile time).
        const MIN_OUTPUTS: usize = 1;
        /// What its targets are called in messages ("labels" for class indices).
        const TARGETS: &'static str = "targets";
        /// The targets of a block in lanes.
        type TBlock: Copy;
        /// Checks targets before any work.
        fn check(t: &[Self::T]) -> Result<(), Error>;
        /// Loads up to sixteen targets.
        fn load(t: &[Self::T]) -> Self::TBlock;
        /// The per-lane loss of a block of outputs `z`, and if `d` is given, `dL/dz * inv_n`
        /// through `f`'s backward into `d` (which holds what `f` kept). The loss comes in two
        /// parts, `(add, factor)`, and is `add + ln(factor)`: zero and one in padded lanes
        /// (where `valid` is false), `factor` one for a head without a logarithm and below
        /// `2^FACTOR_BITS` for finite outputs; summing blocks, `driver::TileLoss` takes one
        /// logarithm of the factors' product instead of one a block.
        fn loss<F: Activation>(
            z: &S::Block,
            y: &Self::TBlock,
            valid: Lane,
            inv_n: f32,
            d: Option<(&mut S::Block, &F)>,
        ) -> (Lane, Lane);
        /// [`HeadKernel::loss`] of `NB` full blocks (`d` given), the same values; a head
        /// whose per-block work is a long dependency chain interleaves the blocks.
        #[inline(always)]
        fn loss_n<F: Activation, const NB: usize>(
            z: [&S::Block; NB],
            y: [&Self::TBlock; NB],
            inv_n: f32,
            d: [&mut S::Block; NB],
            f: &F,
        ) -> [(Lane, Lane); NB] {
            let mut out = [(lanes::zero(), lanes::zero()); NB];
            for (((o, z), y), d) in out.iter_mut().zip(z).zip(y).zip(d) {
                *o = Self::loss(z, y, lanes::valid(lanes::LANES), inv_n, Some((d, f)));
            }
            out
        }
        /// Bits of the largest `factor` of [`HeadKernel::loss`] (`factor < 2^FACTOR_BITS`),
        /// 0 where it is always one.
        const FACTOR_BITS: u32 = 0;
        /// The head's outputs (probabilities, or the values) from the logits, in place.
        fn outputs(z: &mut S::Block);
        /// The class of each lane (as a float); only for [`Classifier`] heads.
        fn classes(z: &S::Block) -> Lane;
        /// The class of one sample from its logits.
        fn class_one(z: &[f32]) -> u32;
        /// The loss of one sample from its outputs, in `f64`, written for clarity (the
        /// oracle of the gradient checker and the tests).
        fn loss_f64(z: &[f64], t: &Self::T) -> f64;
        /// Targets from class labels in a lane (a packed batch's); `None` for heads whose
        /// targets are not class labels.
        fn label_lanes(y: Lane) -> Option<Self::TBlock> {
            let _ = y;
            None
        }
        /// A target of zeros (for the gather buffers of `fit`).
        const TARGET_ZERO: Self::T;
        /// The class a target names, for accuracy: the label of a
        /// [`SoftmaxCrossEntropy`] target, `t > 0.5` for a one-output
        /// [`BinaryCrossEntropy`]; `None` for heads that do not classify.
        fn target_class(t: &Self::T) -> Option<u32> {
            let _ = t;
            None
        }
    }
}

impl<const O: usize> Head<Dim<O>> for SoftmaxCrossEntropy {
    const NAME: &'static str = "softmax + sparse categorical cross-entropy";
}

impl<const O: usize> sealed::HeadKernel<Dim<O>> for SoftmaxCrossEntropy {
    const RUST_TYPE: &'static str = "SoftmaxCrossEntropy";
    type T = u32;
    type TBlock = Lane;
    const CLASSES: usize = O;
    const TARGET_ZERO: u32 = 0;

    fn target_class(t: &u32) -> Option<u32> {
        Some(*t)
    }
    const MIN_OUTPUTS: usize = 2;
    const TARGETS: &'static str = "labels";

    fn check(t: &[u32]) -> Result<(), Error> {
        crate::error::check_labels(t, O)
    }

    #[inline(always)]
    fn load(t: &[u32]) -> Lane {
        lanes::labels(t)
    }

    #[inline(always)]
    fn loss<F: Activation>(
        z: &[Lane; O],
        y: &Lane,
        valid: Lane,
        inv_n: f32,
        d: Option<(&mut [Lane; O], &F)>,
    ) -> (Lane, Lane) {
        let mask = lanes::gt(valid, lanes::zero());
        let mut g = *z;
        let (l, s) = xent_lanes(&mut g, *y, valid, inv_n, d.is_some());
        if let Some((d, f)) = d {
            for (dv, gv) in d.iter_mut().zip(g) {
                *dv = f.backward(*dv, lanes::select(mask, gv, lanes::zero()));
            }
        }
        (
            lanes::select(mask, l, lanes::zero()),
            lanes::select(mask, s, lanes::splat(1.0)),
        )
    }

    #[inline(always)]
    fn loss_n<F: Activation, const NB: usize>(
        z: [&[Lane; O]; NB],
        y: [&Lane; NB],
        inv_n: f32,
        d: [&mut [Lane; O]; NB],
        f: &F,
    ) -> [(Lane, Lane); NB] {
        // Full blocks: no padding to mask.
        let mut g: [[Lane; O]; NB] = core::array::from_fn(|b| *z[b]);
        let r = xent_lanes_n::<O, NB>(
            g.each_mut(),
            core::array::from_fn(|b| *y[b]),
            [lanes::valid(lanes::LANES); NB],
            inv_n,
            true,
        );
        for (db, gb) in d.into_iter().zip(&g) {
            for (dv, &gv) in db.iter_mut().zip(gb) {
                *dv = f.backward(*dv, gv);
            }
        }
        r
    }

    // `s`, a sum of `O` values of at most 1, each within an ulp: below `2^bits(O)`.
    const FACTOR_BITS: u32 = usize::BITS - O.leading_zeros();

    #[inline(always)]
    fn outputs(z: &mut [Lane; O]) {
        let s = exp_shifted_block(z);
        for v in z.iter_mut() {
            *v = lanes::div(*v, s);
        }
    }

    #[inline(always)]
    fn classes(z: &[Lane; O]) -> Lane {
        crate::activation::argmax_block(z)
    }

    fn label_lanes(y: Lane) -> Option<Lane> {
        Some(y)
    }

    fn loss_f64(z: &[f64], t: &u32) -> f64 {
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|&v| reference::exp(v - m)).sum();
        m + reference::ln(s) - z[*t as usize]
    }

    fn class_one(z: &[f32]) -> u32 {
        let mut best = 0;
        for (j, &v) in z.iter().enumerate().skip(1) {
            if v > z[best] {
                best = j;
            }
        }
        best as u32
    }
}

/// Checks that every value of every target row is finite.
fn check_rows<const O: usize>(t: &[[f32; O]], in_unit: bool) -> Result<(), Error> {
    for (index, row) in t.iter().enumerate() {
        let bad = row
            .iter()
            .any(|v| !v.is_finite() || (in_unit && !(0.0..=1.0).contains(v)));
        if bad {
            return Err(if in_unit && row.iter().all(|v| v.is_finite()) {
                Error::TargetOutOfRange { index }
            } else {
                Error::NonFinite {
                    what: "target",
                    index: Some(index),
                }
            });
        }
    }
    Ok(())
}

fn load_targets<const O: usize>(t: &[[f32; O]]) -> [Lane; O] {
    let mut b = [lanes::zero(); O];
    lanes::load_rows(t, &mut b);
    b
}

impl<const O: usize> Head<Dim<O>> for MeanSquaredError {
    const NAME: &'static str = "mean squared error";
}

impl<const O: usize> sealed::HeadKernel<Dim<O>> for MeanSquaredError {
    const RUST_TYPE: &'static str = "MeanSquaredError";
    type T = [f32; O];
    type TBlock = [Lane; O];
    const CLASSES: usize = 0;
    const TARGET_ZERO: [f32; O] = [0.0; O];

    fn check(t: &[[f32; O]]) -> Result<(), Error> {
        check_rows(t, false)
    }

    #[inline(always)]
    fn load(t: &[[f32; O]]) -> [Lane; O] {
        load_targets(t)
    }

    #[inline(always)]
    fn loss<F: Activation>(
        z: &[Lane; O],
        y: &[Lane; O],
        valid: Lane,
        inv_n: f32,
        d: Option<(&mut [Lane; O], &F)>,
    ) -> (Lane, Lane) {
        let mask = lanes::gt(valid, lanes::zero());
        let inv_o = 1.0 / O as f32;
        let mut l = lanes::zero();
        for (&zv, &yv) in z.iter().zip(y) {
            let e = zv - yv;
            l = lanes::fma(e, e, l);
        }
        if let Some((d, f)) = d {
            let scale = lanes::splat(2.0 * inv_o * inv_n);
            for ((dv, &zv), &yv) in d.iter_mut().zip(z).zip(y) {
                let g = (zv - yv) * scale;
                *dv = f.backward(*dv, lanes::select(mask, g, lanes::zero()));
            }
        }
        (
            lanes::select(mask, l * lanes::splat(inv_o), lanes::zero()),
            lanes::splat(1.0),
        )
    }

    fn loss_f64(z: &[f64], t: &[f32; O]) -> f64 {
        z.iter()
            .zip(t)
            .map(|(&v, &y)| (v - f64::from(y)) * (v - f64::from(y)))
            .sum::<f64>()
            / O as f64
    }

    #[inline(always)]
    fn outputs(_z: &mut [Lane; O]) {}

    fn classes(_z: &[Lane; O]) -> Lane {
        lanes::zero()
    }

    fn class_one(_z: &[f32]) -> u32 {
        0
    }
}

impl<const O: usize> Head<Dim<O>> for BinaryCrossEntropy {
    const NAME: &'static str = "sigmoid + binary cross-entropy";
}

impl<const O: usize> sealed::HeadKernel<Dim<O>> for BinaryCrossEntropy {
    const RUST_TYPE: &'static str = "BinaryCrossEntropy";
    type T = [f32; O];
    type TBlock = [Lane; O];
    const CLASSES: usize = 2;
    const TARGET_ZERO: [f32; O] = [0.0; O];

    fn target_class(t: &[f32; O]) -> Option<u32> {
        // Accuracy is defined for one output (a `Classifier`), not for multi-label heads.
        if O == 1 {
            Some(u32::from(t[0] > 0.5))
        } else {
            None
        }
    }

    fn check(t: &[[f32; O]]) -> Result<(), Error> {
        check_rows(t, true)
    }

    #[inline(always)]
    fn load(t: &[[f32; O]]) -> [Lane; O] {
        load_targets(t)
    }

    #[inline(always)]
    fn loss<F: Activation>(
        z: &[Lane; O],
        y: &[Lane; O],
        valid: Lane,
        inv_n: f32,
        d: Option<(&mut [Lane; O], &F)>,
    ) -> (Lane, Lane) {
        let mask = lanes::gt(valid, lanes::zero());
        let inv_o = 1.0 / O as f32;
        let one = lanes::splat(1.0);
        let mut l = lanes::zero();
        for (&zv, &yv) in z.iter().zip(y) {
            // max(z, 0) - z t + ln(1 + e^-|z|): no term overflows for finite z.
            let e = lanes::exp(-lanes::abs(zv));
            let pos = lanes::select(lanes::gt(zv, lanes::zero()), zv, lanes::zero());
            l += (pos - zv * yv) + lanes::ln(one + e);
        }
        if let Some((d, f)) = d {
            let scale = lanes::splat(inv_o * inv_n);
            for ((dv, &zv), &yv) in d.iter_mut().zip(z).zip(y) {
                let g = (math::sigmoid(zv) - yv) * scale;
                *dv = f.backward(*dv, lanes::select(mask, g, lanes::zero()));
            }
        }
        (
            lanes::select(mask, l * lanes::splat(inv_o), lanes::zero()),
            lanes::splat(1.0),
        )
    }

    fn loss_f64(z: &[f64], t: &[f32; O]) -> f64 {
        z.iter()
            .zip(t)
            .map(|(&v, &y)| {
                v.max(0.0) - v * f64::from(y) + reference::ln(1.0 + reference::exp(-v.abs()))
            })
            .sum::<f64>()
            / O as f64
    }

    #[inline(always)]
    fn outputs(z: &mut [Lane; O]) {
        for v in z.iter_mut() {
            *v = math::sigmoid(*v);
        }
    }

    fn classes(z: &[Lane; O]) -> Lane {
        // One output: class 1 where p > 0.5, that is z > 0.
        lanes::gt_ones(z[0], lanes::zero())
    }

    fn class_one(z: &[f32]) -> u32 {
        u32::from(z[0] > 0.0)
    }
}
