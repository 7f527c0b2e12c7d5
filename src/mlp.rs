//! `Mlp<I, H, O>`: Dense(I -> H, ReLU) -> Dense(H -> O, softmax), the network of the Keras
//! Iris tutorial, composed from the crate's kernels.
//!
//! # The training step
//! Samples are processed in tiles of up to [`TILE_SAMPLES`] (eight blocks of sixteen where `wide` has SIMD, one block elsewhere). For
//! each tile:
//!
//! ```text
//! forward   a = relu(W1 x + b1)          z = W2 a + b2
//! loss      l_s = logsumexp(z_s) - z_{s,y_s}
//! backward  dz = (softmax(z) - onehot(y)) / N
//!           da = W2^T dz      dh = da * [a > 0]
//!           dW2 = dz a^T  db2 = sum dz        dW1 = dh x^T  db1 = sum dh
//! ```
//!
//! The parameter gradients of all tiles but the last are summed into the workspace; in the
//! last tile each weight's gradient is completed, and immediately applied,
//! `W -= lr * (sum of earlier tiles + this tile)`: the fused update, with no second sweep.
//! `da` is computed before `W2` changes. For a batch of at most [`TILE_SAMPLES`] samples (the
//! whole Iris training set) no gradient is ever stored.
//!
//! # Refusing a step
//! Before the first weight is written the step knows the loss of every sample and the largest
//! activation, and it bounds every gradient (`|dW2| <= max a`, `|db2| <= 1`,
//! `|dW1| <= O max|W2| max|x|`, `|db1| <= O max|W2|`). A step whose loss is not finite is
//! refused with [`Error::NonFinite`], one whose bound says an update could overflow `f32`
//! with [`Error::UpdateOverflow`]; either leaves every weight bit for bit as it was.

use core::fmt;

use crate::activation::{exp_shifted_block, relu_block};
use crate::batch::PackedBatch;
use crate::dense::{Dense, DenseGrads, Sink, param_grads_tile, update_is_safe};
use crate::error::{Error, check_labels, same_len};
use crate::lanes::{self, LANES, Lane};
use crate::loss::{xent_block, xent_lanes};
use crate::optim::Sgd;
use crate::rng::SplitMix64;

/// Blocks of sixteen samples in a training tile: 8 where `wide` has SIMD, 1 with the narrow
/// lane of targets without it (`lanes`), where the tile is most of a workspace's memory and
/// there are no parallel FMA pipes for a long tile to keep busy.
pub(crate) const TILE_BLOCKS: usize = if lanes::NARROW { 1 } else { 8 };

/// Samples in a training tile: the activations of this many samples are kept (in the
/// [`Workspace`]) between the forward and the backward pass, and each weight gradient is
/// reduced across lanes once per tile.
///
/// 128 (eight blocks of sixteen) on targets where `wide` has SIMD (x86 with SSE2, aarch64
/// with NEON, wasm32 with simd128); 16 (one block) on the others, such as Cortex-M and
/// RISC-V microcontrollers, so that a [`Workspace`] or `NetWorkspace` is an eighth of the
/// size. Results depend on it only through the order in which the per-tile sums are added
/// (one tile or several), so the same program on the two kinds of target agrees to rounding.
pub const TILE_SAMPLES: usize = TILE_BLOCKS * LANES;

/// A two-layer perceptron: `I` inputs, a ReLU hidden layer of `H` units, `O` softmax outputs.
///
/// # Examples
/// ```
/// use fusedprop::{Mlp, Sgd, Workspace};
///
/// // XOR-like toy data: two features, two classes.
/// let x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
/// let y = [0, 1, 1, 0];
/// let mut model = Mlp::<2, 16, 2>::new(42);
/// let mut ws = Workspace::new();
/// let sgd = Sgd::new(0.5).unwrap();
/// let first = model.train_step(&x, &y, &sgd, &mut ws).unwrap();
/// for _ in 0..500 {
///     model.train_step(&x, &y, &sgd, &mut ws).unwrap();
/// }
/// assert!(model.loss(&x, &y).unwrap() < first);
/// ```
///
/// # Large models
/// A model is `4 * PARAMS` bytes, stored inline (784-256-10: 814 KB), and its [`Workspace`]
/// is about twice that. Nothing in the crate moves a model or a workspace once it exists:
/// every method takes `&self` or `&mut self`. So build them where they will live:
///
/// - **On the heap, with `std`:** `Mlp::new_boxed`, `Workspace::new_boxed` and
///   `Gradients::new_boxed` (they allocate). `Box::new(Mlp::ZERO)` followed by
///   [`Mlp::init_glorot`] also works in optimized builds, but *not in debug builds*: without
///   optimization the value is copied several times on the stack on its way into the box,
///   and `Box::new(Mlp::<784, 256, 10>::ZERO)` (or `Box::default()`) overflows a 2 MiB thread
///   stack (measured: ROBUSTNESS.md).
/// - **In a `static`:** `ZERO` is a `const`, so the value is laid out at compile time and
///   never touches the stack, in any build and without `std` (use your platform's mutex or
///   critical-section cell where `std::sync::Mutex` is unavailable):
///
/// ```
/// use std::sync::Mutex;
/// use fusedprop::{Mlp, Sgd, Workspace};
///
/// static MODEL: Mutex<Mlp<784, 256, 10>> = Mutex::new(Mlp::ZERO);
/// static WS: Mutex<Workspace<784, 256, 10>> = Mutex::new(Workspace::ZERO);
///
/// let (mut model, mut ws) = (MODEL.lock().unwrap(), WS.lock().unwrap());
/// model.init_glorot(7);
/// let x = [[0.5; 784]; 2];
/// let loss = model.train_step(&x, &[3, 9], &Sgd::new(0.01)?, &mut ws)?;
/// assert!(loss.is_finite());
/// # Ok::<(), fusedprop::Error>(())
/// ```
///
/// - **In caller-provided memory:** any `&mut Mlp` will do (a field of a larger struct that
///   is itself in a `static` or a box, an arena slot): initialize it in place with
///   [`Mlp::init_glorot`] or [`Mlp::read_params`].
///
/// # Shapes that do not compile
/// `I` and `H` must be at least 1 and `O` at least 2: with no class there is nothing to
/// predict (`predict` would index an empty row), and softmax over one class is always 1, so
/// the loss would always be 0 and training would silently never learn. Every constructor
/// (`ZERO`, `new`, `default`, `from_weights`, ...) and every method that takes data checks the
/// shape at compile time (a `const` assertion, reported when the code is built, not by
/// `cargo check`):
///
/// ```compile_fail,E0080
/// let m = fusedprop::Mlp::<4, 4, 0>::new(1); // no class to predict
/// ```
///
/// ```compile_fail,E0080
/// let m = fusedprop::Mlp::<4, 4, 1>::new(1); // one class: the loss is always 0
/// ```
///
/// ```compile_fail,E0080
/// let m: fusedprop::Mlp<4, 4, 1> = Default::default();
/// ```
///
/// ```compile_fail,E0080
/// static M: fusedprop::Mlp<4, 0, 3> = fusedprop::Mlp::ZERO; // no hidden unit
/// ```
///
/// ```compile_fail,E0080
/// let m = fusedprop::Mlp::<4, 4, 0>::from_weights([[0.0; 4]; 4], [0.0; 4], [], [])?;
/// # Ok::<(), fusedprop::Error>(())
/// ```
#[derive(Clone, PartialEq)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Mlp<const I: usize, const H: usize, const O: usize> {
    hidden: Dense<I, H>,
    output: Dense<H, O>,
}

/// Gradients of every parameter of an [`Mlp`], in the layers' layout.
#[derive(Clone, PartialEq, Debug)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Gradients<const I: usize, const H: usize, const O: usize> {
    /// The hidden layer's gradients.
    pub hidden: DenseGrads<I, H>,
    /// The output layer's gradients.
    pub output: DenseGrads<H, O>,
}

impl<const I: usize, const H: usize, const O: usize> Gradients<I, H, O> {
    /// All zero; usable in a `static`.
    pub const ZERO: Self = Self {
        hidden: DenseGrads::ZERO,
        output: DenseGrads::ZERO,
    };

    /// Zero gradients on the heap, for large models in debug builds too (see [`Mlp`],
    /// "Large models"). Std only; allocates, as [`Workspace::new_boxed`].
    #[cfg(feature = "std")]
    #[must_use]
    pub fn new_boxed() -> std::boxed::Box<Self> {
        bytemuck::zeroed_box()
    }

    /// The gradients flattened in [`Mlp::write_params`] order into `out`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] unless `out.len() == Mlp::<I, H, O>::PARAMS`.
    pub fn write_flat(&self, out: &mut [f32]) -> Result<(), Error> {
        same_len("parameters", Mlp::<I, H, O>::PARAMS, out.len())?;
        let flat = self.hidden.w.iter().flatten().chain(&self.hidden.b);
        let flat = flat
            .chain(self.output.w.iter().flatten())
            .chain(&self.output.b);
        for (o, &v) in out.iter_mut().zip(flat) {
            *o = v;
        }
        Ok(())
    }
}

impl<const I: usize, const H: usize, const O: usize> Default for Gradients<I, H, O> {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Scratch memory for [`Mlp::train_step`] and [`Mlp::gradients`], owned by the caller and
/// reused across steps, so that no step allocates. Its size is fixed by the model's shape:
/// about `4 * (TILE_SAMPLES * (I + 2H + O) + PARAMS)` bytes.
///
/// For large models build it where it will live, as for the model (see [`Mlp`], "Large
/// models"): `Workspace::new_boxed` with `std` (it allocates), or a `static` initialized
/// with [`Workspace::ZERO`], or a field of caller-provided memory. `Box::new(Workspace::ZERO)`
/// overflows a 2 MiB stack in debug builds for 784-256-10 (the workspace is 1.5 MB).
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Workspace<const I: usize, const H: usize, const O: usize> {
    pub(crate) x: [[Lane; I]; TILE_BLOCKS],
    pub(crate) a: [[Lane; H]; TILE_BLOCKS],
    pub(crate) dh: [[Lane; H]; TILE_BLOCKS],
    pub(crate) z: [[Lane; O]; TILE_BLOCKS],
    pub(crate) acc: Gradients<I, H, O>,
}

impl<const I: usize, const H: usize, const O: usize> Workspace<I, H, O> {
    /// A zeroed workspace, as a `const` for statics and in-place construction.
    pub const ZERO: Self = Self {
        x: [[Lane::ZERO; I]; TILE_BLOCKS],
        a: [[Lane::ZERO; H]; TILE_BLOCKS],
        dh: [[Lane::ZERO; H]; TILE_BLOCKS],
        z: [[Lane::ZERO; O]; TILE_BLOCKS],
        acc: Gradients::ZERO,
    };

    /// A new workspace (by value; see the type's docs for large models).
    #[must_use]
    pub fn new() -> Self {
        Self::ZERO
    }

    /// A zeroed workspace on the heap, allocated zeroed in place (`bytemuck::zeroed_box`)
    /// with no copy of it on any stack, so it works for large models in debug builds and on
    /// small thread stacks too (see [`Mlp`], "Large models").
    ///
    /// Std only; allocates the box.
    #[cfg(feature = "std")]
    #[must_use]
    pub fn new_boxed() -> std::boxed::Box<Self> {
        bytemuck::zeroed_box()
    }
}

impl<const I: usize, const H: usize, const O: usize> Default for Workspace<I, H, O> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<const I: usize, const H: usize, const O: usize> fmt::Debug for Workspace<I, H, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Workspace<{I}, {H}, {O}>")
    }
}

/// What the forward pass over a batch learned, for the backward pass and the refusal check.
pub(crate) struct Forward {
    /// Per-lane sum of the samples' losses.
    pub(crate) loss: Lane,
    /// Per-lane maximum of `|x|`.
    pub(crate) max_x: Lane,
    /// Per-lane maximum of the hidden activations (all `>= 0`).
    pub(crate) max_a: Lane,
}

/// What the backward pass does with the parameter gradients of the last tile.
pub(crate) enum Finish<'a, const I: usize, const H: usize, const O: usize> {
    /// Write them (summed with the earlier tiles') to a gradients value.
    Gradients(&'a mut Gradients<I, H, O>),
    /// Apply them with SGD.
    Sgd(f32),
}

impl<const I: usize, const H: usize, const O: usize> Default for Mlp<I, H, O> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<const I: usize, const H: usize, const O: usize> Mlp<I, H, O> {
    /// The shape check, evaluated at compile time by every constructor and entry point
    /// (`let () = Self::SHAPE;`): an `Mlp` with no inputs, no hidden units, or fewer than
    /// two classes does not compile (see the type's docs, "Shapes that do not compile").
    const SHAPE: () = {
        assert!(
            I >= 1,
            "Mlp<I, H, O>: I must be at least 1 (a model needs an input)"
        );
        assert!(
            H >= 1,
            "Mlp<I, H, O>: H must be at least 1 (a hidden layer needs a unit)"
        );
        assert!(
            O >= 2,
            "Mlp<I, H, O>: O must be at least 2 classes: with 0 there is no class to predict, and softmax over 1 class is always 1, so the loss is always 0 and the model never learns"
        );
    };

    /// A model with every parameter zero, as a `const`: for statics and in-place
    /// construction of large models (then [`Mlp::init_glorot`]).
    pub const ZERO: Self = {
        let () = Self::SHAPE;
        Self {
            hidden: Dense::ZERO,
            output: Dense::ZERO,
        }
    };

    /// Number of trainable parameters: `I*H + H + H*O + O` (259 for 4-32-3).
    pub const PARAMS: usize = Dense::<I, H>::PARAMS + Dense::<H, O>::PARAMS;

    /// A model with Glorot-uniform weights and zero biases (Keras's defaults), from `seed`.
    /// The same seed gives the same model on every target.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let () = Self::SHAPE;
        let mut m = Self::ZERO;
        m.init_glorot(seed);
        m
    }

    /// [`Mlp::new`] on the heap: the box is allocated zeroed in place
    /// (`bytemuck::zeroed_box`), with no copy of the model on any stack, then initialized
    /// there, so it works for large models in debug builds and on small thread stacks too
    /// (see "Large models" above).
    ///
    /// Std only; allocates the box.
    ///
    /// ```
    /// let big = fusedprop::Mlp::<784, 256, 10>::new_boxed(7);
    /// assert_eq!(*big, fusedprop::Mlp::new(7));
    /// ```
    #[cfg(feature = "std")]
    #[must_use]
    pub fn new_boxed(seed: u64) -> std::boxed::Box<Self> {
        let () = Self::SHAPE;
        let mut m: std::boxed::Box<Self> = bytemuck::zeroed_box();
        m.init_glorot(seed);
        m
    }

    /// [`Mlp::new`] in place, for models too large to move by value:
    ///
    /// ```
    /// # use fusedprop::Mlp;
    /// let mut big: Box<Mlp<784, 256, 10>> = Box::new(Mlp::ZERO);
    /// big.init_glorot(7);
    /// ```
    pub fn init_glorot(&mut self, seed: u64) {
        let mut rng = SplitMix64::new(seed);
        self.hidden.init_glorot(&mut rng);
        self.output.init_glorot(&mut rng);
    }

    /// A model from its two layers.
    #[must_use]
    pub fn from_layers(hidden: Dense<I, H>, output: Dense<H, O>) -> Self {
        let () = Self::SHAPE;
        let () = Self::SHAPE;
        Self { hidden, output }
    }

    /// A model from weights in this crate's layout (`[out][in]`, as PyTorch).
    ///
    /// # Examples
    /// ```
    /// use fusedprop::{Error, Mlp};
    /// // Two inputs, two hidden units (one per input), two classes.
    /// let m = Mlp::<2, 2, 2>::from_weights(
    ///     [[1.0, 0.0], [0.0, 1.0]], // w1[hidden][input]
    ///     [0.0, 0.0],
    ///     [[1.0, 0.0], [0.0, 1.0]], // w2[class][hidden]
    ///     [0.0, 0.0],
    /// )?;
    /// assert_eq!(m.predict_one(&[3.0, 1.0])?, 0);
    /// // A non-finite value is refused, with its index in `write_params` order (w1, b1, w2).
    /// let w2 = [[f32::NAN, 0.0], [0.0; 2]];
    /// let bad = Mlp::<2, 2, 2>::from_weights([[0.0; 2]; 2], [0.0; 2], w2, [0.0; 2]);
    /// assert_eq!(bad.unwrap_err(), Error::NonFinite { what: "weight", index: Some(6) });
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NonFinite`] (`"weight"`, index in [`Mlp::write_params`] order) if a value is
    /// NaN or infinite.
    pub fn from_weights(
        w1: [[f32; I]; H],
        b1: [f32; H],
        w2: [[f32; H]; O],
        b2: [f32; O],
    ) -> Result<Self, Error> {
        let () = Self::SHAPE;
        let hidden = Dense::from_weights(w1, b1)?;
        let output = Dense::from_weights(w2, b2).map_err(|e| shift(e, Dense::<I, H>::PARAMS))?;
        Ok(Self { hidden, output })
    }

    /// A model from Keras weights: kernels in Keras layout, `[inputs][outputs]`
    /// (`model.get_weights()` order: kernel, bias, kernel, bias).
    ///
    /// # Examples
    /// ```
    /// use fusedprop::Mlp;
    /// // Keras kernels are [inputs][outputs]: the transpose of `from_weights`' layout.
    /// let k1 = [[1.0, 2.0, 3.0]]; // 1 input, 3 hidden units
    /// let k2 = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]; // 3 hidden units, 2 classes
    /// let m = Mlp::<1, 3, 2>::from_keras(&k1, [0.0; 3], &k2, [0.0; 2])?;
    /// assert_eq!(m.hidden().weights(), &[[1.0], [2.0], [3.0]]);
    /// assert_eq!(m.output().weights(), &[[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]]);
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Mlp::from_weights`].
    pub fn from_keras(
        k1: &[[f32; H]; I],
        b1: [f32; H],
        k2: &[[f32; O]; H],
        b2: [f32; O],
    ) -> Result<Self, Error> {
        let () = Self::SHAPE;
        let hidden = Dense::from_keras(k1, b1)?;
        let output = Dense::from_keras(k2, b2).map_err(|e| shift(e, Dense::<I, H>::PARAMS))?;
        Ok(Self { hidden, output })
    }

    /// The hidden layer.
    #[must_use]
    #[inline]
    pub fn hidden(&self) -> &Dense<I, H> {
        &self.hidden
    }

    /// The output layer.
    #[must_use]
    #[inline]
    pub fn output(&self) -> &Dense<H, O> {
        &self.output
    }

    /// Every parameter, flattened: hidden weights (row-major), hidden biases, output weights,
    /// output biases.
    ///
    /// # Examples
    /// ```
    /// use fusedprop::Mlp;
    /// let m = Mlp::<4, 8, 3>::new(1);
    /// let mut params = vec![0.0; Mlp::<4, 8, 3>::PARAMS]; // 4*8 + 8 + 8*3 + 3 = 67
    /// m.write_params(&mut params)?;
    /// assert_eq!(params[..4], m.hidden().weights()[0]);
    /// assert!(m.write_params(&mut [0.0; 5]).is_err()); // wrong length
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] unless `out.len() == PARAMS`.
    pub fn write_params(&self, out: &mut [f32]) -> Result<(), Error> {
        let () = Self::SHAPE;
        same_len("parameters", Self::PARAMS, out.len())?;
        let flat = self
            .hidden
            .weights()
            .iter()
            .flatten()
            .chain(self.hidden.bias());
        let flat = flat
            .chain(self.output.weights().iter().flatten())
            .chain(self.output.bias());
        for (o, &v) in out.iter_mut().zip(flat) {
            *o = v;
        }
        Ok(())
    }

    /// Sets every parameter from a flat slice in [`Mlp::write_params`] order.
    ///
    /// # Examples
    /// ```
    /// use fusedprop::Mlp;
    /// // Save a model's parameters and load them into another.
    /// let trained = Mlp::<4, 8, 3>::new(1);
    /// let mut params = vec![0.0; Mlp::<4, 8, 3>::PARAMS];
    /// trained.write_params(&mut params)?;
    /// let mut copy = Mlp::<4, 8, 3>::ZERO;
    /// copy.read_params(&params)?;
    /// assert_eq!(copy, trained);
    /// // Wrong length or a non-finite value: an error, and the model is unchanged.
    /// let err = copy.read_params(&[0.0; 5]).unwrap_err();
    /// assert_eq!(err.to_string(), "length mismatch: 5 parameters for a model of 67 parameters");
    /// assert_eq!(copy, trained);
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] unless `params.len() == PARAMS`; [`Error::NonFinite`] if a
    /// value is not finite. On error the model is unchanged.
    pub fn read_params(&mut self, params: &[f32]) -> Result<(), Error> {
        let () = Self::SHAPE;
        same_len("parameters", Self::PARAMS, params.len())?;
        if let Some(i) = params.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "weight",
                index: Some(i),
            });
        }
        let mut it = params.iter().copied();
        let (w1, b1) = self.hidden.params_mut();
        w1.iter_mut().flatten().chain(b1.iter_mut()).for_each(|w| {
            *w = it.next().unwrap_or(0.0);
        });
        let (w2, b2) = self.output.params_mut();
        w2.iter_mut().flatten().chain(b2.iter_mut()).for_each(|w| {
            *w = it.next().unwrap_or(0.0);
        });
        Ok(())
    }

    /// Class probabilities (softmax outputs) for each sample.
    ///
    /// # Examples
    /// ```
    /// use fusedprop::Mlp;
    /// let m = Mlp::<4, 32, 3>::new(7);
    /// let x = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]];
    /// let mut proba = [[0.0; 3]; 2]; // one row of class probabilities per sample
    /// m.predict_proba(&x, &mut proba)?;
    /// for p in proba {
    ///     assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    /// }
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if `out.len() != x.len()`; [`Error::NonFinite`] (`"input"`)
    /// if an input is not finite, or (`"logit"`) if a sample's logits overflow `f32` (finite
    /// inputs and weights so large that `W x` does not fit), which would make its
    /// probabilities NaN. On error `out` may be partly written.
    pub fn predict_proba(&self, x: &[[f32; I]], out: &mut [[f32; O]]) -> Result<(), Error> {
        let () = Self::SHAPE;
        crate::simd::warn_once_if_slow_build();
        same_len("outputs", x.len(), out.len())?;
        let mut z = [lanes::zero(); O];
        for (block, (xs, os)) in x.chunks(LANES).zip(out.chunks_mut(LANES)).enumerate() {
            self.logits_block(xs, block * LANES, &mut z)?;
            finite_logits(&z, xs.len(), block * LANES)?;
            let s = exp_shifted_block(&mut z);
            for v in &mut z {
                *v = lanes::div(*v, s);
            }
            lanes::store_rows(&z, os);
        }
        Ok(())
    }

    /// The most probable class of each sample (the first one on ties).
    ///
    /// # Examples
    /// ```
    /// use fusedprop::{Error, Mlp};
    /// let m = Mlp::<4, 32, 3>::new(7);
    /// let x = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]];
    /// let mut classes = [0u32; 3]; // one class per sample
    /// m.predict(&x, &mut classes)?;
    /// assert!(classes.iter().all(|&c| c < 3));
    /// // A NaN input is refused and named:
    /// let e = m.predict(&[[f32::NAN; 4]], &mut [0]).unwrap_err();
    /// assert_eq!(e, Error::NonFinite { what: "input", index: Some(0) });
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Mlp::predict_proba`].
    pub fn predict(&self, x: &[[f32; I]], out: &mut [u32]) -> Result<(), Error> {
        let () = Self::SHAPE;
        crate::simd::warn_once_if_slow_build();
        same_len("outputs", x.len(), out.len())?;
        let mut z = [lanes::zero(); O];
        for (block, (xs, os)) in x.chunks(LANES).zip(out.chunks_mut(LANES)).enumerate() {
            self.logits_block(xs, block * LANES, &mut z)?;
            finite_logits(&z, xs.len(), block * LANES)?;
            let best = crate::activation::argmax_block(&z).to_array();
            for (o, b) in os.iter_mut().zip(best) {
                *o = b as u32;
            }
        }
        Ok(())
    }

    /// The most probable class of one sample (the first one on ties).
    ///
    /// A latency path for one sample: it vectorizes over the inputs of each neuron rather
    /// than over sixteen samples (fifteen of which would be padding), so it sums each
    /// neuron's products in another order than [`Mlp::predict`]. The two agree except when
    /// two classes' logits are within a few rounding errors of each other.
    ///
    /// ```
    /// use fusedprop::Mlp;
    /// let m = Mlp::<4, 32, 3>::new(7);
    /// let x = [[5.1, 3.5, 1.4, 0.2]];
    /// let mut batch = [0];
    /// m.predict(&x, &mut batch)?;
    /// assert_eq!(m.predict_one(&x[0])?, batch[0]);
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NonFinite`] (`"input"`, index 0) if an input is not finite, or (`"logit"`,
    /// index 0) if the logits overflow `f32`.
    #[inline]
    pub fn predict_one(&self, x: &[f32; I]) -> Result<u32, Error> {
        let () = Self::SHAPE;
        crate::simd::warn_once_if_slow_build();
        // PERF: an integer maximum over the magnitudes' bits vectorizes; finite means below
        // the bits of infinity.
        let worst = x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff));
        if worst >= f32::INFINITY.to_bits() {
            return Err(Error::NonFinite {
                what: "input",
                index: Some(0),
            });
        }
        let mut h = [0.0f32; H];
        self.hidden.forward_one::<true>(x, &mut h);
        let mut z = [0.0f32; O];
        self.output.forward_one::<false>(&h, &mut z);
        if !z.iter().all(|v| v.is_finite()) {
            // As `predict`: finite inputs can still overflow the logits.
            return Err(Error::NonFinite {
                what: "logit",
                index: Some(0),
            });
        }
        let mut best = 0;
        for (j, &v) in z.iter().enumerate().skip(1) {
            if v > z[best] {
                best = j;
            }
        }
        Ok(best as u32)
    }

    /// Mean sparse categorical cross-entropy over a batch.
    ///
    /// # Examples
    /// ```
    /// use fusedprop::Mlp;
    /// // All-zero weights give equal probabilities: the loss is ln 3 for any label.
    /// let m = Mlp::<4, 8, 3>::ZERO;
    /// let loss = m.loss(&[[1.0, 2.0, 3.0, 4.0], [0.5; 4]], &[0, 2])?;
    /// assert!((loss - 3f32.ln()).abs() < 1e-6);
    /// assert!(m.loss(&[[0.0; 4]], &[3]).is_err()); // label 3 of 3 classes
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::LengthMismatch`], [`Error::LabelOutOfRange`],
    /// [`Error::NonFinite`] for a non-finite input or loss (a sample's, or the sum over the batch
    /// with `index: None`).
    pub fn loss(&self, x: &[[f32; I]], labels: &[u32]) -> Result<f32, Error> {
        let () = Self::SHAPE;
        crate::simd::warn_once_if_slow_build();
        check_batch::<I, O>(x, labels)?;
        let mut z = [lanes::zero(); O];
        // Summed as the training step sums: per lane within a tile, then tile by tile, so
        // that `loss` returns bit for bit what `train_step` and `gradients` return.
        // Errors come in the training step's order too: a tile's inputs are all checked
        // before its first loss.
        let mut total = lanes::zero();
        for (t, (xt, lt)) in x
            .chunks(TILE_SAMPLES)
            .zip(labels.chunks(TILE_SAMPLES))
            .enumerate()
        {
            let first = t * TILE_SAMPLES;
            if let Some(bad) = xt.iter().position(|r| !r.iter().all(|v| v.is_finite())) {
                return Err(Error::NonFinite {
                    what: "input",
                    index: Some(first + bad),
                });
            }
            let mut tile = lanes::zero();
            for (b, (xs, ls)) in xt.chunks(LANES).zip(lt.chunks(LANES)).enumerate() {
                let start = first + b * LANES;
                self.logits_block(xs, start, &mut z)?;
                let l = xent_block(&mut z, ls, 0.0, false);
                finite_loss(l, ls.len(), start)?;
                tile += l;
            }
            total += tile;
        }
        finite_total(total)?;
        Ok(lanes::sum(total) / x.len() as f32)
    }

    /// Fraction of samples whose predicted class is the label.
    ///
    /// # Examples
    /// ```
    /// use fusedprop::Mlp;
    /// // Class 0 when the first input is larger, class 1 otherwise.
    /// let m = Mlp::<2, 2, 2>::from_weights(
    ///     [[1.0, 0.0], [0.0, 1.0]], [0.0; 2], [[1.0, 0.0], [0.0, 1.0]], [0.0; 2],
    /// )?;
    /// let x = [[2.0, 1.0], [1.0, 2.0], [3.0, 0.0], [0.0, 1.0]];
    /// assert_eq!(m.accuracy(&x, &[0, 1, 0, 0])?, 0.75);
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::LengthMismatch`], [`Error::LabelOutOfRange`],
    /// [`Error::NonFinite`] for a non-finite input, or overflowing logits as in
    /// [`Mlp::predict`] (where the predicted class would be meaningless).
    pub fn accuracy(&self, x: &[[f32; I]], labels: &[u32]) -> Result<f32, Error> {
        let () = Self::SHAPE;
        crate::simd::warn_once_if_slow_build();
        check_batch::<I, O>(x, labels)?;
        let mut z = [lanes::zero(); O];
        let mut correct = 0usize;
        for (block, (xs, ls)) in x.chunks(LANES).zip(labels.chunks(LANES)).enumerate() {
            self.logits_block(xs, block * LANES, &mut z)?;
            finite_logits(&z, xs.len(), block * LANES)?;
            let best = crate::activation::argmax_block(&z).to_array();
            correct += ls
                .iter()
                .zip(best)
                .filter(|(l, b)| **l as f32 == *b)
                .count();
        }
        Ok(correct as f32 / x.len() as f32)
    }

    /// Gradients of the mean loss over the batch with respect to every parameter, into
    /// `grads` (overwritten); returns the mean loss. The model is not changed.
    ///
    /// # Examples
    /// ```
    /// use fusedprop::{Gradients, Mlp, Workspace};
    /// let m = Mlp::<4, 8, 3>::new(3);
    /// let (x, y) = ([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, -0.5, 0.25]], [2, 0]);
    /// let mut grads = Gradients::ZERO;
    /// let loss = m.gradients(&x, &y, &mut grads, &mut Workspace::new())?;
    /// assert_eq!(loss, m.loss(&x, &y)?);
    /// // The output biases' gradient is the mean of (p - onehot): it sums to 0.
    /// assert!(grads.output.b.iter().sum::<f32>().abs() < 1e-6);
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Mlp::loss`], and [`Error::NonFinite`] (`"gradient"`, index in
    /// [`Mlp::write_params`] order) if a gradient overflows `f32` although the loss is finite.
    /// On error `grads` may be partly written.
    pub fn gradients(
        &self,
        x: &[[f32; I]],
        labels: &[u32],
        grads: &mut Gradients<I, H, O>,
        ws: &mut Workspace<I, H, O>,
    ) -> Result<f32, Error> {
        let () = Self::SHAPE;
        crate::simd::warn_once_if_slow_build();
        check_batch::<I, O>(x, labels)?;
        // `&self` cannot run the fused update; a scratch copy would cost a model. Instead the
        // shared pass is driven with `Finish::Gradients`, which never writes a weight.
        let mut this = MlpRef::Shared(self);
        let loss = run(
            &mut this,
            Source::Rows { x, labels },
            ws,
            Finish::Gradients(grads),
        )?;
        // A finite loss does not bound the gradient (`dW2 = dz a^T` overflows with huge
        // activations): found by the `inference` fuzz target, which got `Ok` with `-inf`.
        let flat = grads.hidden.w.iter().flatten().chain(&grads.hidden.b);
        let mut flat = flat
            .chain(grads.output.w.iter().flatten())
            .chain(&grads.output.b);
        match flat.position(|g| !g.is_finite()) {
            None => Ok(loss),
            Some(index) => Err(Error::NonFinite {
                what: "gradient",
                index: Some(index),
            }),
        }
    }

    /// One step of SGD on the batch (full batch or mini-batch), the update fused into the
    /// backward pass; returns the mean loss computed *before* the update (as Keras reports
    /// it).
    ///
    /// # Examples
    /// ```
    /// use fusedprop::{Error, Mlp, Sgd, Workspace};
    /// let mut m = Mlp::<2, 8, 2>::new(5);
    /// let (x, y) = ([[0.0, 1.0], [1.0, 0.0]], [1, 0]);
    /// let (sgd, mut ws) = (Sgd::new(0.5)?, Workspace::new());
    /// let first = m.train_step(&x, &y, &sgd, &mut ws)?;
    /// let second = m.train_step(&x, &y, &sgd, &mut ws)?;
    /// assert!(second < first);
    /// // A refused step changes nothing:
    /// let before = m.clone();
    /// let e = m.train_step(&[[f32::INFINITY, 0.0]], &[0], &sgd, &mut ws).unwrap_err();
    /// assert_eq!(e, Error::NonFinite { what: "input", index: Some(0) });
    /// assert_eq!(m, before);
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::LengthMismatch`], [`Error::LabelOutOfRange`] (checked
    /// before any work), [`Error::NonFinite`] for a non-finite input or loss,
    /// [`Error::UpdateOverflow`] if the gradient bound says the update could overflow `f32`.
    /// On error every weight is bit for bit unchanged.
    pub fn train_step(
        &mut self,
        x: &[[f32; I]],
        labels: &[u32],
        sgd: &Sgd,
        ws: &mut Workspace<I, H, O>,
    ) -> Result<f32, Error> {
        let () = Self::SHAPE;
        crate::simd::warn_once_if_slow_build();
        check_batch::<I, O>(x, labels)?;
        let mut this = MlpRef::Unique(self);
        run(
            &mut this,
            Source::Rows { x, labels },
            ws,
            Finish::Sgd(sgd.learning_rate()),
        )
    }

    /// [`Mlp::train_step`] on a batch packed once into lanes ([`PackedBatch`]): no transposes
    /// and no input checks on every step, which is most of a small network's step. Gives bit
    /// for bit the loss and the weights of `train_step` on the same rows.
    ///
    /// # Examples
    /// ```
    /// use fusedprop::{Mlp, PackedBatch, Sgd, Workspace};
    /// let x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    /// let batch = PackedBatch::<2, 1>::from_rows(&x, &[0, 1, 1, 0])?;
    /// let mut model = Mlp::<2, 16, 2>::new(42);
    /// let mut ws = Workspace::new();
    /// let sgd = Sgd::new(0.5)?;
    /// let first = model.train_step_packed(&batch, &sgd, &mut ws)?;
    /// for _ in 0..500 {
    ///     model.train_step_packed(&batch, &sgd, &mut ws)?;
    /// }
    /// assert!(model.train_step_packed(&batch, &sgd, &mut ws)? < first);
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::EmptyBatch`] for an empty batch, [`Error::LabelOutOfRange`] (checked before
    /// any work), [`Error::NonFinite`] for a non-finite loss, [`Error::UpdateOverflow`] if
    /// the gradient bound says the update could overflow `f32`. On error every weight is bit
    /// for bit unchanged.
    pub fn train_step_packed<const B: usize>(
        &mut self,
        batch: &PackedBatch<I, B>,
        sgd: &Sgd,
        ws: &mut Workspace<I, H, O>,
    ) -> Result<f32, Error> {
        let () = Self::SHAPE;
        crate::simd::warn_once_if_slow_build();
        let src = Source::packed(batch);
        check_source::<I, O>(src)?;
        let mut this = MlpRef::Unique(self);
        run(&mut this, src, ws, Finish::Sgd(sgd.learning_rate()))
    }

    /// Both layers, mutable, for the crate's own fused updates.
    #[cfg(feature = "rayon")]
    pub(crate) fn layers_mut(&mut self) -> (&mut Dense<I, H>, &mut Dense<H, O>) {
        (&mut self.hidden, &mut self.output)
    }

    /// Loads one block and runs it to the logits.
    #[inline(always)]
    fn logits_block(&self, xs: &[[f32; I]], first: usize, z: &mut [Lane; O]) -> Result<(), Error> {
        let mut x = [lanes::zero(); I];
        let mut a = [lanes::zero(); H];
        lanes::load_rows(xs, &mut x);
        check_inputs(&x, xs, first)?;
        self.hidden.forward_block(&x, &mut a);
        relu_block(&mut a);
        self.output.forward_block(&a, z);
        Ok(())
    }
}

/// The model, shared (for `gradients`) or unique (for `train_step`).
pub(crate) enum MlpRef<'a, const I: usize, const H: usize, const O: usize> {
    Shared(&'a Mlp<I, H, O>),
    Unique(&'a mut Mlp<I, H, O>),
}

impl<const I: usize, const H: usize, const O: usize> MlpRef<'_, I, H, O> {
    fn get(&self) -> &Mlp<I, H, O> {
        match self {
            MlpRef::Shared(m) => m,
            MlpRef::Unique(m) => m,
        }
    }
}

/// Where the samples of a step come from: rows, transposed into lanes tile by tile, or a
/// [`PackedBatch`] already in lanes.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a, const I: usize> {
    Rows {
        x: &'a [[f32; I]],
        labels: &'a [u32],
    },
    Packed {
        x: &'a [[Lane; I]],
        y: &'a [Lane],
        n: usize,
        max_x: Lane,
        /// [`PackedBatch`]'s first label that `f32` does not hold exactly, for the error.
        inexact_label: Option<(usize, u32)>,
    },
}

impl<'a, const I: usize> Source<'a, I> {
    pub(crate) fn packed<const B: usize>(batch: &'a PackedBatch<I, B>) -> Self {
        let blocks = batch.blocks();
        Source::Packed {
            x: &batch.x[..blocks],
            y: &batch.y[..blocks],
            n: batch.n,
            max_x: batch.max_x,
            inexact_label: batch.inexact_label,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Source::Rows { x, .. } => x.len(),
            Source::Packed { n, .. } => *n,
        }
    }

    /// The number of tiles of [`TILE_SAMPLES`] samples.
    pub(crate) fn tiles(&self) -> usize {
        self.len().div_ceil(TILE_SAMPLES)
    }
}

/// The per-tile buffers of a training pass: inputs (for rows), hidden activations, hidden
/// gradients and output gradients, for [`TILE_BLOCKS`] blocks.
pub(crate) struct TileBufs<'a, const I: usize, const H: usize, const O: usize> {
    pub(crate) x: &'a mut [[Lane; I]; TILE_BLOCKS],
    pub(crate) a: &'a mut [[Lane; H]; TILE_BLOCKS],
    pub(crate) dh: &'a mut [[Lane; H]; TILE_BLOCKS],
    pub(crate) z: &'a mut [[Lane; O]; TILE_BLOCKS],
}

/// Forward and backward pass of tile `t` up to (not including) the parameter gradients:
/// fills `bufs` with the inputs (rows only), activations, `dh` and `dz = (p - onehot) / N`;
/// returns the number of blocks and the tile's per-lane loss sum, and widens `max_x` and
/// `max_a`. The model is only read.
pub(crate) fn tile_pass<const I: usize, const H: usize, const O: usize>(
    m: &Mlp<I, H, O>,
    src: Source<'_, I>,
    t: usize,
    bufs: &mut TileBufs<'_, I, H, O>,
    max_x: &mut Lane,
    max_a: &mut Lane,
) -> Result<(usize, Lane), Error> {
    let n = src.len();
    let inv_n = 1.0 / n as f32;
    let first = t * TILE_SAMPLES;
    let count = (n - first).min(TILE_SAMPLES);
    let blocks = count.div_ceil(LANES);
    // PERF: the tile runs stage by stage (hidden layer of every block, then output layer of
    // every block, then the loss of every block) rather than block by block. One block's
    // path from inputs to loss is a chain of dependent steps (a 32-long FMA chain per
    // logit, then exp, then ln) longer than the out-of-order window can hide; loops over
    // independent blocks give the core the next block's work to overlap with.
    if let Source::Rows { x, .. } = src {
        for b in 0..blocks {
            let start = first + b * LANES;
            let xs = &x[start..start + (n - start).min(LANES)];
            let xb = &mut bufs.x[b];
            lanes::load_rows(xs, xb);
            check_inputs(xb, xs, start)?;
            for &v in xb.iter() {
                *max_x = lanes::max(*max_x, lanes::abs(v));
            }
        }
    }
    let xt = tile_lanes(src, t, blocks, &bufs.x[..]);
    let a = &mut bufs.a[..blocks];
    m.hidden.forward_blocks(xt, a);
    // ReLU and the running maximum in one pass over the activations, with two maxima in
    // flight (one chain would serialize on the max latency). The padding lanes of a partial
    // last block hold `relu(b1)` (their input is zero), which can be huge: they are left out
    // of the maximum, or they would refuse a step that the real samples allow.
    let mut mx = [*max_a; 2];
    let full = count / LANES;
    for ab in a[..full].iter_mut() {
        for (i, v) in ab.iter_mut().enumerate() {
            *v = lanes::relu(*v);
            // NaN-free here only if finite; a NaN activation shows up in the loss check.
            mx[i & 1] = lanes::max(mx[i & 1], *v);
        }
    }
    if let Some(ab) = a.get_mut(full) {
        // The partial block's own maximum, its padding lanes cleared with one select.
        let mut bm = [lanes::zero(); 2];
        for (i, v) in ab.iter_mut().enumerate() {
            *v = lanes::relu(*v);
            bm[i & 1] = lanes::max(bm[i & 1], *v);
        }
        let bm = lanes::zero_padding(lanes::max(bm[0], bm[1]), lanes::valid(count % LANES));
        mx[0] = lanes::max(mx[0], bm);
    }
    *max_a = lanes::max(mx[0], mx[1]);
    m.output.forward_blocks(a, &mut bufs.z[..blocks]);
    let mut loss = lanes::zero();
    for (b, zb) in bufs.z[..blocks].iter_mut().enumerate() {
        let start = first + b * LANES;
        let valid_n = (n - start).min(LANES);
        let (y, valid) = match src {
            Source::Rows { labels, .. } => {
                let ls = &labels[start..start + valid_n];
                (lanes::labels(ls), lanes::valid(valid_n))
            }
            Source::Packed { y, .. } => {
                let yb = y[start / LANES];
                (yb, lanes::valid_from_labels(yb))
            }
        };
        let l = xent_lanes(zb, y, valid, inv_n, true);
        finite_loss(l, valid_n, start)?;
        loss += l;
    }
    hidden_grad_tile(
        &m.output,
        &mut bufs.dh[..blocks],
        &bufs.a[..blocks],
        &bufs.z[..blocks],
    );
    Ok((blocks, loss))
}

/// The inputs of tile `t` in lanes: from the packed batch, or as `tile_pass` loaded them.
fn tile_lanes<'a, const I: usize>(
    src: Source<'a, I>,
    t: usize,
    blocks: usize,
    loaded: &'a [[Lane; I]],
) -> &'a [[Lane; I]] {
    match src {
        Source::Rows { .. } => &loaded[..blocks],
        Source::Packed { x, .. } => {
            let b0 = t * TILE_BLOCKS;
            &x[b0..b0 + blocks]
        }
    }
}

/// A tile's inputs for the weight gradients: in lanes, and as rows when the model has 16
/// inputs or more (see [`tile_inputs`]).
#[derive(Clone, Copy)]
pub(crate) struct TileX<'a, const I: usize> {
    pub(crate) lanes: &'a [[Lane; I]],
    pub(crate) rows: Option<&'a [[f32; I]]>,
}

/// The inputs of tile `t` in lanes (from the packed batch, or as `tile_pass` loaded them
/// into `wx`) and, for models with 16 inputs or more, as rows for the weight gradients
/// (`param_grads_tile`'s row kernel): the caller's rows, or the packed tile transposed into
/// `wx`, whose memory a packed batch leaves unused.
pub(crate) fn tile_inputs<'a, const I: usize>(
    src: Source<'a, I>,
    t: usize,
    blocks: usize,
    wx: &'a mut [[Lane; I]],
) -> TileX<'a, I> {
    let first = t * TILE_SAMPLES;
    let count = (src.len() - first).min(TILE_SAMPLES);
    let wide = lanes::ROW_VIEW && I >= 16;
    match src {
        Source::Rows { x, .. } => {
            let rows = &x[first..first + count];
            TileX {
                lanes: &wx[..blocks],
                rows: wide.then_some(rows),
            }
        }
        Source::Packed { x, .. } => {
            let b0 = t * TILE_BLOCKS;
            let xt = &x[b0..b0 + blocks];
            if !wide {
                return TileX {
                    lanes: xt,
                    rows: None,
                };
            }
            let rows = &mut lanes::as_rows_mut(wx)[..count];
            lanes::blocks_to_rows(xt, I - I % 16, rows);
            TileX {
                lanes: xt,
                rows: Some(rows),
            }
        }
    }
}

/// The shared forward + backward pass over a whole batch, tile by tile.
///
/// The loss is summed per lane within each tile and the tile sums are added in tile order,
/// so that a parallel pass over tiles reproduces it bit for bit.
pub(crate) fn run<const I: usize, const H: usize, const O: usize>(
    model: &mut MlpRef<'_, I, H, O>,
    src: Source<'_, I>,
    ws: &mut Workspace<I, H, O>,
    finish: Finish<'_, I, H, O>,
) -> Result<f32, Error> {
    let n = src.len();
    let tiles = src.tiles();
    let mut fw = Forward {
        loss: lanes::zero(),
        max_x: match src {
            Source::Rows { .. } => lanes::zero(),
            Source::Packed { max_x, .. } => max_x,
        },
        max_a: lanes::zero(),
    };
    let mut finish = finish;
    let Workspace {
        x: wx,
        a,
        dh,
        z,
        acc,
    } = ws;
    for t in 0..tiles {
        let m = model.get();
        let mut bufs = TileBufs {
            x: &mut *wx,
            a: &mut *a,
            dh: &mut *dh,
            z: &mut *z,
        };
        let (blocks, tile_loss) = tile_pass(m, src, t, &mut bufs, &mut fw.max_x, &mut fw.max_a)?;
        fw.loss += tile_loss;
        let xt = tile_inputs(src, t, blocks, &mut wx[..]);
        let (a, z) = (&a[..blocks], &z[..blocks]);
        let dh = &dh[..blocks];
        let last = t + 1 == tiles;
        if !last {
            // Partial sums of the earlier tiles, in tile order.
            let target: &mut Gradients<I, H, O> = match &mut finish {
                Finish::Gradients(g) => g,
                Finish::Sgd(_) => acc,
            };
            accumulate(a, z, xt, dh, target, t == 0);
            continue;
        }
        finite_total(fw.loss)?;
        match &mut finish {
            Finish::Gradients(g) => accumulate(a, z, xt, dh, g, t == 0),
            Finish::Sgd(lr) => {
                // `train_step` always passes its model as unique.
                let MlpRef::Unique(m) = model else {
                    return Err(Error::EmptyBatch);
                };
                check_update(m, &fw, *lr)?;
                let prior = if tiles > 1 { Some(&*acc) } else { None };
                apply_sgd(m, a, z, xt, dh, *lr, prior);
            }
        }
    }
    Ok(lanes::sum(fw.loss) / n as f32)
}

/// Stores (`first`) or adds the parameter gradients of one tile into `target`.
pub(crate) fn accumulate<const I: usize, const H: usize, const O: usize>(
    a: &[[Lane; H]],
    z: &[[Lane; O]],
    x: TileX<'_, I>,
    dh: &[[Lane; H]],
    target: &mut Gradients<I, H, O>,
    first: bool,
) {
    let (out_sink, hid_sink): (Sink<'_, H, O>, Sink<'_, I, H>) = if first {
        (
            Sink::Store(&mut target.output),
            Sink::Store(&mut target.hidden),
        )
    } else {
        (Sink::Add(&mut target.output), Sink::Add(&mut target.hidden))
    };
    param_grads_tile(a, None, z, out_sink);
    param_grads_tile(x.lanes, x.rows, dh, hid_sink);
}

/// The fused update from the last tile: `W -= lr * (prior + this tile's gradient)`.
pub(crate) fn apply_sgd<const I: usize, const H: usize, const O: usize>(
    m: &mut Mlp<I, H, O>,
    a: &[[Lane; H]],
    z: &[[Lane; O]],
    x: TileX<'_, I>,
    dh: &[[Lane; H]],
    lr: f32,
    prior: Option<&Gradients<I, H, O>>,
) {
    let (w2, b2) = m.output.params_mut();
    param_grads_tile::<_, _, Sgd>(
        a,
        None,
        z,
        Sink::Update {
            w: w2,
            b: b2,
            state: &mut [],
            step: &lr,
            prior: prior.map(|p| &p.output),
        },
    );
    let (w1, b1) = m.hidden.params_mut();
    param_grads_tile::<_, _, Sgd>(
        x.lanes,
        x.rows,
        dh,
        Sink::Update {
            w: w1,
            b: b1,
            state: &mut [],
            step: &lr,
            prior: prior.map(|p| &p.hidden),
        },
    );
}

/// `dh = (W2^T dz) * [a > 0]` for each block of a tile, with the weights before the update.
fn hidden_grad_tile<const H: usize, const O: usize>(
    output: &Dense<H, O>,
    dh: &mut [[Lane; H]],
    a: &[[Lane; H]],
    dz: &[[Lane; O]],
) {
    output.backward_input_blocks(dz, dh);
    for (dhb, ab) in dh.iter_mut().zip(a) {
        for (d, &av) in dhb.iter_mut().zip(ab) {
            *d = lanes::relu_mask(av, *d);
        }
    }
}

/// Refuses an update that could overflow (module docs, "Refusing a step").
pub(crate) fn check_update<const I: usize, const H: usize, const O: usize>(
    m: &Mlp<I, H, O>,
    fw: &Forward,
    lr: f32,
) -> Result<(), Error> {
    let max_x = f64::from(lanes::reduce_max(fw.max_x)).max(1.0);
    let max_a = f64::from(lanes::reduce_max(fw.max_a)).max(1.0);
    let w2 = m.output.max_abs();
    let out_ok = update_is_safe(w2, max_a, lr);
    let hid_bound = O as f64 * f64::from(w2).max(1.0) * max_x;
    let hid_ok = update_is_safe(m.hidden.max_abs(), hid_bound, lr);
    if out_ok && hid_ok {
        Ok(())
    } else {
        Err(Error::UpdateOverflow)
    }
}

/// Checks a source before any work: non-empty and (for a packed batch, whose labels were not
/// checked against `O` when it was filled) labels in range.
pub(crate) fn check_source<const I: usize, const O: usize>(
    src: Source<'_, I>,
) -> Result<(), Error> {
    match src {
        Source::Rows { x, labels } => check_batch::<I, O>(x, labels),
        Source::Packed {
            y,
            n,
            inexact_label,
            ..
        } => {
            if n == 0 {
                return Err(Error::EmptyBatch);
            }
            for (b, &yb) in y.iter().enumerate() {
                if !lanes::labels_below(yb, O) {
                    let (s, l) = lanes::to_array(yb)
                        .into_iter()
                        .enumerate()
                        .find(|&(_, l)| l >= O as f32)
                        .unwrap_or((0, 0.0));
                    let index = b * LANES + s;
                    // The labels are floats here: from 2^24 on they are rounded, so report
                    // the one the caller passed. The first out-of-range sample with such a
                    // label is the first such label of the batch (every one is out of range).
                    let label = match inexact_label {
                        Some((i, label)) if i == index => label,
                        _ => l as u32,
                    };
                    return Err(Error::LabelOutOfRange {
                        index,
                        label,
                        classes: O,
                    });
                }
            }
            Ok(())
        }
    }
}

pub(crate) fn check_batch<const I: usize, const O: usize>(
    x: &[[f32; I]],
    labels: &[u32],
) -> Result<(), Error> {
    if x.is_empty() {
        return Err(Error::EmptyBatch);
    }
    same_len("labels", x.len(), labels.len())?;
    check_labels(labels, O)
}

/// Errors with the index of the first non-finite input of a loaded block.
#[inline(always)]
fn check_inputs<const I: usize>(
    x: &[Lane; I],
    rows: &[[f32; I]],
    first: usize,
) -> Result<(), Error> {
    let mut ok = lanes::zero();
    for &v in x {
        // x * 0 is 0 for finite x and NaN for NaN or infinity.
        ok += v * lanes::zero();
    }
    if lanes::all_finite(ok) {
        return Ok(());
    }
    let bad = rows
        .iter()
        .position(|r| !r.iter().all(|v| v.is_finite()))
        .unwrap_or(0);
    Err(Error::NonFinite {
        what: "input",
        index: Some(first + bad),
    })
}

/// Errors with the first of the block's `n` samples whose logits are not finite: finite
/// inputs and weights can still overflow `f32` (found by the `inference` fuzz target, where
/// inputs of `±f32::MAX` gave NaN probabilities).
#[inline(always)]
fn finite_logits<const O: usize>(z: &[Lane; O], n: usize, first: usize) -> Result<(), Error> {
    let mut ok = lanes::zero();
    for &v in z {
        // v * 0 is 0 for finite v and NaN for NaN or infinity.
        ok += v * lanes::zero();
    }
    match lanes::first_non_finite(ok, n) {
        None => Ok(()),
        Some(s) => Err(Error::NonFinite {
            what: "logit",
            index: Some(first + s),
        }),
    }
}

/// Errors with the index of the first sample whose loss is not finite.
#[inline(always)]
pub(crate) fn finite_loss(l: Lane, n: usize, first: usize) -> Result<(), Error> {
    // PERF: one vector test on the common path; the scalar scan (which skips padded lanes)
    // only when some lane is not finite.
    if lanes::all_finite(l) {
        return Ok(());
    }
    match lanes::first_non_finite(l, n) {
        None => Ok(()),
        Some(s) => Err(Error::NonFinite {
            what: "loss",
            index: Some(first + s),
        }),
    }
}

/// Refuses a batch whose samples' losses are each finite but whose sum overflows `f32`
/// (found by the `train_step` fuzz target: the step was applied and returned an infinite
/// loss). Checked before the last tile writes a weight.
#[inline]
pub(crate) fn finite_total(per_lane: Lane) -> Result<(), Error> {
    if lanes::sum(per_lane).is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite {
            what: "loss",
            index: None,
        })
    }
}

fn shift(e: Error, offset: usize) -> Error {
    match e {
        Error::NonFinite {
            what,
            index: Some(i),
        } => Error::NonFinite {
            what,
            index: Some(i + offset),
        },
        other => other,
    }
}

impl<const I: usize, const H: usize, const O: usize> fmt::Debug for Mlp<I, H, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mlp")
            .field("hidden", &self.hidden)
            .field("output", &self.output)
            .finish()
    }
}

/// A Keras-like summary: layer, output shape, parameter count.
///
/// ```
/// let s = format!("{}", fusedprop::Mlp::<4, 32, 3>::ZERO);
/// assert!(s.contains("160") && s.contains("99") && s.contains("Total params: 259"));
/// ```
impl<const I: usize, const H: usize, const O: usize> fmt::Display for Mlp<I, H, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut title = StrBuf::<40>::new();
        fmt::Write::write_fmt(&mut title, format_args!("Mlp<{I}, {H}, {O}>"))?;
        summary_header(f, title.as_str())?;
        summary_row(f, "dense (Dense, relu)", H, Dense::<I, H>::PARAMS)?;
        summary_row(f, "dense_1 (Dense, softmax)", O, Dense::<H, O>::PARAMS)?;
        summary_footer(f, Self::PARAMS)
    }
}

const THIN: &str = "-----------------------------------------------------------------";
const THICK: &str = "=================================================================";

/// The header of a Keras-like summary of a model named `name`.
pub(crate) fn summary_header(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    writeln!(f, "Model: \"{name}\"")?;
    writeln!(f, "{THIN}")?;
    writeln!(
        f,
        "{:<28}{:<22}{:>15}",
        "Layer (type)", "Output Shape", "Param #"
    )?;
    writeln!(f, "{THICK}")
}

/// One layer's line of a summary: its name, `(None, units)` and its parameter count.
pub(crate) fn summary_row(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    units: usize,
    params: usize,
) -> fmt::Result {
    let mut shape = StrBuf::<24>::new();
    fmt::Write::write_fmt(&mut shape, format_args!("(None, {units})"))?;
    writeln!(f, "{:<28}{:<22}{:>15}", name, shape.as_str(), params)
}

/// The totals that end a summary (no line break after the last line).
pub(crate) fn summary_footer(f: &mut fmt::Formatter<'_>, params: usize) -> fmt::Result {
    writeln!(f, "{THICK}")?;
    writeln!(f, "Total params: {params}")?;
    writeln!(f, "Trainable params: {params}")?;
    write!(f, "Non-trainable params: 0")
}

/// A fixed-capacity string for formatting without a heap.
pub(crate) struct StrBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StrBuf<N> {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for StrBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
