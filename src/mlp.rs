//! `Mlp<I, H, O>`: Dense(I -> H, ReLU) -> Dense(H -> O, softmax), the network of the Keras
//! Iris tutorial: a thin wrapper of the [`Network`] of those two layers, with the API the
//! crate had before any network could be built (a `Workspace` that also holds SGD's step
//! count, `Gradients` with named layers).
//!
//! # The training step
//! Samples are processed in tiles of up to [`TILE_SAMPLES`] (eight blocks of sixteen where
//! `wide` has SIMD, one block elsewhere). For each tile:
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
//! whole Iris training set) no gradient is ever stored. The driver is the network's
//! ([`network`](crate::network), "The training step").
//!
//! # Refusing a step
//! Before the first weight is written the step knows the loss of every sample, the largest
//! input and activation of each layer and the largest `dL/dz`, and it bounds every gradient by
//! them. A step whose loss is not finite is refused with [`Error::NonFinite`], one whose bound
//! says an update could overflow `f32` with [`Error::UpdateOverflow`]; either leaves every
//! weight bit for bit as it was.

use core::fmt;

use crate::activation::{Linear, Relu};
use crate::batch::PackedBatch;
use crate::dense::{Dense, DenseGrads};
use crate::error::{Error, same_len};
use crate::head::SoftmaxCrossEntropy;
use crate::layer::Chain;
use crate::network::{NetWorkspace, Network, OptimizerState};
use crate::optim::Sgd;
use crate::summary::{StrBuf, summary_footer, summary_header, summary_row};

pub use crate::driver::TILE_SAMPLES;

/// The layers of an [`Mlp`]: `Dense<I, H, Relu>` then `Dense<H, O>` (the softmax is the
/// loss head's).
pub type MlpLayers<const I: usize, const H: usize, const O: usize> =
    Chain<Dense<I, H, Relu>, Dense<H, O>>;

/// The [`Network`] an [`Mlp`] wraps.
pub type MlpNetwork<const I: usize, const H: usize, const O: usize> =
    Network<MlpLayers<I, H, O>, SoftmaxCrossEntropy>;

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
    net: MlpNetwork<I, H, O>,
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
/// reused across steps, so that no step allocates: the network's [`NetWorkspace`] and SGD's
/// (step count only) [`OptimizerState`]. Its size is fixed by the model's shape: about
/// `4 * (TILE_SAMPLES * (I + 2H + 2O) + PARAMS)` bytes.
///
/// For large models build it where it will live, as for the model (see [`Mlp`], "Large
/// models"): `Workspace::new_boxed` with `std` (it allocates), or a `static` initialized
/// with [`Workspace::ZERO`], or a field of caller-provided memory. `Box::new(Workspace::ZERO)`
/// overflows a 2 MiB stack in debug builds for 784-256-10 (the workspace is 1.5 MB).
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Workspace<const I: usize, const H: usize, const O: usize> {
    pub(crate) net: NetWorkspace<MlpLayers<I, H, O>>,
    pub(crate) sgd: OptimizerState<MlpLayers<I, H, O>, Sgd>,
}

impl<const I: usize, const H: usize, const O: usize> Workspace<I, H, O> {
    /// A zeroed workspace, as a `const` for statics and in-place construction.
    pub const ZERO: Self = Self {
        net: NetWorkspace::ZERO,
        sgd: OptimizerState::ZERO,
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
        Self { net: Network::ZERO }
    };

    /// Number of trainable parameters: `I*H + H + H*O + O` (259 for 4-32-3).
    pub const PARAMS: usize = Dense::<I, H>::PARAMS + Dense::<H, O>::PARAMS;

    /// A model with Glorot-uniform weights and zero biases (Keras's defaults), from `seed`.
    /// The same seed gives the same model on every target.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let () = Self::SHAPE;
        Self {
            net: Network::new(seed),
        }
    }

    /// [`Mlp::new`] on the heap: the box is allocated zeroed in place
    /// (`bytemuck::zeroed_box`), with no copy of the model on any stack, then initialized
    /// there, so it works for large models in debug builds and on small thread stacks too
    /// (see "Large models" above).
    ///
    /// Std only; allocates the box.
    ///
    /// ```
    /// use fusedprop::Mlp;
    ///
    /// let big = Mlp::<784, 256, 10>::new_boxed(7);
    /// # assert!(big.hidden().weights().iter().flatten().any(|&w| w != 0.0));
    /// // The model `Mlp::new(7)` returns by value, built in place. (Not compared at this size:
    /// // unoptimized, `Mlp::new(7)` and the comparison need more than a test thread's 2 MiB.)
    /// assert_eq!(*Mlp::<4, 32, 3>::new_boxed(7), Mlp::new(7));
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
        self.net.init_glorot(seed);
    }

    /// A model from its two layers (the hidden layer's activation is ReLU whatever `A`).
    #[must_use]
    pub fn from_layers<A>(hidden: Dense<I, H, A>, output: Dense<H, O>) -> Self {
        let () = Self::SHAPE;
        Self {
            net: Network::from_layers(
                Chain(hidden.with_activation(Relu), output),
                SoftmaxCrossEntropy,
            ),
        }
    }

    /// The same model as the [`Network`] it wraps.
    #[must_use]
    pub fn as_network(&self) -> &MlpNetwork<I, H, O> {
        &self.net
    }

    /// The model as the [`Network`] it wraps, mutable: train it with any optimizer.
    pub fn as_network_mut(&mut self) -> &mut MlpNetwork<I, H, O> {
        &mut self.net
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
        Ok(Self::from_layers(hidden, output))
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
        Ok(Self::from_layers(hidden, output))
    }

    /// The hidden layer.
    #[must_use]
    #[inline]
    pub fn hidden(&self) -> &Dense<I, H, Relu> {
        &self.net.layers().0
    }

    /// The output layer.
    #[must_use]
    #[inline]
    pub fn output(&self) -> &Dense<H, O, Linear> {
        &self.net.layers().1
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
        self.net.write_params(out)
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
        self.net.read_params(params)
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
        self.net.predict_proba(x, out).map_err(logit)
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
        self.net.predict(x, out).map_err(logit)
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
        self.net.predict_one(x).map_err(logit)
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
        self.net.loss(x, labels)
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
        self.net.accuracy(x, labels).map_err(logit)
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
        // The network's gradients are a pair of layers' gradients in the workspace; `grads`
        // names them. The copy is one pass over the parameters, next to `6 N` FLOP each.
        let loss = self.net.gradients_in_workspace(x, labels, &mut ws.net);
        let (hidden, output) = &ws.net.acc;
        grads.hidden.clone_from(hidden);
        grads.output.clone_from(output);
        loss
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
        self.net
            .train_step(x, labels, sgd, &mut ws.sgd, &mut ws.net)
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
        self.net
            .train_step_packed(batch, sgd, &mut ws.sgd, &mut ws.net)
    }
}

/// The network names a non-finite output "output"; for a classifier's logits an `Mlp` has
/// always said "logit".
fn logit(e: Error) -> Error {
    match e {
        Error::NonFinite {
            what: "output",
            index,
        } => Error::NonFinite {
            what: "logit",
            index,
        },
        other => other,
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
            .field("hidden", self.hidden())
            .field("output", self.output())
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
