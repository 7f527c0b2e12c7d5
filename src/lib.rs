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
//! A default x86-64 build has SSE2 only: no FMA, 4-wide lanes, about a third of this crate's
//! speed on a modern CPU. This repository's `.cargo/config.toml` builds its own benches,
//! tests and examples with `-C target-cpu=native`; an application that depends on fusedprop
//! chooses for itself, for example with `RUSTFLAGS="-C target-cpu=native"` or
//! `-C target-feature=+avx2,+fma`. [`SIMD_LEVEL`] says what a build got.
//!
//! ## Data layout
//! Kernels vectorize over *samples*: sixteen samples are held feature-major, so feature `k`
//! of all sixteen sits in one SIMD register, and the dense layers, ReLU, softmax and the loss
//! are lane-wise FMAs with no shuffles, whatever the layer widths (3, 4 and 32 waste nothing).
//! A batch whose length is not a multiple of sixteen is padded with zero samples whose
//! gradients are masked to zero.
//!
//! Wider layers use register tiles over blocks: the forward and input-gradient kernels
//! compute 4 outputs of 4 blocks at once (each broadcast weight feeds 4 FMAs), the weight
//! gradient keeps 16 accumulators per register tile across a whole tile of 128 samples and
//! reduces them across lanes together, once per tile. The first layer of a model with 16
//! inputs or more computes its weight gradients from the input *rows* instead (lanes over
//! 16 inputs, a broadcast output gradient per sample), which needs no cross-lane reduction
//! at all. [`Mlp::predict_one`] has its own latency path that vectorizes over inputs instead
//! of samples (for a layer of four inputs, over four rows of weights at once; plain scalar
//! dot products for other layers of fewer than 8 inputs).
//!
//! ## Numerics
//! - `f32` throughout; sums over a batch are accumulated per lane and reduced in one fixed
//!   order, the same on every target. Results differ between targets only where one has FMA
//!   and the other does not (one rounding instead of two); on one build they are
//!   deterministic.
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
//!   (`gradcheck`), and `new_boxed` constructors for large models (they allocate; the rest
//!   of the crate never does).
//! - `rayon`: parallelism over samples (implies `std`): `Mlp::train_step_par` with a
//!   caller-owned `ParWorkspace`, bit for bit the serial step for any number of threads.
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
mod error;
#[cfg(feature = "std")]
pub mod gradcheck;
mod lanes;
pub mod loss;
pub mod mlp;
pub mod optim;
#[cfg(feature = "rayon")]
pub mod parallel;
#[doc(hidden)]
pub mod reference;
pub mod rng;

/// The README's Rust examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use activation::{
    log_softmax, log_softmax_backward, relu, relu_backward, softmax, softmax_backward,
};
pub use batch::PackedBatch;
pub use dense::{Accumulate, Dense, DenseGrads};
pub use error::Error;
pub use loss::{softmax_cross_entropy_backward, sparse_categorical_cross_entropy};
pub use mlp::{Gradients, Mlp, TILE_SAMPLES, Workspace};
pub use optim::Sgd;
#[cfg(feature = "rayon")]
pub use parallel::{PAR_MIN_FLOP, ParWorkspace};

/// The SIMD instruction set this build uses for its lanes, decided at compile time:
/// `"avx512+fma"`, `"avx2+fma"`, `"avx"`, `"sse4.1"`, `"sse2"`, `"neon"`, `"simd128"` or
/// `"scalar"`. Record it with every benchmark.
pub const SIMD_LEVEL: &str = lanes::SIMD_LEVEL;

/// A one-line hint when this build leaves SIMD on the table: it was compiled without FMA
/// (or without AVX2 / AVX-512) but the CPU it runs on has them. `None` when the build
/// already uses what the CPU offers, or on targets other than x86-64.
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
    #[cfg(target_arch = "x86_64")]
    {
        let built_fma = cfg!(target_feature = "fma");
        let built_512 = cfg!(target_feature = "avx512f");
        let cpu_fma = std::is_x86_feature_detected!("fma");
        let cpu_512 = std::is_x86_feature_detected!("avx512f");
        if cpu_fma && !built_fma {
            return Some(
                "fusedprop: built without FMA but this CPU has it; rebuild with RUSTFLAGS=\"-C target-cpu=native\" for up to 3x the speed",
            );
        }
        if cpu_512 && !built_512 {
            return Some(
                "fusedprop: built without AVX-512 but this CPU has it; RUSTFLAGS=\"-C target-cpu=native\" uses it",
            );
        }
    }
    None
}

/// Whether this build fuses multiply and add in one rounding (FMA).
pub const HAS_FMA: bool = lanes::HAS_FMA;

/// Samples processed together in one SIMD block (the lane count of the kernels).
pub const BLOCK_SAMPLES: usize = lanes::LANES;
