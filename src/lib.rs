//! # fusedprop
//!
//! Allocation-free, `no_std`, const-generic SIMD kernels for training and running small dense
//! neural networks on the CPU, with the optimizer update fused into the backward pass.
//!
//! ```
//! use fusedprop::{Mlp, Sgd, Workspace};
//!
//! let x = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]];
//! let y = [0, 1, 2];
//! let mut model = Mlp::<4, 32, 3>::new(7); // Dense(32, relu) -> Dense(3, softmax)
//! let mut ws = Workspace::new();
//! let sgd = Sgd::new(0.01)?;
//! for _ in 0..100 {
//!     let loss = model.train_step(&x, &y, &sgd, &mut ws)?; // mean loss before the update
//!     assert!(loss.is_finite());
//! }
//! let mut classes = [0u32; 3];
//! model.predict(&x, &mut classes)?;
//! # Ok::<(), fusedprop::Error>(())
//! ```
//!
//! ## Any dense network
//! [`Network<L, H>`](Network) trains any chain of dense layers `L`, written like a Keras
//! `Sequential` with [`chain!`], with a loss head `H` and any [`Optimizer`]; widths are
//! checked at compile time, and the optimizer's update is fused into the backward pass.
//!
//! ```
//! use fusedprop::{chain, Adam, Dense, NetWorkspace, Network, OptimizerState, Relu,
//!                 SoftmaxCrossEntropy, Tanh};
//!
//! // Dense(16, tanh) -> Dense(8, relu) -> Dense(3) with softmax + cross-entropy.
//! type Layers = chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>];
//! let mut net = Network::<Layers, SoftmaxCrossEntropy>::new(7);
//! let (adam, mut state, mut ws) = (Adam::new(0.01)?, OptimizerState::new(), NetWorkspace::new());
//! let x = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]];
//! let loss = net.train_step(&x, &[0, 1, 2], &adam, &mut state, &mut ws)?;
//! assert!(loss.is_finite());
//! # Ok::<(), fusedprop::Error>(())
//! ```
//!
//! - activations, a type parameter of [`Dense`] fused into its passes: [`Linear`] (the
//!   default), [`Relu`], [`LeakyRelu`], [`Tanh`], [`Sigmoid`], [`Silu`], [`Gelu`];
//! - heads: [`SoftmaxCrossEntropy`] (class labels), [`MeanSquaredError`] (regression),
//!   [`BinaryCrossEntropy`] (from the logits; binary or multi-label), or a loss of your own
//!   through [`Network::train_step_with_output_grad`];
//! - optimizers, as Keras defines them: [`Sgd`], [`Momentum`] (and Nesterov), [`Adam`] (and
//!   AdamW, and PyTorch's placement of ε), with their state in a caller-owned
//!   [`OptimizerState`];
//! - training loops: [`Network::fit`], Keras's `model.fit` with no heap (mini-batches in
//!   order or shuffled per epoch, validation, learning-rate [`Schedule`]s,
//!   [`EarlyStopping`], callbacks), and with feature `rayon` `fit_par::fit_each`, many models
//!   at once;
//! - weights in and out: [`Network::read_keras`] (`model.get_weights()` order),
//!   [`Network::read_torch`] (`state_dict` order), [`Network::write_params`] /
//!   [`Network::read_params`]; safetensors files (feature `safetensors`, module
//!   `safetensors`: PyTorch's `state_dict`, Keras's kernels, names of your own); a trained
//!   model as Rust source for a `static` in flash (`Network::to_rust_source`, feature `std`,
//!   built with the `const fn`s [`Network::from_layers`] and [`Dense::from_parts`]); a
//!   Keras-like summary with `Display`.
//!
//! ARCHITECTURE.md in the repository maps the code: the path of a batch, and how to add an
//! activation, a head or an optimizer.
//!
//! ## Layers of the crate
//! - kernels, each usable alone: [`Dense`] (forward, backward, fused SGD), [`relu`],
//!   [`softmax`], [`log_softmax`] and their backward functions,
//!   [`sparse_categorical_cross_entropy`] and the fused
//!   [`softmax_cross_entropy_backward`], [`Sgd`];
//! - the model [`Mlp`], composed from those kernels, with its caller-owned [`Workspace`];
//!   [`PackedBatch`] holds a full batch already transposed into lanes and validated, for
//!   [`Mlp::train_step_packed`] (full-batch training without per-step transposes).
//!
//! Shapes are const generics: feeding a `[f32; 5]` sample to an `Mlp<4, _, _>` does not
//! compile. Batch lengths are runtime slice lengths and are checked: every function that takes
//! data returns a `Result` with an [`Error`] that names the problem and the sample, and never
//! panics on input.
//!
//! ## Getting SIMD
//! `wide` chooses its instructions when the crate is *compiled*, from the target features.
//! A default x86-64 build has SSE2 only: no FMA, 4-wide lanes, about a quarter of this
//! crate's speed on a modern CPU. This repository's `.cargo/config.toml` builds its own
//! benches, tests and examples with `-C target-cpu=native`; an application that depends on
//! fusedprop chooses for itself, in its own (or its workspace's) `.cargo/config.toml`, with
//! `RUSTFLAGS="-C target-cpu=native"`, or with `-C target-cpu=x86-64-v3` for any AVX2
//! machine (README, "Getting SIMD"). [`SIMD_LEVEL`] says what a build got, `simd_hint`
//! what it misses; with feature `std` the first training step or prediction of a build that
//! lacks FMA, AVX2 or AVX-512 which the CPU has logs that hint once per process through
//! [`log`](https://docs.rs/log) (`log::warn!`, target `fusedprop::simd`). The crate never
//! prints by itself.
//!
//! ## Data layout
//! Kernels vectorize over *samples*: sixteen samples are held feature-major, so feature `k`
//! of all sixteen sits in one SIMD register, and the dense layers, ReLU, softmax and the loss
//! are lane-wise FMAs with no shuffles, whatever the layer widths (3, 4 and 32 waste nothing).
//! A batch whose length is not a multiple of sixteen is padded with zero samples whose
//! gradients are masked to zero.
//!
//! Wider layers use register tiles over blocks: the forward and input-gradient kernels
//! compute 4 outputs of 4 blocks at once with AVX-512 (each broadcast weight feeds 4 FMAs;
//! 2 x 2 with AVX2 and NEON, 2 x 1 with SSE2, whose registers hold fewer lanes), the weight
//! gradient keeps 16 accumulators per register tile across a whole tile ([`TILE_SAMPLES`]) and
//! reduces them across lanes together, once per tile. The first layer of a model with 16
//! inputs or more computes its weight gradients from the input *rows* instead (lanes over
//! 16 inputs, a broadcast output gradient per sample), which needs no cross-lane reduction
//! at all; so does a hidden layer of 16 inputs or more and 32 outputs or more, from its
//! inputs transposed into rows once its gradients are due (where the lane is `f32x16`).
//! [`Mlp::predict_one`] has its own latency path that vectorizes over inputs instead of
//! samples (for a layer of four inputs, over four rows of weights at once; plain scalar dot
//! products for other layers of fewer than 8 inputs).
//!
//! ## Numerics
//! - `f32` throughout; sums over a batch are accumulated per lane and reduced in one fixed
//!   order, the same on every target. Results differ between targets only where one has FMA
//!   and the other does not (one rounding instead of two), and where the training tile
//!   differs: [`TILE_SAMPLES`] is 128 where `wide` has SIMD and 16 on targets without it
//!   (microcontrollers, `--cfg fusedprop_narrow`), whose per-tile sums are added in another
//!   grouping. On one build results are deterministic.
//! - Softmax subtracts the row maximum, the loss uses log-sum-exp: finite for logits up to
//!   `±1e30`.
//! - `ln` uses `wide`'s range reduction and coefficients but Horner's rule, so it never forms
//!   a subnormal intermediate (on Intel cores each FMA with a subnormal operand costs a
//!   microcode assist); `1 / sum` is computed once per block for the softmax gradient.
//! - ReLU's derivative at exactly 0 is 0 (TensorFlow's convention).
//! - **NaN policy.** ReLU keeps NaN (`relu(NaN) = NaN`), so a NaN cannot hide on its way to
//!   the loss; softmax of a row containing NaN is NaN. The model functions refuse non-finite
//!   inputs with [`Error::NonFinite`], and a training step whose loss is not finite, or whose
//!   gradient could overflow ([`Error::UpdateOverflow`]), is refused and leaves the weights
//!   bit for bit unchanged.
//!
//! ## Features
//! - `std` (default): the std-only helpers `simd_hint`, the gradient checker
//!   (`gradcheck`), `Network::to_rust_source`, and `new_boxed` constructors for large models (they allocate; the rest
//!   of the crate never does); the one-time `log` warning about a slow build (the `log`
//!   dependency comes with this feature only).
//! - `rayon`: parallelism over samples (implies `std`): `Mlp::train_step_par` with a
//!   caller-owned `ParWorkspace`, bit for bit the serial step for any number of threads.
//! - `safetensors`: [`Network`] weights in and out as safetensors files (implies `std`;
//!   module `safetensors`).
//!
//! Without default features the crate is `#![no_std]` and never allocates; it builds for
//! `thumbv7em-none-eabihf` and trains there.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod activation;
pub mod batch;
pub mod dense;
mod driver;
mod error;
pub mod fit;
#[cfg(feature = "rayon")]
pub mod fit_par;
#[cfg(feature = "std")]
pub mod gradcheck;
pub mod head;
mod lanes;
pub mod layer;
pub mod loss;
mod math;
pub mod mlp;
pub mod network;
#[cfg(feature = "rayon")]
pub mod network_par;
pub mod optim;
#[cfg(feature = "rayon")]
pub mod parallel;
#[doc(hidden)]
pub mod reference;
pub mod rng;
#[cfg(feature = "safetensors")]
pub mod safetensors;
mod simd;
mod summary;

/// The README's Rust examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use activation::{
    Activation, ConstActivation, Gelu, LeakyRelu, Linear, Relu, Sigmoid, Silu, Tanh, log_softmax,
    log_softmax_backward, relu, relu_backward, softmax, softmax_backward,
};
pub use batch::PackedBatch;
pub use dense::{Accumulate, Dense, DenseGrads};
pub use error::Error;
pub use fit::{
    BatchLog, EarlyStopping, EpochLog, FitConfig, FitData, FitError, FitSummary, FitWorkspace,
    Monitor, Schedule, Shuffle, Stop,
};
pub use head::{BinaryCrossEntropy, Classifier, Head, MeanSquaredError, SoftmaxCrossEntropy};
pub use layer::{Chain, Dim, Layer, LayerInfo, Shape};
pub use loss::{softmax_cross_entropy_backward, sparse_categorical_cross_entropy};
pub use mlp::{Gradients, Mlp, TILE_SAMPLES, Workspace};
pub use network::{NetGradients, NetWorkspace, Network, OptimizerState};
#[cfg(feature = "rayon")]
pub use network_par::NetParWorkspace;
pub use optim::{Adam, Epsilon, Momentum, Optimizer, Sgd};
#[cfg(feature = "rayon")]
pub use parallel::{PAR_MIN_FLOP, ParWorkspace};

/// The SIMD instruction set this build uses for its lanes, decided at compile time:
/// `"avx512+fma"`, `"avx2+fma"`, `"avx"`, `"sse4.1"`, `"sse2"`, `"neon"`, `"simd128"` or
/// `"scalar"` (targets without SIMD, such as Cortex-M and RISC-V, and builds with
/// `--cfg fusedprop_narrow`: lanes of sixteen floats in loops, one-block tiles). Record it
/// with every benchmark.
pub const SIMD_LEVEL: &str = lanes::SIMD_LEVEL;

/// A one-line hint when this build leaves SIMD on the table: it was compiled without FMA and
/// AVX2, or without AVX-512, but the CPU it runs on has them. The hint names the flags to
/// build with (`-C target-cpu=native`, or `x86-64-v3` for any AVX2 machine). `None` when the
/// build already uses what the CPU offers, or on targets other than x86-64.
///
/// The crate also logs this hint once per process, with `log::warn!` (target
/// `fusedprop::simd`), the first time a model trains or predicts; it never prints by itself.
///
/// # Examples
/// ```
/// if let Some(hint) = fusedprop::simd_hint() {
///     eprintln!("{hint}");
/// }
/// ```
#[cfg(feature = "std")]
#[must_use]
pub fn simd_hint() -> Option<&'static str> {
    simd::hint()
}

/// Whether this build fuses multiply and add in one rounding (FMA).
pub const HAS_FMA: bool = lanes::HAS_FMA;

/// Samples processed together in one SIMD block (the lane count of the kernels).
pub const BLOCK_SAMPLES: usize = lanes::LANES;
