//! Sparse categorical cross-entropy on logits, and its gradient fused with the softmax.
//!
//! # The loss
//! For logits `z` (one row per sample), integer labels `y` and `N` samples:
//!
//! ```text
//! L = (1/N) sum_s -log softmax(z_s)[y_s] = (1/N) sum_s ( log sum_j e^{z_sj} - z_{s,y_s} )
//! ```
//!
//! computed as `(max_j z_sj - z_{s,y_s}) + log sum_j e^{z_sj - max_j z_sj}` (log-sum-exp),
//! which never overflows in an intermediate step: it is finite whenever the exact loss fits
//! in `f32`, which it always does for logits within `±1e30`. Beyond that the exact loss can
//! exceed `f32::MAX` (logits `[3e38, -3e38]` with label 1 have a loss of `6e38`): then the
//! functions below return [`Error::NonFinite`] (`"loss"`, the sample's index, or `None` when
//! the samples' losses are finite but their sum is not), as the model's methods do, rather
//! than `Ok(inf)`. Keras's
//! `SparseCategoricalCrossentropy()` on softmax outputs clips probabilities to
//! `[1e-7, 1 - 1e-7]`, which caps a sample's loss at about 16.1; this crate does not clip, so
//! the two agree wherever the true class has probability above `1e-7` (the conformance test
//! replays TensorFlow's Iris run within 1e-5).
//!
//! # The fused gradient
//! With `p_s = softmax(z_s)` and `onehot(y_s)`:
//!
//! ```text
//! dL/dz_sj = (p_sj - [j == y_s]) / N
//! ```
//!
//! since `d(-log p_y)/dz_j = p_j - [j == y]` (softmax's Jacobian `p_i (delta_ij - p_j)`
//! contracted with `-1/p_y` at `i = y`). Fusing the two avoids the division by `p_y`, which
//! underflows.

use crate::activation::row_max;
use crate::error::{Error, check_labels, check_rows, same_len};
use crate::lanes::{self, LANES, Lane};

/// Mean sparse categorical cross-entropy of `logits` against `labels`.
///
/// # Errors
/// [`Error::EmptyBatch`]; [`Error::LengthMismatch`] if `labels.len() != logits.len()`;
/// [`Error::LabelOutOfRange`] if a label is `>= O`; [`Error::NonFinite`] (`"logit"`) if a
/// logit is NaN or infinite, (`"loss"`, index of the sample) if finite logits so far apart
/// that a sample's loss overflows `f32` (see the [module docs](self)), or (`"loss"`, `None`)
/// if the sum over the batch overflows.
///
/// # Examples
/// ```
/// // Two classes with equal logits: the loss is ln 2 whatever the label.
/// let loss = fusedprop::sparse_categorical_cross_entropy(&[[0.5, 0.5]], &[1]).unwrap();
/// assert!((loss - core::f32::consts::LN_2).abs() < 1e-7);
///
/// // The exact loss of these finite logits, 6e38, does not fit in f32: an error, not inf.
/// let e = fusedprop::sparse_categorical_cross_entropy(&[[3e38, -3e38]], &[1]).unwrap_err();
/// assert_eq!(e, fusedprop::Error::NonFinite { what: "loss", index: Some(0) });
/// ```
pub fn sparse_categorical_cross_entropy<const O: usize>(
    logits: &[[f32; O]],
    labels: &[u32],
) -> Result<f32, Error> {
    check_batch(logits, labels)?;
    checked_loss(logits, labels)
}

/// The mean loss, with every sample's loss and their sum checked to be finite: the one
/// vector test per block fails only where some lane is not finite.
fn checked_loss<const O: usize>(logits: &[[f32; O]], labels: &[u32]) -> Result<f32, Error> {
    let mut z = [lanes::zero(); O];
    let mut total = lanes::zero();
    for (b, (zs, ls)) in logits.chunks(LANES).zip(labels.chunks(LANES)).enumerate() {
        lanes::load_rows(zs, &mut z);
        let l = xent_block(&mut z, ls, 0.0, false);
        if !lanes::all_finite(l)
            && let Some(s) = lanes::first_non_finite(l, ls.len())
        {
            return Err(Error::NonFinite {
                what: "loss",
                index: Some(b * LANES + s),
            });
        }
        total += l;
    }
    let sum = lanes::sum(total);
    if !sum.is_finite() {
        return Err(Error::NonFinite {
            what: "loss",
            index: None,
        });
    }
    Ok(sum / logits.len() as f32)
}

/// The fused softmax + cross-entropy gradient: writes `dlogits[s][j] = (p_sj - [j == y_s]) / N`
/// and returns the mean loss, as [`sparse_categorical_cross_entropy`] computes it.
///
/// # Errors
/// As [`sparse_categorical_cross_entropy`] (a loss that overflows `f32` included), and
/// [`Error::LengthMismatch`] if `dlogits` has another length than `logits`. On error
/// `dlogits` is not written.
///
/// # Examples
/// ```
/// let mut d = [[0.0; 2]; 2];
/// let loss = fusedprop::softmax_cross_entropy_backward(&[[0.0, 0.0]; 2], &[0, 1], &mut d)
///     .unwrap();
/// assert_eq!(d, [[-0.25, 0.25], [0.25, -0.25]]); // (p - onehot) / N with p = 0.5, N = 2
/// assert!((loss - core::f32::consts::LN_2).abs() < 1e-7);
/// ```
pub fn softmax_cross_entropy_backward<const O: usize>(
    logits: &[[f32; O]],
    labels: &[u32],
    dlogits: &mut [[f32; O]],
) -> Result<f32, Error> {
    let max_abs = check_batch(logits, labels)?;
    same_len("logit gradients", logits.len(), dlogits.len())?;
    // Logits within ±1e30 give each sample a loss below 2e30 + ln O, and a sum of up to 2^24
    // of them is finite. Further out, the losses are computed and checked in a first pass,
    // so that an error leaves `dlogits` unwritten (the loss comes out the same bits).
    if max_abs > 1e30 || logits.len() > 1 << 24 {
        checked_loss(logits, labels)?;
    }
    let inv_n = 1.0 / logits.len() as f32;
    let mut z = [lanes::zero(); O];
    let mut total = lanes::zero();
    for ((zs, ls), ds) in logits
        .chunks(LANES)
        .zip(labels.chunks(LANES))
        .zip(dlogits.chunks_mut(LANES))
    {
        lanes::load_rows(zs, &mut z);
        total += xent_block(&mut z, ls, inv_n, true);
        lanes::store_rows(&z, ds);
    }
    Ok(lanes::sum(total) / logits.len() as f32)
}

/// The checks before any work; returns the largest `|logit|`.
fn check_batch<const O: usize>(logits: &[[f32; O]], labels: &[u32]) -> Result<f32, Error> {
    if logits.is_empty() {
        return Err(Error::EmptyBatch);
    }
    same_len("labels", logits.len(), labels.len())?;
    check_labels(labels, O)?;
    check_rows("logit", logits)?;
    Ok(logits.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs())))
}

/// Cross-entropy of one block of logits: returns each sample's loss (0 in lanes past
/// `labels.len()`), and if `grad`, replaces `z` by `(p - onehot) * inv_n` (0 in those lanes).
///
/// Labels must be `< O`. This is the one implementation behind the public loss functions
/// and the models' training steps.
#[inline(always)]
pub(crate) fn xent_block<const O: usize>(
    z: &mut [Lane; O],
    labels: &[u32],
    inv_n: f32,
    grad: bool,
) -> Lane {
    let valid = lanes::valid(labels.len());
    let (add, s) = xent_lanes(z, lanes::labels(labels), valid, inv_n, grad);
    (add + lanes::ln(s)) * valid
}

/// [`xent_block`] with the labels already in a lane (`-1` for padding) and the mask of the
/// valid lanes (`1.0` or `0.0`), returning each sample's loss in two parts, `m - z_y` (0 in
/// padded lanes) and `s`, the sum of `e^(z - m)` (in `[1, O]` for finite logits; `O` in
/// padded lanes), the loss being `(m - z_y) + ln s`: a caller summing many blocks' losses
/// takes one logarithm of the product of their `s` (`driver::TileLoss`).
///
/// Padding lanes never influence a result: their logits are the model's response to a zero
/// input, which can overflow (huge biases) and would make their loss and gradient NaN, and
/// `NaN * 0` is NaN. So a block with padding lanes first sets their logits to 0; their loss
/// and gradient are then exactly 0. This is the one place where padding is masked for the
/// loss, its sum over the batch, and the output gradient (issue 9).
#[inline(always)]
pub(crate) fn xent_lanes<const O: usize>(
    z: &mut [Lane; O],
    y: Lane,
    valid: Lane,
    inv_n: f32,
    grad: bool,
) -> (Lane, Lane) {
    let [r] = xent_lanes_n::<O, 1>([z], [y], [valid], inv_n, grad);
    r
}

/// [`xent_lanes`] of `NB` blocks at once, each step written for every block before the next
/// step: the same operations on each block, so bit for bit the same results.
// PERF: one block is a chain of about 25 dependent operations (max, exp's polynomial, sum,
// division, scaling), about 70 cycles of latency for 40 of throughput on Zen 4, and its
// hundred instructions fill the FP scheduler before the next block's can start: a tile's
// loss pass ran at under one instruction a cycle. Two blocks in one basic block let the
// scheduler interleave two chains.
#[inline(always)]
#[allow(
    clippy::needless_range_loop,
    reason = "class-major, block-minor order is the point: each step for every block"
)]
pub(crate) fn xent_lanes_n<const O: usize, const NB: usize>(
    z: [&mut [Lane; O]; NB],
    y: [Lane; NB],
    valid: [Lane; NB],
    inv_n: f32,
    grad: bool,
) -> [(Lane, Lane); NB] {
    let mut z = z;
    // PERF: a full block (all but the last of a batch) pays one compare; only a partial
    // block pays the O selects.
    for (zb, &vb) in z.iter_mut().zip(&valid) {
        if !lanes::all_valid(vb) {
            for v in zb.iter_mut() {
                *v = lanes::zero_padding(*v, vb);
            }
        }
    }
    let m: [Lane; NB] = core::array::from_fn(|b| row_max(z[b]));
    let mut z_y = [lanes::zero(); NB];
    for j in 0..O {
        for b in 0..NB {
            z_y[b] = lanes::select(lanes::class_mask(y[b], j), z[b][j], z_y[b]);
        }
    }
    // PERF: `z - m <= 0`, so with SIMD lanes `math::exp_neg`, which skips `lanes::exp`'s
    // overflow, infinity and NaN cases (NaN stays NaN, `-inf` gives 0): about half the
    // instructions, 6% of the Iris step. The narrow lane's `lanes::exp` is a loop of scalar
    // exponentials already, and the vector formula inlined there costs 2 KB of flash and
    // 2.7 KB of stack on a Cortex-M4F (examples/cortex-m's budget).
    let mut s = [lanes::zero(); NB];
    for j in 0..O {
        for b in 0..NB {
            let v = &mut z[b][j];
            *v = if lanes::NARROW {
                lanes::exp(*v - m[b])
            } else {
                crate::math::exp_neg(*v - m[b])
            };
            s[b] += *v;
        }
    }
    let loss: [Lane; NB] = core::array::from_fn(|b| (m[b] - z_y[b]) * valid[b]);
    if grad {
        // PERF: one division per block instead of one per class (a 16-lane division is
        // slow on every x86 core); `p = e * (1/s)` differs from `e / s` by at most an ulp.
        let scale: [Lane; NB] = core::array::from_fn(|b| valid[b] * lanes::splat(inv_n));
        let inv_s: [Lane; NB] = core::array::from_fn(|b| lanes::div(lanes::splat(1.0), s[b]));
        for j in 0..O {
            for b in 0..NB {
                let v = &mut z[b][j];
                let p = *v * inv_s[b];
                let t = lanes::select(lanes::class_mask(y[b], j), p - lanes::splat(1.0), p);
                *v = t * scale[b];
            }
        }
    }
    core::array::from_fn(|b| (loss[b], s[b]))
}
