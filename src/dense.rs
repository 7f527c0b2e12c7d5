//! Dense (fully connected) layers: `y = W x + b`, its gradients, and the fused SGD update.
//!
//! # Layout
//! `W` is row-major `[[f32; I]; O]`: one row per output neuron, `W[j][k]` the weight from
//! input `k` to output `j`. That is PyTorch's `nn.Linear.weight` (`[out][in]`) and the
//! transpose of a Keras `Dense` kernel (`[inputs][outputs]`): see [`Dense::from_keras`].
//!
//! # Gradients
//! For one sample with `y_j = b_j + sum_k W_jk x_k` and an upstream gradient `dy_j = dL/dy_j`:
//!
//! ```text
//! dL/dW_jk = dy_j * x_k          (summed over the samples of the batch)
//! dL/db_j  = dy_j                (summed over the samples)
//! dL/dx_k  = sum_j W_jk * dy_j   (per sample: the input gradient, W^T dy)
//! ```
//!
//! The batch mean is not taken here: the loss kernels already scale `dy` by `1/N`
//! ([`softmax_cross_entropy_backward`](crate::loss::softmax_cross_entropy_backward)), so the
//! sums above are the gradients of the mean loss.
//!
//! # The fused update
//! [`Dense::backward_sgd`] applies `W -= lr * dL/dW` in the same pass that finishes each
//! weight's gradient: the sum over samples of a group of sixteen weights is reduced, and the
//! reduced value goes straight into the weight it belongs to, never into a gradient buffer
//! that a second sweep would read.

use crate::activation::{Activation, ConstActivation, Linear};
use crate::driver::TILE_BLOCKS;
use crate::error::{Error, check_rows, same_len};
use crate::lanes::{self, LANES, Lane, TILE_B, TILE_R};
use crate::optim::{ConstZero, Rule, Sgd};
use crate::rng::{SplitMix64, glorot_limit};

/// A dense layer from `I` inputs to `O` outputs: weights `[[f32; I]; O]` and biases `[f32; O]`.
///
/// # Examples
/// ```
/// use fusedprop::Dense;
/// let layer = Dense::<2, 1>::from_weights([[1.0, -2.0]], [0.5]).unwrap();
/// let mut y = [0.0];
/// layer.forward(&[3.0, 1.0], &mut y);
/// assert_eq!(y, [1.5]); // 1*3 - 2*1 + 0.5
/// ```
///
/// The activation `A` is applied to `W x + b` and fused into the layer's forward and backward
/// passes when the layer is part of a [`Network`](crate::Network) ([`Linear`] by default: the
/// batch functions of this type, such as [`Dense::forward`], are for linear layers).
#[derive(Clone, PartialEq)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Dense<const I: usize, const O: usize, A = Linear> {
    w: [[f32; I]; O],
    b: [f32; O],
    act: A,
}

/// The gradients of a [`Dense`] layer's parameters, in the layer's layout.
#[derive(Clone, PartialEq, Debug)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct DenseGrads<const I: usize, const O: usize> {
    /// `dL/dW`, `[[f32; I]; O]` like the weights.
    pub w: [[f32; I]; O],
    /// `dL/db`.
    pub b: [f32; O],
}

impl<const I: usize, const O: usize> DenseGrads<I, O> {
    /// All zero; usable in a `static` and for in-place construction.
    pub const ZERO: Self = Self {
        w: [[0.0; I]; O],
        b: [0.0; O],
    };
}

impl<const I: usize, const O: usize> ConstZero for DenseGrads<I, O> {
    const ZERO: Self = Self::ZERO;
}

impl<const I: usize, const O: usize> Default for DenseGrads<I, O> {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Whether a kernel overwrites its output or adds to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulate {
    /// The output is written without being read.
    Overwrite,
    /// The result is added to what the output holds.
    Add,
}

impl<const I: usize, const O: usize, A: Activation> core::fmt::Debug for Dense<I, O, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dense")
            .field("inputs", &I)
            .field("outputs", &O)
            .field("activation", &self.act)
            .field("w", &self.w)
            .field("b", &self.b)
            .finish()
    }
}

impl<const I: usize, const O: usize, A: ConstActivation> Default for Dense<I, O, A> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<const I: usize, const O: usize, A: ConstActivation> Dense<I, O, A> {
    /// A layer with all weights and biases zero. A `const`, so a layer (or a model built from
    /// layers) can live in a `static` or be written in place by [`Dense::init_glorot`].
    /// (For [`LeakyRelu`](crate::LeakyRelu), whose slope has no default, use
    /// [`Dense::zero_with`].)
    pub const ZERO: Self = Self::zero_with(A::DEFAULT);

    /// Glorot-uniform weights (Keras's default for `Dense`): uniform in
    /// `±sqrt(6 / (I + O))`, biases zero, drawn from `rng` row by row. The same seed gives
    /// the same weights on every target.
    #[must_use]
    pub fn glorot(rng: &mut SplitMix64) -> Self {
        let mut layer = Self::ZERO;
        layer.init_glorot(rng);
        layer
    }
}

impl<const I: usize, const O: usize, A: Activation> Dense<I, O, A> {
    /// Number of trainable parameters, `I * O + O`.
    pub const PARAMS: usize = I * O + O;

    /// A layer with all weights and biases zero and activation `act`, in a `const` context.
    ///
    /// ```
    /// use fusedprop::{Dense, LeakyRelu};
    /// const LAYER: Dense<4, 8, LeakyRelu> = Dense::zero_with(LeakyRelu::new_const(0.2));
    /// assert_eq!(LAYER.activation().slope(), 0.2);
    /// ```
    #[must_use]
    pub const fn zero_with(act: A) -> Self {
        Self {
            w: [[0.0; I]; O],
            b: [0.0; O],
            act,
        }
    }

    /// A layer with the given weights (this crate's layout, `[out][in]`), biases and
    /// activation, in a `const` context: for a trained model baked into a `static`. The
    /// values are not checked here; [`Network::check_weights`](crate::Network) checks a whole
    /// network.
    #[must_use]
    pub const fn from_parts(w: [[f32; I]; O], b: [f32; O], act: A) -> Self {
        Self { w, b, act }
    }

    /// The activation.
    #[must_use]
    #[inline]
    pub fn activation(&self) -> &A {
        &self.act
    }

    /// [`Dense::glorot`] in place, for layers too large to move by value.
    pub fn init_glorot(&mut self, rng: &mut SplitMix64) {
        let limit = glorot_limit(I, O);
        for row in &mut self.w {
            for w in row {
                *w = rng.uniform(limit);
            }
        }
        self.b = [0.0; O];
    }
}

impl<const I: usize, const O: usize> Dense<I, O> {
    /// A layer from weights in this crate's layout (`[[f32; I]; O]`, PyTorch's `[out][in]`).
    ///
    /// # Errors
    /// [`Error::NonFinite`] (`what: "weight"`, index in `w` then `b` order, row-major) if a
    /// weight or bias is NaN or infinite.
    pub fn from_weights(w: [[f32; I]; O], b: [f32; O]) -> Result<Self, Error> {
        let layer = Self { w, b, act: Linear };
        layer.check_finite(0)?;
        Ok(layer)
    }

    /// A layer from a Keras `Dense` kernel, `[inputs][outputs]` (`layer.get_weights()[0]`),
    /// and its bias.
    ///
    /// # Errors
    /// As [`Dense::from_weights`].
    pub fn from_keras(kernel: &[[f32; O]; I], b: [f32; O]) -> Result<Self, Error> {
        let mut layer = Self {
            w: [[0.0; I]; O],
            b,
            act: Linear,
        };
        for (k, row) in kernel.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                layer.w[j][k] = v;
            }
        }
        layer.check_finite(0)?;
        Ok(layer)
    }
}

impl<const I: usize, const O: usize, A> Dense<I, O, A> {
    /// The same weights and biases with activation `act`.
    ///
    /// ```
    /// use fusedprop::{Dense, Relu};
    /// let linear = Dense::<2, 1>::from_weights([[1.0, -1.0]], [0.5])?;
    /// let relu: Dense<2, 1, Relu> = linear.clone().with_activation(Relu);
    /// assert_eq!(relu.weights(), linear.weights());
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    #[must_use]
    pub fn with_activation<B>(self, act: B) -> Dense<I, O, B> {
        Dense {
            w: self.w,
            b: self.b,
            act,
        }
    }
}

impl<const I: usize, const O: usize, A: Activation> Dense<I, O, A> {
    /// The weights, `[[f32; I]; O]`.
    #[must_use]
    #[inline]
    pub fn weights(&self) -> &[[f32; I]; O] {
        &self.w
    }

    /// The biases.
    #[must_use]
    #[inline]
    pub fn bias(&self) -> &[f32; O] {
        &self.b
    }

    /// The weights as a Keras kernel, `[inputs][outputs]`.
    #[must_use]
    pub fn keras_kernel(&self) -> [[f32; O]; I] {
        let mut k = [[0.0; O]; I];
        for (j, row) in self.w.iter().enumerate() {
            for (i, &v) in row.iter().enumerate() {
                k[i][j] = v;
            }
        }
        k
    }

    /// Checks every parameter is finite; `offset` is added to the index in the error.
    pub(crate) fn check_finite(&self, offset: usize) -> Result<(), Error> {
        let flat = self.w.iter().flatten().chain(self.b.iter());
        for (i, v) in flat.enumerate() {
            if !v.is_finite() {
                return Err(Error::NonFinite {
                    what: "weight",
                    index: Some(offset + i),
                });
            }
        }
        Ok(())
    }

    /// The largest `|w|` and `|b|` of the layer.
    // PERF: runs before every training step. For finite floats with the sign bit cleared the
    // integer order of the bits is the numeric order, and an integer maximum vectorizes
    // (`f32::max` with its NaN rules does not). The weights are finite by construction; a
    // NaN would come out as NaN, which refuses the step.
    pub(crate) fn max_abs(&self) -> f32 {
        let bits = |m: u32, v: &f32| m.max(v.to_bits() & 0x7fff_ffff);
        let m = self.w.as_flattened().iter().fold(0u32, bits);
        f32::from_bits(self.b.iter().fold(m, bits))
    }
}

impl<const I: usize, const O: usize> Dense<I, O> {
    /// `y = W x + b` for one sample.
    ///
    /// Runs the same block kernel as the batch functions, so one sample gives bit for bit
    /// what it would give inside a batch.
    #[inline]
    pub fn forward(&self, x: &[f32; I], y: &mut [f32; O]) {
        let mut xl = [lanes::zero(); I];
        let mut yl = [lanes::zero(); O];
        lanes::load_rows(core::slice::from_ref(x), &mut xl);
        self.forward_block(&xl, &mut yl);
        lanes::store_rows(&yl, core::slice::from_mut(y));
    }

    /// `y[s] = W x[s] + b` for every sample `s` of a batch of any length.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if `y.len() != x.len()`.
    pub fn forward_batch(&self, x: &[[f32; I]], y: &mut [[f32; O]]) -> Result<(), Error> {
        same_len("outputs", x.len(), y.len())?;
        let mut xl = [lanes::zero(); I];
        let mut yl = [lanes::zero(); O];
        for (xs, ys) in x.chunks(LANES).zip(y.chunks_mut(LANES)) {
            lanes::load_rows(xs, &mut xl);
            self.forward_block(&xl, &mut yl);
            lanes::store_rows(&yl, ys);
        }
        Ok(())
    }

    /// Gradients of a batch: `dL/dW` and `dL/db` into `grads` (overwritten or added to, as
    /// `mode` says), and `dL/dx` into `dx` if given. `dy[s]` is `dL/dy` for sample `s`
    /// (already scaled by `1/N` for a mean loss).
    ///
    /// # Errors
    /// [`Error::EmptyBatch`] for an empty batch; [`Error::LengthMismatch`] if `dy` or `dx`
    /// has another length than `x`. On error nothing is written.
    pub fn backward(
        &self,
        x: &[[f32; I]],
        dy: &[[f32; O]],
        grads: &mut DenseGrads<I, O>,
        mode: Accumulate,
        mut dx: Option<&mut [[f32; I]]>,
    ) -> Result<(), Error> {
        if x.is_empty() {
            return Err(Error::EmptyBatch);
        }
        same_len("output gradients", x.len(), dy.len())?;
        if let Some(dx) = dx.as_deref() {
            same_len("input gradients", x.len(), dx.len())?;
        }
        let mut xl = [[lanes::zero(); I]; 1];
        let mut dyl = [[lanes::zero(); O]; 1];
        let mut dxl = [lanes::zero(); I];
        for (block, (xs, dys)) in x.chunks(LANES).zip(dy.chunks(LANES)).enumerate() {
            lanes::load_rows(xs, &mut xl[0]);
            lanes::load_rows(dys, &mut dyl[0]);
            if let Some(dx) = dx.as_deref_mut() {
                self.backward_input_block(&dyl[0], &mut dxl);
                let start = block * LANES;
                lanes::store_rows(&dxl, &mut dx[start..start + xs.len()]);
            }
            let sink = if block == 0 && mode == Accumulate::Overwrite {
                Sink::<'_, I, O, Sgd>::Store(grads)
            } else {
                Sink::Add(grads)
            };
            param_grads_tile(&xl, None, &dyl, sink);
        }
        Ok(())
    }

    /// One SGD step on this layer from a batch: the gradients of [`Dense::backward`] are
    /// applied as `W -= lr * dL/dW`, `b -= lr * dL/db` in the pass that completes them. `dx`
    /// (if given) receives `dL/dx` computed with the weights *before* the update, as the
    /// layer below needs. `scratch` holds the partial sums of batches longer than sixteen
    /// samples; its contents on return are unspecified.
    ///
    /// # Errors
    /// As [`Dense::backward`], [`Error::NonFinite`] if an input or output gradient is not
    /// finite, and [`Error::UpdateOverflow`] if the gradient's bound says an update could
    /// overflow `f32`. On error the layer is unchanged.
    pub fn backward_sgd(
        &mut self,
        x: &[[f32; I]],
        dy: &[[f32; O]],
        mut dx: Option<&mut [[f32; I]]>,
        sgd: &Sgd,
        scratch: &mut DenseGrads<I, O>,
    ) -> Result<(), Error> {
        if x.is_empty() {
            return Err(Error::EmptyBatch);
        }
        same_len("output gradients", x.len(), dy.len())?;
        if let Some(dx) = dx.as_deref() {
            same_len("input gradients", x.len(), dx.len())?;
        }
        check_rows("input", x)?;
        check_rows("output gradient", dy)?;
        // |dW_jk| <= sum_s |dy_sj| |x_sk|: bound it before touching a weight.
        let mut bound = 0.0f64;
        let mut max_x = 0.0f64;
        for (xs, dys) in x.iter().zip(dy) {
            max_x = xs.iter().fold(max_x, |m, v| m.max(f64::from(v.abs())));
            bound += dys.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        }
        let grad_bound = bound * max_x.max(1.0);
        if !update_is_safe(self.max_abs(), grad_bound, sgd.learning_rate()) {
            return Err(Error::UpdateOverflow);
        }
        let blocks = x.len().div_ceil(LANES);
        let lr = sgd.learning_rate();
        let mut xl = [[lanes::zero(); I]; 1];
        let mut dyl = [[lanes::zero(); O]; 1];
        let mut dxl = [lanes::zero(); I];
        for (block, (xs, dys)) in x.chunks(LANES).zip(dy.chunks(LANES)).enumerate() {
            lanes::load_rows(xs, &mut xl[0]);
            lanes::load_rows(dys, &mut dyl[0]);
            if let Some(dx) = dx.as_deref_mut() {
                self.backward_input_block(&dyl[0], &mut dxl);
                let start = block * LANES;
                lanes::store_rows(&dxl, &mut dx[start..start + xs.len()]);
            }
            let sink = if block + 1 == blocks {
                let prior = if blocks > 1 { Some(&*scratch) } else { None };
                Sink::Update {
                    w: &mut self.w,
                    b: &mut self.b,
                    state: &mut [],
                    step: &lr,
                    prior,
                }
            } else if block == 0 {
                Sink::<'_, I, O, Sgd>::Store(scratch)
            } else {
                Sink::Add(scratch)
            };
            param_grads_tile(&xl, None, &dyl, sink);
        }
        Ok(())
    }
}

impl<const I: usize, const O: usize, A: Activation> Dense<I, O, A> {
    /// `z[j] = b[j] + sum_k W[j][k] x[k]` for one block of sixteen samples.
    // PERF: outputs are produced four at a time so that four independent FMA chains hide the
    // FMA latency (4 cycles on Zen 4) when `I` is long; each `x[k]` lane is loaded once per
    // four outputs and each weight is a broadcast from memory (folded into the FMA). The
    // last `O % 4` outputs run together in one pass (3 chains for Iris's output layer), not
    // one output at a time.
    #[inline]
    pub(crate) fn forward_block(&self, x: &[Lane; I], z: &mut [Lane; O]) {
        let mut j = 0;
        while j + 4 <= O {
            self.forward_rows::<4>(x, z, j);
            j += 4;
        }
        match O - j {
            3 => self.forward_rows::<3>(x, z, j),
            2 => self.forward_rows::<2>(x, z, j),
            1 => self.forward_rows::<1>(x, z, j),
            _ => {}
        }
    }

    /// Outputs `j..j + JN` of [`Dense::forward_block`], `JN` independent chains over `k`.
    #[inline(always)]
    fn forward_rows<const JN: usize>(&self, x: &[Lane; I], z: &mut [Lane; O], j: usize) {
        let mut acc: [Lane; JN] = core::array::from_fn(|jj| lanes::splat(self.b[j + jj]));
        for (k, &xk) in x.iter().enumerate() {
            for (jj, a) in acc.iter_mut().enumerate() {
                *a = lanes::fma(lanes::splat(self.w[j + jj][k]), xk, *a);
            }
        }
        z[j..j + JN].copy_from_slice(&acc);
    }

    /// `dx[k] = sum_j W[j][k] dz[j]` for one block of samples.
    // PERF: four inputs at a time, for four independent FMA chains over `j`.
    #[inline]
    pub(crate) fn backward_input_block(&self, dz: &[Lane; O], dx: &mut [Lane; I]) {
        self.backward_input_block_with(dz, dx, |d, _, g| *d = g);
    }

    /// [`Dense::backward_input_block`] with each result `g` for input `k` written by
    /// `put(&mut dx[k], k, g)`, so that a caller that combines it with what `dx` held needs no
    /// `[Lane; I]` temporary (2 KiB of a Cortex-M4F's stack for 32 inputs).
    #[inline(always)]
    pub(crate) fn backward_input_block_with(
        &self,
        dz: &[Lane; O],
        dx: &mut [Lane; I],
        mut put: impl FnMut(&mut Lane, usize, Lane),
    ) {
        let mut k = 0;
        // One input at a time on the narrow lane (the smallest code; the same sums).
        while !lanes::NARROW && k + 4 <= I {
            let mut a0 = lanes::zero();
            let mut a1 = lanes::zero();
            let mut a2 = lanes::zero();
            let mut a3 = lanes::zero();
            for (wj, &d) in self.w.iter().zip(dz) {
                a0 = lanes::fma(lanes::splat(wj[k]), d, a0);
                a1 = lanes::fma(lanes::splat(wj[k + 1]), d, a1);
                a2 = lanes::fma(lanes::splat(wj[k + 2]), d, a2);
                a3 = lanes::fma(lanes::splat(wj[k + 3]), d, a3);
            }
            put(&mut dx[k], k, a0);
            put(&mut dx[k + 1], k + 1, a1);
            put(&mut dx[k + 2], k + 2, a2);
            put(&mut dx[k + 3], k + 3, a3);
            k += 4;
        }
        while k < I {
            let mut a = lanes::zero();
            for (wj, &d) in self.w.iter().zip(dz) {
                a = lanes::fma(lanes::splat(wj[k]), d, a);
            }
            put(&mut dx[k], k, a);
            k += 1;
        }
    }

    /// `y = W x + b` for one sample, vectorized over the inputs of each output (the latency
    /// path of [`Mlp::predict_one`](crate::Mlp::predict_one)); sums in another order than
    /// [`Dense::forward`].
    // PERF: each output's dot product runs over chunks of 16 inputs (the last one
    // zero-padded) into its own accumulator, and sixteen outputs' accumulators are reduced
    // together by `lanes::sum16` (up to four by `lanes::sum4`), instead of FMAs on lanes
    // holding one real sample. Layers of four inputs (Iris's hidden layer) have a path of
    // their own, below. Inlined so that `predict_one` keeps the hidden layer in registers.
    #[inline(always)]
    pub(crate) fn forward_one<const RELU: bool>(&self, x: &[f32; I], y: &mut [f32; O]) {
        if I == 4 && O.is_multiple_of(16) && lanes::FEW_REGS {
            // Microcontrollers, and builds whose registers hold few lanes: the sums below one
            // output at a time, in the same order and roundings (products, then
            // `(p0 + p1) + (p2 + p3)`, then the bias), without the five lanes (320 bytes) of
            // stack or the 512-bit shuffles, which AVX2 and SSE2 emulate in halves.
            for ((yv, row), &b) in y.iter_mut().zip(&self.w).zip(&self.b) {
                let v = b + ((row[0] * x[0] + row[1] * x[1]) + (row[2] * x[2] + row[3] * x[3]));
                *yv = if !RELU || v > 0.0 || v.is_nan() {
                    v
                } else {
                    0.0
                };
            }
            return;
        }
        if I == 4 && O.is_multiple_of(16) {
            // PERF: rows of four inputs (Iris's hidden layer): the weights are read as they
            // lie, sixteen floats (four rows) a vector, multiplied by the input repeated four
            // times, and the groups of four products are summed by two levels of in-chunk
            // pair shuffles for four vectors at once; a permute puts the sixteen outputs in
            // order. Eleven vector operations per sixteen outputs, against 64 scalar FMAs.
            let x4 = lanes::repeat4(x);
            let flat = self.w.as_flattened();
            for (g, (yg, bg)) in y.chunks_mut(16).zip(self.b.chunks(16)).enumerate() {
                let p: [Lane; 4] =
                    core::array::from_fn(|v| lanes::load16(&flat[64 * g + 16 * v..][..16]) * x4);
                let mut v = lanes::load16(bg) + lanes::sum4x4(&p);
                if RELU {
                    v = lanes::relu(v);
                }
                lanes::store16(v, yg);
            }
            return;
        }
        if I < 8 {
            // PERF: with fewer than 8 inputs a lane per output is mostly zero padding, and the
            // 16-way reduction costs more than the products: plain scalar dot products (4-32-3's
            // hidden layer: 74 ns -> see the `inference` bench) are faster.
            for ((yv, row), &b) in y.iter_mut().zip(&self.w).zip(&self.b) {
                let mut v = b;
                for (w, xv) in row.iter().zip(x) {
                    v += w * xv;
                }
                *yv = if !RELU || v > 0.0 || v.is_nan() {
                    v
                } else {
                    0.0
                };
            }
            return;
        }
        let full = I / 16;
        let tail = I % 16;
        let xt = lanes::load_partial(&x[16 * full..]);
        let flat = self.w.as_flattened();
        let mut j = 0;
        // Output `jr`'s sixteen partial sums: lane `l` adds the products of inputs `l`,
        // `16 + l`, ... in that order.
        let row_sums = |jr: usize| {
            let row = &self.w[jr];
            let mut s = lanes::zero();
            for c in 0..full {
                let cr = 16 * c..16 * c + 16;
                s = lanes::fma(lanes::load16(&row[cr.clone()]), lanes::load16(&x[cr]), s);
            }
            if tail > 0 {
                // PERF: a full 16-float load that runs into the next rows (their products
                // with the zero lanes of `xt` are zero; weights are finite) instead of
                // assembling a padded lane on the stack, which stalls store forwarding.
                let start = jr * I + 16 * full;
                let w = if start + 16 <= flat.len() {
                    lanes::load16(&flat[start..start + 16])
                } else {
                    lanes::load_partial(&flat[start..start + tail])
                };
                s = lanes::fma(w, xt, s);
            }
            s
        };
        if lanes::FEW_REGS {
            // Microcontrollers, and builds whose registers hold fewer than 32 lanes: each
            // output reduced as soon as its sums are known, with no sixteen accumulators (1 KiB
            // of stack; spilled with AVX2) and no transposing reduction; bit for bit
            // the values below (`sum16` and `sum4` give `lanes::sum` of each accumulator,
            // and the vector ReLU is this one).
            for (jr, (yv, &b)) in y.iter_mut().zip(&self.b).enumerate() {
                let v = b + lanes::sum(row_sums(jr));
                *yv = if !RELU || v > 0.0 || v.is_nan() {
                    v
                } else {
                    0.0
                };
            }
            return;
        }
        while j < O {
            let rn = (O - j).min(16);
            let mut acc = [lanes::zero(); 16];
            for (r, a) in acc.iter_mut().enumerate().take(rn) {
                *a = row_sums(j + r);
            }
            if rn < 4 {
                // PERF: a few outputs (4-32-3's output layer) are cheaper reduced by the
                // four-way tree than through the 16-way transposing reduction.
                let sums = lanes::sum4(&[acc[0], acc[1], acc[2], acc[3]]);
                for r in 0..rn {
                    let v = self.b[j + r] + sums[r];
                    y[j + r] = if !RELU || v > 0.0 || v.is_nan() {
                        v
                    } else {
                        0.0
                    };
                }
                break;
            }
            let g = lanes::sum16(&acc);
            if rn == 16 {
                // PERF: one vector store, so the next layer's vector loads of `y` forward
                // from it (sixteen scalar stores would stall them).
                let mut v = lanes::load16(&self.b[j..j + 16]) + g;
                if RELU {
                    v = lanes::relu(v);
                }
                lanes::store16(v, &mut y[j..j + 16]);
            } else {
                let s = lanes::to_array(g);
                for ((yv, &b), &g) in y[j..j + rn].iter_mut().zip(&self.b[j..j + rn]).zip(&s) {
                    let v = b + g;
                    // ReLU with the crate's convention (+0 for v <= 0, NaN kept).
                    *yv = if !RELU || v > 0.0 || v.is_nan() {
                        v
                    } else {
                        0.0
                    };
                }
            }
            j += 16;
        }
    }

    /// The register tile of [`Dense::forward_blocks_with`]: `z` of outputs `j..j + R`, blocks
    /// `b..b + NB`.
    #[inline(always)]
    fn forward_acc<const R: usize, const NB: usize>(
        &self,
        x: &[[Lane; I]],
        b: usize,
        j: usize,
    ) -> [[Lane; R]; NB] {
        let xs: [&[Lane; I]; NB] = core::array::from_fn(|bb| &x[b + bb]);
        let rows: [&[f32; I]; R] = core::array::from_fn(|r| &self.w[j + r]);
        let mut acc: [[Lane; R]; NB] = [core::array::from_fn(|r| lanes::splat(self.b[j + r])); NB];
        for k in 0..I {
            for (r, row) in rows.iter().enumerate() {
                let w = lanes::splat(row[k]);
                for (a, xb) in acc.iter_mut().zip(&xs) {
                    a[r] = lanes::fma(w, xb[k], a[r]);
                }
            }
        }
        acc
    }

    /// [`Dense::forward_block`] for a run of blocks (bit for bit the same `z` per block), each
    /// `z[b][j]` handed to `ep(b, j, z)` as it leaves the register tile instead of being
    /// stored: a training tile applies its activation there, with no second pass over the
    /// outputs.
    // PERF: a register tile of 4 outputs x 4 blocks: per input `k` it loads one lane from
    // each of the 4 blocks and broadcasts 4 weights (folded into the FMAs) for 16
    // independent FMAs, half a load per FMA, and 16 chains cover the FMA latency (4 cycles)
    // on two FMA pipes twice over. One block at a time would reload each weight per block and
    // keep only 4 chains in flight (half the FMA rate). Each accumulator still starts at the
    // bias and adds `k` in ascending order, as `forward_block` does.
    #[inline(always)]
    pub(crate) fn forward_blocks_with(
        &self,
        x: &[[Lane; I]],
        mut ep: impl FnMut(usize, usize, Lane),
    ) {
        let nb = x.len();
        let mut b = 0;
        // A one-block tile (targets without SIMD, where code size counts) has no 4-block run.
        while TILE_BLOCKS >= 4 && b + TILE_B <= nb {
            self.forward_outputs::<TILE_B>(x, b, &mut ep);
            b += TILE_B;
        }
        // One block at a time, four outputs at a time (as `forward_block`), with no
        // `[Lane; O]` temporary on the stack; one output at a time on targets without SIMD
        // (the smallest code: the activation is inlined into each variant).
        while b < nb {
            if TILE_BLOCKS < 4 {
                for j in 0..O {
                    self.forward_ep::<1, 1>(x, b, j, &mut ep);
                }
            } else {
                self.forward_outputs::<1>(x, b, &mut ep);
            }
            b += 1;
        }
    }

    /// Every output of blocks `b..b + NB` of [`Dense::forward_blocks_with`], four at a time.
    #[inline(always)]
    fn forward_outputs<const NB: usize>(
        &self,
        x: &[[Lane; I]],
        b: usize,
        ep: &mut impl FnMut(usize, usize, Lane),
    ) {
        let mut j = 0;
        while j + TILE_R <= O {
            self.forward_ep::<TILE_R, NB>(x, b, j, ep);
            j += TILE_R;
        }
        match O - j {
            3 => self.forward_ep::<3, NB>(x, b, j, ep),
            2 => self.forward_ep::<2, NB>(x, b, j, ep),
            1 => self.forward_ep::<1, NB>(x, b, j, ep),
            _ => {}
        }
    }

    /// One register tile of [`Dense::forward_blocks_with`].
    #[inline(always)]
    fn forward_ep<const R: usize, const NB: usize>(
        &self,
        x: &[[Lane; I]],
        b: usize,
        j: usize,
        ep: &mut impl FnMut(usize, usize, Lane),
    ) {
        let acc = self.forward_acc::<R, NB>(x, b, j);
        for (bb, a) in acc.iter().enumerate() {
            for (r, &v) in a.iter().enumerate() {
                ep(b + bb, j + r, v);
            }
        }
    }

    /// [`Dense::backward_input_block`] for a run of blocks (bit for bit the same per block),
    /// with each result `g` written as `f(old, y, g)`, where `old` is what `dx` held and `y`
    /// the same element of `ys`: a network's layer below keeps its activation's derivative in
    /// `dx` (or, for ReLU, reads its outputs `ys`), and `f` is that activation's backward.
    /// `PLAIN` writes `g` itself (`f` and `ys` unused).
    // PERF: the same 4 x 4 register tile as `forward_blocks_with`, over (inputs, blocks): the
    // broadcast weights `W[j][k..k + 4]` are shared by 4 blocks. No statistics of the values
    // written: the refusal bound of a layer below the top one is closed-form
    // (`LayerKernel::check`); keeping a maximum and a finiteness chain here cost 5-8% of the
    // Iris step.
    #[inline(always)]
    pub(crate) fn backward_input_blocks_with<const PLAIN: bool>(
        &self,
        dz: &[[Lane; O]],
        dx: &mut [[Lane; I]],
        ys: &[[Lane; I]],
        f: impl Fn(Lane, Lane, Lane) -> Lane + Copy,
    ) {
        let nb = dz.len().min(dx.len());
        let mut b = 0;
        while b + TILE_B <= nb {
            let mut k = 0;
            while k + TILE_R <= I {
                self.backward_input_tile::<PLAIN, TILE_R, TILE_B>(dz, dx, ys, b, k, f);
                k += TILE_R;
            }
            match I - k {
                3 => self.backward_input_tile::<PLAIN, 3, TILE_B>(dz, dx, ys, b, k, f),
                2 => self.backward_input_tile::<PLAIN, 2, TILE_B>(dz, dx, ys, b, k, f),
                1 => self.backward_input_tile::<PLAIN, 1, TILE_B>(dz, dx, ys, b, k, f),
                _ => {}
            }
            b += TILE_B;
        }
        while b < nb {
            let y = if PLAIN { None } else { Some(&ys[b]) };
            self.backward_input_block_with(&dz[b], &mut dx[b], |d, k, g| {
                *d = match y {
                    Some(y) => f(*d, y[k], g),
                    None => g,
                };
            });
            b += 1;
        }
    }

    /// Inputs `k..k + R` of blocks `b..b + NB` of [`Dense::backward_input_blocks_with`].
    #[inline(always)]
    fn backward_input_tile<const PLAIN: bool, const R: usize, const NB: usize>(
        &self,
        dz: &[[Lane; O]],
        dx: &mut [[Lane; I]],
        ys: &[[Lane; I]],
        b: usize,
        k: usize,
        f: impl Fn(Lane, Lane, Lane) -> Lane,
    ) {
        let ds: [&[Lane; O]; NB] = core::array::from_fn(|bb| &dz[b + bb]);
        let mut acc = [[lanes::zero(); R]; NB];
        for (j, wj) in self.w.iter().enumerate() {
            for r in 0..R {
                let w = lanes::splat(wj[k + r]);
                for (a, db) in acc.iter_mut().zip(&ds) {
                    a[r] = lanes::fma(w, db[j], a[r]);
                }
            }
        }
        for (bb, a) in acc.iter().enumerate() {
            let d = &mut dx[b + bb][k..k + R];
            if PLAIN {
                d.copy_from_slice(a);
            } else {
                for ((d, &y), &g) in d.iter_mut().zip(&ys[b + bb][k..k + R]).zip(a) {
                    *d = f(*d, y, g);
                }
            }
        }
    }

    /// Mutable access for the crate's own fused updates.
    pub(crate) fn params_mut(&mut self) -> (&mut [[f32; I]; O], &mut [f32; O]) {
        (&mut self.w, &mut self.b)
    }
}

/// `true` if `|w| + lr * g_bound` stays well inside `f32` for every weight, so that an update
/// with gradients bounded by `g_bound` cannot produce a non-finite weight. The margin (1/16 of
/// `f32::MAX`) covers the rounding of sums of up to millions of terms.
pub(crate) fn update_is_safe(max_w: f32, grad_bound: f64, lr: f32) -> bool {
    let limit = f64::from(f32::MAX) / 16.0;
    let grad_ok = grad_bound.is_finite() && grad_bound < limit;
    let step = f64::from(lr) * grad_bound;
    grad_ok && (f64::from(max_w) + step) < limit
}

/// Where the reduced parameter gradients of a tile go.
pub(crate) enum Sink<'a, const I: usize, const O: usize, R: Rule = Sgd> {
    /// `g = partial`.
    Store(&'a mut DenseGrads<I, O>),
    /// `g += partial`.
    Add(&'a mut DenseGrads<I, O>),
    /// The fused update: `g = prior + partial` goes through the optimizer's rule into the
    /// weight (and the rule's state, laid out as the weights) and is never stored.
    Update {
        w: &'a mut [[f32; I]; O],
        b: &'a mut [f32; O],
        /// The rule's state, as its array type, so that the number of slots is known at
        /// compile time (SGD's zero slots cost nothing).
        state: &'a mut R::State<I, O>,
        step: &'a R::Step,
        prior: Option<&'a DenseGrads<I, O>>,
    },
}

impl<const I: usize, const O: usize, R: Rule> Sink<'_, I, O, R> {
    #[inline(always)]
    fn weight(&mut self, j: usize, k: usize, g: f32) {
        match self {
            Sink::Store(d) => d.w[j][k] = g,
            Sink::Add(d) => d.w[j][k] += g,
            Sink::Update {
                w,
                state,
                step,
                prior,
                ..
            } => {
                let g = match prior {
                    Some(p) => p.w[j][k] + g,
                    None => g,
                };
                let mut s = [0.0f32; 2];
                for (sv, st) in s.iter_mut().zip(state.as_ref()) {
                    *sv = st.w[j][k];
                }
                w[j][k] = R::apply(step, w[j][k], g, &mut s);
                for (sv, st) in s.iter().zip(state.as_mut()) {
                    st.w[j][k] = *sv;
                }
            }
        }
    }

    /// Sixteen weights `W[j][k..k + 16]` at once, lane `i` of `g` for `W[j][k + i]`: the same
    /// operations as sixteen calls of [`Sink::weight`], lane-wise (the rule is one generic
    /// function), so bit for bit the same values.
    #[inline(always)]
    fn weights16(&mut self, j: usize, k: usize, g: Lane) {
        self.flat16(j * I + k, g);
    }

    /// Sixteen weights at flat (row-major) index `f..f + 16` of `W`, which may span rows.
    #[inline(always)]
    fn flat16(&mut self, f: usize, g: Lane) {
        match self {
            Sink::Store(d) => lanes::store16(g, &mut d.w.as_flattened_mut()[f..f + 16]),
            Sink::Add(d) => {
                let r = &mut d.w.as_flattened_mut()[f..f + 16];
                lanes::store16(lanes::load16(r) + g, r);
            }
            Sink::Update {
                w,
                state,
                step,
                prior,
                ..
            } => {
                let g = match prior {
                    Some(p) => lanes::load16(&p.w.as_flattened()[f..f + 16]) + g,
                    None => g,
                };
                let mut s = [lanes::zero(); 2];
                for (sv, st) in s.iter_mut().zip(state.as_ref()) {
                    *sv = lanes::load16(&st.w.as_flattened()[f..f + 16]);
                }
                let r = &mut w.as_flattened_mut()[f..f + 16];
                lanes::store16(R::apply(step, lanes::load16(r), g, &mut s), r);
                for (sv, st) in s.iter().zip(state.as_mut()) {
                    lanes::store16(*sv, &mut st.w.as_flattened_mut()[f..f + 16]);
                }
            }
        }
    }

    /// Weights `W[j][k..k + 8]` (lanes 0..8 of `g`) and `W[j + 1][k..k + 8]` (lanes 8..16):
    /// the same operations as [`Sink::weight`], lane-wise, bit for bit.
    #[inline(always)]
    fn weights2x8(&mut self, j: usize, k: usize, g: Lane) {
        match self {
            Sink::Store(d) => {
                let (r0, r1) = rows2(&mut d.w, j);
                lanes::store8x2(g, &mut r0[k..k + 8], &mut r1[k..k + 8]);
            }
            Sink::Add(d) => {
                let (r0, r1) = rows2(&mut d.w, j);
                let v = lanes::load8x2(&r0[k..k + 8], &r1[k..k + 8]) + g;
                lanes::store8x2(v, &mut r0[k..k + 8], &mut r1[k..k + 8]);
            }
            Sink::Update {
                w,
                state,
                step,
                prior,
                ..
            } => {
                let g = match prior {
                    Some(p) => lanes::load8x2(&p.w[j][k..k + 8], &p.w[j + 1][k..k + 8]) + g,
                    None => g,
                };
                let mut s = [lanes::zero(); 2];
                for (sv, st) in s.iter_mut().zip(state.as_ref()) {
                    *sv = lanes::load8x2(&st.w[j][k..k + 8], &st.w[j + 1][k..k + 8]);
                }
                let (r0, r1) = rows2(w, j);
                let v = lanes::load8x2(&r0[k..k + 8], &r1[k..k + 8]);
                let v = R::apply(step, v, g, &mut s);
                lanes::store8x2(v, &mut r0[k..k + 8], &mut r1[k..k + 8]);
                for (sv, st) in s.iter().zip(state.as_mut()) {
                    let (r0, r1) = rows2(&mut st.w, j);
                    lanes::store8x2(*sv, &mut r0[k..k + 8], &mut r1[k..k + 8]);
                }
            }
        }
    }

    #[inline(always)]
    fn bias(&mut self, j: usize, g: f32) {
        match self {
            Sink::Store(d) => d.b[j] = g,
            Sink::Add(d) => d.b[j] += g,
            Sink::Update {
                b,
                state,
                step,
                prior,
                ..
            } => {
                let g = match prior {
                    Some(p) => p.b[j] + g,
                    None => g,
                };
                let mut s = [0.0f32; 2];
                for (sv, st) in s.iter_mut().zip(state.as_ref()) {
                    *sv = st.b[j];
                }
                b[j] = R::apply(step, b[j], g, &mut s);
                for (sv, st) in s.iter().zip(state.as_mut()) {
                    st.b[j] = *sv;
                }
            }
        }
    }
}

/// Parameter gradients of a tile of blocks, `dW[j][k] = sum over samples dz[j] x[k]` and
/// `db[j] = sum over samples dz[j]`, each reduced once and handed to `sink`.
///
/// Padded samples of a partial block must have `dz == 0` (the loss kernels guarantee it), so
/// they add nothing.
// PERF: when the tile's inputs come as rows too (the first layer of a model with 16 inputs
// or more), the columns `0..I - I % 16` go to `param_grads_rows`, which needs no cross-lane
// reductions at all. Otherwise (the output layer, whose inputs exist only in lanes, and the
// `Dense` batch functions) two register tilings, both with 16 independent accumulator chains (enough to cover
// the FMA latency on two FMA pipes twice over) that keep the sum over samples in registers
// across all blocks of the tile:
// - the body, columns in runs of 16 (`k16 = I - I % 16` of them): a 1 x 16 tile, one row `j`
//   and sixteen columns, loads one `dz` lane and 16 `x` lanes per block for 16 FMAs. That is
//   a load per FMA (two a cycle, as many as FMAs), but its 16 sums are 16 *contiguous*
//   weights, so the fused update (or the store of a partial sum) is three vector operations
//   instead of about fifty scalar ones, which compete with the FMAs for the same ports. The
//   columns are walked in panels of 64 (`x` of a 128-sample tile: 8 blocks x 64 lanes x 64 B
//   = 32 KiB, resident in L1) with all rows `j` inside a panel, so `x` is read from L2 once
//   per panel rather than once per row.
// - the rest (`I % 16` columns, e.g. Iris's 4 inputs): 4 x 4 tiles over (j, k), per block 4
//   `dz` and 4 `x` lanes for 16 FMAs, with scalar updates; edge tiles (`O` or `I` not a
//   multiple of 4) use the same kernel with fewer accumulators.
// Either way the 16 accumulators of a register tile are reduced across lanes together by
// `lanes::sum16` (under three operations a weight instead of about eight), once per tile.
pub(crate) fn param_grads_tile<const I: usize, const O: usize, R: Rule>(
    x: &[[Lane; I]],
    rows: Option<&[[f32; I]]>,
    dz: &[[Lane; O]],
    mut sink: Sink<'_, I, O, R>,
) {
    const PANEL: usize = 64;
    let k16 = I - I % 16;
    let mut kp = 0;
    if let Some(rows) = rows {
        param_grads_rows(rows, dz, &mut sink);
        kp = k16;
    }
    while kp < k16 {
        let kend = (kp + PANEL).min(k16);
        let mut j = 0;
        while j + 2 <= O {
            let mut k = kp;
            while k < kend {
                grad_run2x8(x, dz, j, k, &mut sink);
                k += 8;
            }
            j += 2;
        }
        if j < O {
            let mut k = kp;
            while k < kend {
                grad_run16(x, dz, j, k, &mut sink);
                k += 16;
            }
        }
        kp = kend;
    }
    let mut j = 0;
    while j < O {
        let jn = (O - j).min(4);
        let mut k = k16;
        while k < I {
            let kn = (I - k).min(4);
            match (jn, kn) {
                (4, 4) => grad_tile::<I, O, R, 4, 4>(x, dz, j, k, &mut sink),
                (4, 3) => grad_tile::<I, O, R, 4, 3>(x, dz, j, k, &mut sink),
                (4, 2) => grad_tile::<I, O, R, 4, 2>(x, dz, j, k, &mut sink),
                (4, _) => grad_tile::<I, O, R, 4, 1>(x, dz, j, k, &mut sink),
                (3, 4) => grad_tile::<I, O, R, 3, 4>(x, dz, j, k, &mut sink),
                (3, 3) => grad_tile::<I, O, R, 3, 3>(x, dz, j, k, &mut sink),
                (3, 2) => grad_tile::<I, O, R, 3, 2>(x, dz, j, k, &mut sink),
                (3, _) => grad_tile::<I, O, R, 3, 1>(x, dz, j, k, &mut sink),
                (2, 4) => grad_tile::<I, O, R, 2, 4>(x, dz, j, k, &mut sink),
                (2, 3) => grad_tile::<I, O, R, 2, 3>(x, dz, j, k, &mut sink),
                (2, 2) => grad_tile::<I, O, R, 2, 2>(x, dz, j, k, &mut sink),
                (2, _) => grad_tile::<I, O, R, 2, 1>(x, dz, j, k, &mut sink),
                (_, 4) => grad_tile::<I, O, R, 1, 4>(x, dz, j, k, &mut sink),
                (_, 3) => grad_tile::<I, O, R, 1, 3>(x, dz, j, k, &mut sink),
                (_, 2) => grad_tile::<I, O, R, 1, 2>(x, dz, j, k, &mut sink),
                (_, _) => grad_tile::<I, O, R, 1, 1>(x, dz, j, k, &mut sink),
            }
            k += 4;
        }
        j += 4;
    }
    // Biases, sixteen at a time: one add per output and block, one shared reduction. Where
    // sixteen accumulators do not fit in the registers (`TILE_ACC < 16`: AVX2, NEON, SSE2)
    // they are summed `TILE_ACC` at a time, a pass over the blocks each, as in
    // `acc_passes`: the same additions in the same order, without a spill around each one.
    // PERF: where one pass holds all sixteen (AVX-512, the narrow lane) the plain loop is
    // kept: the passes' second array cost the Cortex-M4F program 840 bytes of peak stack.
    let mut j = 0;
    while j < O {
        let jn = (O - j).min(16);
        let mut acc = [lanes::zero(); 16];
        if lanes::TILE_ACC >= 16 {
            for db in dz {
                for (a, &d) in acc.iter_mut().zip(&db[j..j + jn]) {
                    *a += d;
                }
            }
        } else {
            let mut p = 0;
            while p < jn {
                let mut part = [lanes::zero(); lanes::TILE_ACC];
                for db in dz {
                    for (i, a) in part.iter_mut().enumerate() {
                        if p + i < jn {
                            *a += db[j + p + i];
                        }
                    }
                }
                for (i, &a) in part.iter().enumerate() {
                    if p + i < jn {
                        acc[p + i] = a;
                    }
                }
                p += lanes::TILE_ACC;
            }
        }
        let s = lanes::to_array(lanes::sum16(&acc));
        for (jj, &g) in s.iter().enumerate().take(jn) {
            sink.bias(j + jj, g);
        }
        j += 16;
    }
}

/// The columns `0..I - I % 16` of [`param_grads_tile`] from the tile's inputs as rows
/// (`rows[s]` is sample `s`, `rows.len()` the tile's real samples, `dz` in blocks as usual).
///
/// Each weight's gradient is summed over the samples in order, `s = 0, 1, ...`, in one
/// accumulator lane; no cross-lane reduction.
// PERF: the lane dimension is the columns `k`, not the samples: per sample, a register tile
// of `JN` rows x `KN` vectors of 16 columns takes `KN` vector loads of the sample's row,
// `JN` broadcasts of `dz[j]` (a scalar read in place from its lane) and `JN * KN` FMAs. The
// sums stay in registers across the whole tile and come out as sixteen contiguous weights
// each, ready for the fused update: none of the 16-way cross-lane reductions (about 3
// shuffles and adds a weight, on the FMA ports) that the sample-lane formulation needs once
// per tile. Columns are walked in panels of `ROWS_V` vectors with every row `j` inside a
// panel, so the panel (128 samples x 128 B = 16 KiB with AVX-512) stays in L1 while `dz`
// streams past it.
// - With AVX-512 the tile is 8 rows x 2 vectors (`lanes::ROWS_R` x `ROWS_V`): 10 loads per
//   16 FMAs, against 4 x 4's 8, but half the panel; on a Xeon with two 512-bit FMA pipes
//   784-256-10 went from 168 to 171 GFLOP/s (best step), and 64-128-64-10 was unchanged.
// - Rows of 256 inputs or more (1 KiB apart) are first copied, a panel at a time, into a
//   contiguous buffer on the stack (`param_grads_rows_copied`): walking 128 rows of 784
//   inputs touched a hundred 4 KiB pages per pass over the panel, more than the L1 TLB
//   holds, and the row loads stalled on it; 171 -> 178 GFLOP/s on the same Xeon. Below
//   that the copy only costs (64-128-64-10: 193 -> 186). On a Zen 4 core (two 256-bit
//   FMA pipes, a bigger L1 TLB) the copy is a small net cost instead: 784-256-10 best step
//   110.9 -> 108.8 GFLOP/s, alternating runs; 8 x 2 alone was neutral there.
// Neither changes a result: every accumulator adds the same products in the same order.
fn param_grads_rows<const I: usize, const O: usize, R: Rule>(
    rows: &[[f32; I]],
    dz: &[[Lane; O]],
    sink: &mut Sink<'_, I, O, R>,
) {
    if I >= ROWS_COPY_MIN {
        param_grads_rows_copied(rows, dz, sink);
        return;
    }
    let mut v = 0;
    while v < I / 16 {
        let kn = (I / 16 - v).min(lanes::ROWS_V);
        rows_panel::<I, O, I, R>(rows, 16 * v, kn, dz, 16 * v, sink);
        v += kn;
    }
}

/// Inputs this wide or wider take [`param_grads_rows`]'s path through a copied panel.
const ROWS_COPY_MIN: usize = 256;

/// [`param_grads_rows`] for wide rows: each panel of columns is copied into a contiguous
/// buffer first (bit for bit the same sums).
fn param_grads_rows_copied<const I: usize, const O: usize, R: Rule>(
    rows: &[[f32; I]],
    dz: &[[Lane; O]],
    sink: &mut Sink<'_, I, O, R>,
) {
    const W: usize = 16 * lanes::ROWS_V;
    let mut panel = [[0.0f32; W]; TILE_BLOCKS * LANES];
    let n = rows.len().min(panel.len());
    let mut v = 0;
    while v < I / 16 {
        let kn = (I / 16 - v).min(lanes::ROWS_V);
        let k = 16 * v;
        for (p, r) in panel.iter_mut().zip(&rows[..n]) {
            p[..16 * kn].copy_from_slice(&r[k..k + 16 * kn]);
        }
        rows_panel::<I, O, W, R>(&panel[..n], 0, kn, dz, k, sink);
        v += kn;
    }
}

/// Every row `j` of the `kn` (at most [`lanes::ROWS_V`]) vectors of columns starting at
/// `k` (weights) or `kr` (in `rows`).
#[inline(always)]
fn rows_panel<const I: usize, const O: usize, const W: usize, R: Rule>(
    rows: &[[f32; W]],
    kr: usize,
    kn: usize,
    dz: &[[Lane; O]],
    k: usize,
    sink: &mut Sink<'_, I, O, R>,
) {
    let mut j = 0;
    while j < O {
        let jn = (O - j).min(lanes::ROWS_R);
        // The full tile, else 4 rows, else what is left.
        let jn = if jn == lanes::ROWS_R || jn < 4 { jn } else { 4 };
        macro_rules! tile {
            ($jn:literal, $kn:literal) => {
                grad_rows::<I, O, W, R, $jn, $kn>(rows, kr, dz, j, k, sink)
            };
        }
        match (jn, kn) {
            (8, 1) => tile!(8, 1),
            (8, _) => tile!(8, 2),
            (4, 4) => tile!(4, 4),
            (4, 3) => tile!(4, 3),
            (4, 2) => tile!(4, 2),
            (4, _) => tile!(4, 1),
            (3, 4) => tile!(3, 4),
            (3, 3) => tile!(3, 3),
            (3, 2) => tile!(3, 2),
            (3, _) => tile!(3, 1),
            (2, 4) => tile!(2, 4),
            (2, 3) => tile!(2, 3),
            (2, 2) => tile!(2, 2),
            (2, _) => tile!(2, 1),
            (_, 4) => tile!(1, 4),
            (_, 3) => tile!(1, 3),
            (_, 2) => tile!(1, 2),
            (_, _) => tile!(1, 1),
        }
        j += jn;
    }
}

/// One `JN x KN` register tile of [`param_grads_rows`]: rows `j..j + JN`, weight columns
/// `k..k + 16 KN`, read from columns `kr..kr + 16 KN` of `rows`.
#[inline(always)]
fn grad_rows<
    const I: usize,
    const O: usize,
    const W: usize,
    R: Rule,
    const JN: usize,
    const KN: usize,
>(
    rows: &[[f32; W]],
    kr: usize,
    dz: &[[Lane; O]],
    j: usize,
    k: usize,
    sink: &mut Sink<'_, I, O, R>,
) {
    let mut acc = [[lanes::zero(); KN]; JN];
    // Slices of known length, taken outside the sample loop, so that no index inside it
    // needs a bounds check (with checks in it LLVM shuffled the accumulators between
    // registers every sample, when this function was not inlined).
    for (xb, db) in rows.chunks(LANES).zip(dz) {
        let d = &db[j..j + JN];
        for (row, l) in xb.iter().zip(0..LANES) {
            let xr = &row[kr..kr + 16 * KN];
            let xs: [Lane; KN] = core::array::from_fn(|v| lanes::load16(&xr[16 * v..16 * v + 16]));
            for (accj, dj) in acc.iter_mut().zip(d) {
                let dv = lanes::splat(lanes::lane(dj, l));
                for (a, &xv) in accj.iter_mut().zip(&xs) {
                    *a = lanes::fma(dv, xv, *a);
                }
            }
        }
    }
    for (jj, accj) in acc.iter().enumerate() {
        for (v, &g) in accj.iter().enumerate() {
            sink.weights16(j + jj, k + 16 * v, g);
        }
    }
}

/// Rows `j` and `j + 1` of `w`, both mutable.
#[inline(always)]
fn rows2<const I: usize, const O: usize>(
    w: &mut [[f32; I]; O],
    j: usize,
) -> (&mut [f32; I], &mut [f32; I]) {
    let (a, b) = w.split_at_mut(j + 1);
    (&mut a[j], &mut b[0])
}

/// The 2 x 8 register tile of [`param_grads_tile`]: rows `j, j + 1`, columns `k..k + 8`.
#[inline(always)]
fn grad_run2x8<const I: usize, const O: usize, R: Rule>(
    x: &[[Lane; I]],
    dz: &[[Lane; O]],
    j: usize,
    k: usize,
    sink: &mut Sink<'_, I, O, R>,
) {
    if lanes::TILE_ACC < 16 {
        // Each pass takes both rows of `TILE_B` columns (2 `dz` and 2 `x` lanes a block
        // for 4 FMAs with AVX2), not one row of 4 columns (1 + 4 lanes).
        let acc = acc_passes(x, dz, 16, |q| {
            let (p, i) = (q / lanes::TILE_ACC, q % lanes::TILE_ACC);
            let (r, c) = (i / TILE_B, p * TILE_B + i % TILE_B);
            (8 * r + c, (j + r, k + c))
        });
        sink.weights2x8(j, k, lanes::sum16(&acc));
        return;
    }
    let mut acc = [lanes::zero(); 16];
    for (xb, db) in x.iter().zip(dz) {
        let (d0, d1) = (db[j], db[j + 1]);
        for (i, &xv) in xb[k..k + 8].iter().enumerate() {
            acc[i] = lanes::fma(d0, xv, acc[i]);
            acc[8 + i] = lanes::fma(d1, xv, acc[8 + i]);
        }
    }
    sink.weights2x8(j, k, lanes::sum16(&acc));
}

/// The 1 x 16 register tile of [`param_grads_tile`]: row `j`, columns `k..k + 16`.
#[inline(always)]
fn grad_run16<const I: usize, const O: usize, R: Rule>(
    x: &[[Lane; I]],
    dz: &[[Lane; O]],
    j: usize,
    k: usize,
    sink: &mut Sink<'_, I, O, R>,
) {
    if lanes::TILE_ACC < 16 {
        let acc = acc_passes(x, dz, 16, |i| (i, (j, k + i)));
        sink.weights16(j, k, lanes::sum16(&acc));
        return;
    }
    let mut acc = [lanes::zero(); 16];
    for (xb, db) in x.iter().zip(dz) {
        let d = db[j];
        for (a, &xv) in acc.iter_mut().zip(&xb[k..k + 16]) {
            *a = lanes::fma(d, xv, *a);
        }
    }
    sink.weights16(j, k, lanes::sum16(&acc));
}

/// One `JN x KN` register tile of [`param_grads_tile`] at rows `j..j + JN`, columns
/// `k..k + KN`.
#[inline(always)]
fn grad_tile<const I: usize, const O: usize, R: Rule, const JN: usize, const KN: usize>(
    x: &[[Lane; I]],
    dz: &[[Lane; O]],
    j: usize,
    k: usize,
    sink: &mut Sink<'_, I, O, R>,
) {
    let mut acc = [lanes::zero(); 16];
    if lanes::TILE_ACC < JN * KN {
        acc = acc_passes(x, dz, JN * KN, |i| (i, (j + i / KN, k + i % KN)));
    } else {
        grad_tile_acc::<I, O, JN, KN>(x, dz, j, k, &mut acc);
    }
    let g = lanes::sum16(&acc);
    if JN * KN == 16 && KN == I {
        // Whole rows (I == 4): the 16 weights are contiguous, one vector update.
        sink.flat16(j * I, g);
        return;
    }
    let s = lanes::to_array(g);
    for jj in 0..JN {
        for kk in 0..KN {
            sink.weight(j + jj, k + kk, s[jj * KN + kk]);
        }
    }
}

/// The accumulators of [`grad_tile`] in one pass over the blocks.
#[inline(always)]
fn grad_tile_acc<const I: usize, const O: usize, const JN: usize, const KN: usize>(
    x: &[[Lane; I]],
    dz: &[[Lane; O]],
    j: usize,
    k: usize,
    acc: &mut [Lane; 16],
) {
    for (xb, db) in x.iter().zip(dz) {
        let xs: [Lane; KN] = core::array::from_fn(|kk| xb[k + kk]);
        for jj in 0..JN {
            let d = db[j + jj];
            for (kk, &xv) in xs.iter().enumerate() {
                acc[jj * KN + kk] = lanes::fma(d, xv, acc[jj * KN + kk]);
            }
        }
    }
}

/// The `n` accumulators (at most 16) of a lane-reduction tile, [`lanes::TILE_ACC`] of them
/// per pass over the blocks: where 16 accumulators do not fit in the registers (AVX2, NEON,
/// SSE2) the blocks are read again instead of the accumulators spilled. The `q`-th one
/// computed is `acc[slot] = sum over the blocks of dz[row] x[col]`, with
/// `(slot, (row, col)) = at(q)`; each sum is over the blocks in order from zero, as in the
/// one-pass tiles.
#[inline(always)]
fn acc_passes<const I: usize, const O: usize>(
    x: &[[Lane; I]],
    dz: &[[Lane; O]],
    n: usize,
    at: impl Fn(usize) -> (usize, (usize, usize)),
) -> [Lane; 16] {
    let mut acc = [lanes::zero(); 16];
    let mut p = 0;
    while p < n {
        let mut part = [lanes::zero(); lanes::TILE_ACC];
        for (xb, db) in x.iter().zip(dz) {
            for (i, a) in part.iter_mut().enumerate() {
                if p + i < n {
                    let (_, (r, c)) = at(p + i);
                    *a = lanes::fma(db[r], xb[c], *a);
                }
            }
        }
        for (i, &a) in part.iter().enumerate() {
            if p + i < n {
                acc[at(p + i).0] = a;
            }
        }
        p += lanes::TILE_ACC;
    }
    acc
}
