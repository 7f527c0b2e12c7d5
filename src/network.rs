//! [`Network<L, H>`](Network): any chain of dense layers `L` with a loss head `H`, trained by
//! any [`Optimizer`] with the update fused into the backward pass.
//!
//! ```
//! use fusedprop::{chain, Adam, Dense, NetWorkspace, Network, OptimizerState, Relu,
//!                 SoftmaxCrossEntropy, Tanh};
//!
//! type Layers = chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>];
//! let x = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]];
//! let y = [0, 1, 2];
//! let mut net = Network::<Layers, SoftmaxCrossEntropy>::new(7);
//! let adam = Adam::new(0.01)?;
//! let mut state = OptimizerState::new();
//! let mut ws = NetWorkspace::new();
//! let first = net.train_step(&x, &y, &adam, &mut state, &mut ws)?;
//! for _ in 0..100 {
//!     net.train_step(&x, &y, &adam, &mut state, &mut ws)?;
//! }
//! assert!(net.loss(&x, &y)? < first);
//! let mut classes = [0u32; 3];
//! net.predict(&x, &mut classes)?;
//! # Ok::<(), fusedprop::Error>(())
//! ```
//!
//! # The training step
//! Samples go through the network in tiles of [`TILE_SAMPLES`] (see [`Layer`] for the passes
//! of a tile). The parameter gradients of every tile but the last are summed into the
//! workspace; in the last tile each weight's gradient is completed and handed straight to the
//! optimizer's rule with its state, never stored and swept again. Every `dL/dz` of the last tile
//! is computed, with the weights before the update, before the first weight is written.
//!
//! # Refusing a step
//! A step is refused, and leaves the weights and the optimizer state bit for bit as they were,
//! when an input or a loss is not finite ([`Error::NonFinite`]), or when the bound on its update
//! could overflow `f32` ([`Error::UpdateOverflow`]): each layer's gradient is at most
//! `N max|dL/dz| max(|input|, 1)`, and the optimizer's rule says whether an update that large
//! keeps every weight, velocity and moment finite. The last layer's `max|dL/dz|` is measured;
//! a layer below it is first bounded in closed form, `max|f'| O max|W| max|dL/dz above|`
//! (free: no pass over its `dL/dz`), and only when that bound refuses is every layer's
//! `max|dL/dz|` measured (the step passes over its tiles once more) and the step decided on
//! those. So a step is refused exactly when the measured bound says so, and only such steps
//! pay for the measurement. On targets without SIMD (the narrow lane: Cortex-M, RISC-V, ...)
//! every layer's `max|dL/dz|` is measured as its tile is computed and there is no closed-form
//! bound: there a pass over `dL/dz` is cheap beside the step, and the code of a second pass
//! over the batch would cost flash. The same steps are refused either way.

use core::fmt;

use crate::batch::PackedBatch;
use crate::driver::{
    Finish, Inputs, NetRef, Seed, TILE_BLOCKS, TILE_SAMPLES, TileLoss, check_batch, check_inputs,
    finite_grads, finite_total, first_non_finite, run,
};
use crate::error::{Error, same_len};
use crate::head::{Classifier, Head, sealed::HeadKernel};
use crate::lanes::{self, LANES, Lane};
use crate::layer::{
    ActivationF64, Dim, InBlock, Layer, LayerInfo, LayerKernel, OutBlock, ShapeKernel,
};
use crate::optim::{ConstZero, Optimizer};
use crate::rng::SplitMix64;
use crate::summary::{StrBuf, summary_footer, summary_header, summary_row};

/// A row of a network's inputs, `[f32; I]` (for generic code over networks).
pub type InRow<L> = <<L as LayerKernel>::In as ShapeKernel>::Row;
/// A row of a network's outputs, `[f32; O]`.
pub type OutRow<L> = <<L as LayerKernel>::Out as ShapeKernel>::Row;
/// A row of zeros of the input shape of layers `L` (rows are `[f32; I]`, which is `Default`
/// only up to 32): for generic code, with `as_ref`/`as_mut` for the values.
#[must_use]
pub fn zero_input<L: Layer>() -> InRow<L> {
    <L::In as ShapeKernel>::ROW_ZERO
}

/// A row of zeros of the output shape of layers `L`.
#[must_use]
pub fn zero_output<L: Layer>() -> OutRow<L> {
    <L::Out as ShapeKernel>::ROW_ZERO
}

/// A sample's target for head `H` of a network with layers `L`: `u32` labels for
/// [`SoftmaxCrossEntropy`](crate::SoftmaxCrossEntropy), `[f32; O]` rows for the others.
pub type Target<L, H> = <H as HeadKernel<<L as LayerKernel>::Out>>::T;

/// A dense network: the layers `L` (a [`Dense`](crate::Dense) or a [`Chain`](crate::Chain) of
/// them, written with [`chain!`](crate::chain)) and the loss head `H`
/// ([`SoftmaxCrossEntropy`](crate::SoftmaxCrossEntropy),
/// [`MeanSquaredError`](crate::MeanSquaredError),
/// [`BinaryCrossEntropy`](crate::BinaryCrossEntropy)).
///
/// The weights are stored inline (`4 * PARAMS` bytes); nothing moves a network once it
/// exists, and [`Network::ZERO`] is a `const`, so a large one can live in a `static` and be
/// initialized in place with [`Network::init_glorot`] or [`Network::read_params`].
///
/// # Examples
/// Regression with mean squared error, and binary classification:
/// ```
/// use fusedprop::{chain, BinaryCrossEntropy, Dense, MeanSquaredError, Momentum, NetWorkspace,
///                 Network, OptimizerState, Relu, Sigmoid, Sgd};
///
/// let x = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]];
/// let t = [[1.0], [1.0], [2.0], [0.0]];
/// let mut reg = Network::<chain![Dense<2, 8, Sigmoid>, Dense<8, 1>], MeanSquaredError>::new(1);
/// let (opt, mut st, mut ws) = (Momentum::nesterov(0.1, 0.9)?, OptimizerState::new(), NetWorkspace::new());
/// for _ in 0..200 {
///     reg.train_step(&x, &t, &opt, &mut st, &mut ws)?;
/// }
/// assert!(reg.loss(&x, &t)? < 0.05);
///
/// let labels = [[1.0], [1.0], [1.0], [0.0]]; // x0 or x1
/// let mut clf = Network::<chain![Dense<2, 8, Relu>, Dense<8, 1>], BinaryCrossEntropy>::new(2);
/// let (sgd, mut st, mut ws) = (Sgd::new(0.5)?, OptimizerState::new(), NetWorkspace::new());
/// for _ in 0..300 {
///     clf.train_step(&x, &labels, &sgd, &mut st, &mut ws)?;
/// }
/// assert_eq!(clf.accuracy(&x, &[1, 1, 1, 0])?, 1.0);
/// # Ok::<(), fusedprop::Error>(())
/// ```
#[derive(Clone, PartialEq)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Network<L, H> {
    pub(crate) layers: L,
    head: H,
}

/// Scratch memory for training a [`Network`] with layers `L`: one tile of inputs and of every
/// layer's activations and gradients, and the partial gradient sums of a multi-tile batch.
/// Owned by the caller and reused, so that no step allocates; [`NetWorkspace::ZERO`] is a
/// `const` for statics.
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable), zeroable(bound = ""))]
pub struct NetWorkspace<L: Layer> {
    pub(crate) x: [InBlock<L>; TILE_BLOCKS],
    pub(crate) tile: L::Tile,
    pub(crate) acc: L::Grads,
}

impl<L: Layer> NetWorkspace<L> {
    /// A zeroed workspace, as a `const`.
    pub const ZERO: Self = Self {
        x: [<L::In as ShapeKernel>::BLOCK_ZERO; TILE_BLOCKS],
        tile: L::Tile::ZERO,
        acc: L::Grads::ZERO,
    };

    /// A new workspace (by value).
    #[must_use]
    pub fn new() -> Self {
        Self::ZERO
    }
}

impl<L: Layer> Default for NetWorkspace<L> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<L: Layer> fmt::Debug for NetWorkspace<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetWorkspace")
    }
}

/// The state of optimizer `P` for a network with layers `L` (velocities or moments, laid out
/// as the parameters, and the step count), owned by the caller beside the network. Start it
/// with [`OptimizerState::new`] (all zero, step 0), as Keras and PyTorch start theirs.
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable), zeroable(bound = ""))]
pub struct OptimizerState<L: Layer, P: Optimizer> {
    pub(crate) layers: L::State<P>,
    pub(crate) step: u64,
}

impl<L: Layer, P: Optimizer> OptimizerState<L, P> {
    /// Zero state at step 0, as a `const`.
    pub const ZERO: Self = Self {
        layers: <L::State<P> as ConstZero>::ZERO,
        step: 0,
    };

    /// Zero state at step 0.
    #[must_use]
    pub fn new() -> Self {
        Self::ZERO
    }

    /// Steps taken (refused steps do not count).
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The state's values in parameter order, slot by slot within each layer (for momentum
    /// the velocity of each layer's weights then biases; for Adam the first moments then the
    /// second moments of each layer).
    pub fn visit(&self, mut f: impl FnMut(&[f32])) {
        L::visit_state::<P>(&self.layers, &mut f);
    }
}

impl<L: Layer, P: Optimizer> Clone for OptimizerState<L, P> {
    fn clone(&self) -> Self {
        Self {
            layers: self.layers.clone(),
            step: self.step,
        }
    }
}

/// Equal when every velocity or moment is equal (as `f32`: `-0.0 == 0.0`) and so is the step
/// count.
impl<L: Layer, P: Optimizer> PartialEq for OptimizerState<L, P> {
    fn eq(&self, other: &Self) -> bool {
        self.step == other.step && self.layers == other.layers
    }
}

impl<L: Layer, P: Optimizer> fmt::Debug for OptimizerState<L, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OptimizerState")
            .field("step", &self.step)
            .field("layers", &self.layers)
            .finish()
    }
}

impl<L: Layer, P: Optimizer> Default for OptimizerState<L, P> {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Gradients of every parameter of a [`Network`] with layers `L`.
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable), zeroable(bound = ""))]
pub struct NetGradients<L: Layer> {
    pub(crate) g: L::Grads,
}

impl<L: Layer> Clone for NetGradients<L> {
    fn clone(&self) -> Self {
        Self { g: self.g.clone() }
    }
}

impl<L: Layer> PartialEq for NetGradients<L> {
    fn eq(&self, other: &Self) -> bool {
        self.g == other.g
    }
}

impl<L: Layer> fmt::Debug for NetGradients<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetGradients").field("g", &self.g).finish()
    }
}

impl<L: Layer> NetGradients<L> {
    /// All zero, as a `const`.
    pub const ZERO: Self = Self { g: L::Grads::ZERO };

    /// The gradients in [`Network::write_params`] order into `out`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] unless `out.len() == L::PARAMS`.
    pub fn write_flat(&self, out: &mut [f32]) -> Result<(), Error> {
        same_len("parameters", L::PARAMS, out.len())?;
        let mut at = 0;
        L::visit_grads(&self.g, &mut |s: &[f32]| {
            out[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        });
        Ok(())
    }
}

impl<L: Layer> Default for NetGradients<L> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<L: Layer + ConstZero, H: Head<L::Out> + ConstZero> Network<L, H> {
    /// A network with every parameter zero, as a `const`: for statics and in-place
    /// construction (then [`Network::init_glorot`]).
    pub const ZERO: Self = {
        let () = Self::SHAPE;
        Self {
            layers: L::ZERO,
            head: H::ZERO,
        }
    };

    /// A network with Glorot-uniform weights and zero biases (Keras's defaults), from `seed`;
    /// the same seed gives the same network on every target. Layers are drawn in order, each
    /// row by row, so a two-layer ReLU network starts exactly as [`Mlp::new`](crate::Mlp::new)
    /// with the same seed.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let mut n = Self::ZERO;
        n.init_glorot(seed);
        n
    }
}

impl<L: Layer, H: Head<L::Out>> Network<L, H> {
    /// Trainable parameters.
    pub const PARAMS: usize = L::PARAMS;

    /// Zero widths and a softmax over fewer than two classes do not compile (heapless-style
    /// `const` checks, evaluated where the network is built or used):
    ///
    /// ```compile_fail,E0080
    /// use fusedprop::{chain, Dense, Network, Relu, SoftmaxCrossEntropy};
    /// // A layer of 0 units.
    /// let net = Network::<chain![Dense<4, 0, Relu>, Dense<0, 3>], SoftmaxCrossEntropy>::new(1);
    /// ```
    ///
    /// ```compile_fail,E0080
    /// use fusedprop::{chain, Dense, Network, Relu, SoftmaxCrossEntropy};
    /// // Softmax over one class is always 1: the loss is 0 and nothing is learned.
    /// let net = Network::<chain![Dense<4, 8, Relu>, Dense<8, 1>], SoftmaxCrossEntropy>::new(1);
    /// ```
    ///
    /// A single output is for [`BinaryCrossEntropy`](crate::BinaryCrossEntropy) or
    /// [`MeanSquaredError`](crate::MeanSquaredError):
    ///
    /// ```
    /// use fusedprop::{chain, BinaryCrossEntropy, Dense, Network, Relu};
    /// let net = Network::<chain![Dense<4, 8, Relu>, Dense<8, 1>], BinaryCrossEntropy>::new(1);
    /// ```
    pub(crate) const SHAPE: () = {
        assert!(
            L::WIDTHS_OK,
            "Network: every layer needs at least one input and one output"
        );
        assert!(
            <L::Out as crate::layer::Shape>::N >= <H as HeadKernel<L::Out>>::MIN_OUTPUTS,
            "Network: SoftmaxCrossEntropy needs at least 2 outputs (softmax over 1 class is always 1, so the loss is always 0 and nothing is learned); use BinaryCrossEntropy for one output"
        );
    };

    /// A network from its layers (for activations with parameters, such as
    /// [`LeakyRelu`](crate::LeakyRelu), whose layers have no `ZERO`), in a `const` context.
    #[must_use]
    pub const fn from_layers(layers: L, head: H) -> Self {
        let () = Self::SHAPE;
        Self { layers, head }
    }

    /// FLOP of one training step on `n` samples: per sample and layer `2 I O` forward, `2 I O`
    /// for the weight gradients and, for every layer but the first, `2 I O` for the input
    /// gradient.
    #[must_use]
    pub fn step_flop(&self, n: usize) -> u64 {
        let mut flop = 0u64;
        let mut first = true;
        self.visit_layers(|info: LayerInfo, _| {
            let io = (info.inputs * info.outputs) as u64;
            flop += if first { 4 * io } else { 6 * io };
            first = false;
        });
        flop * n as u64
    }

    /// Glorot-uniform weights and zero biases from `seed`, in place.
    pub fn init_glorot(&mut self, seed: u64) {
        let mut rng = SplitMix64::new(seed);
        self.layers.init_glorot(&mut rng);
    }

    /// The layers.
    #[must_use]
    pub fn layers(&self) -> &L {
        &self.layers
    }

    /// Checks every weight is finite (for a network built with
    /// [`Dense::from_parts`](crate::Dense::from_parts)).
    ///
    /// # Errors
    /// [`Error::NonFinite`] (`"weight"`, index in [`Network::write_params`] order).
    pub fn check_weights(&self) -> Result<(), Error> {
        first_non_finite("weight", |f| self.layers.visit(&mut |s: &[f32]| f(s)))
    }

    /// The network as Rust source: `pub static {name}: Network<...> = Network::from_layers(...);`,
    /// for a trained model that lives in read-only memory (flash on a microcontroller) with
    /// no code to load it. Every weight is written as the shortest decimal that reads back as
    /// the same `f32`, so the `static` is bit for bit this network. The source names the crate
    /// `::fusedprop`; write it to a file and `include!` it (README, "Deploy to a
    /// microcontroller"):
    ///
    /// ```
    /// use fusedprop::{chain, Dense, Network, Relu, SoftmaxCrossEntropy};
    /// let net = Network::<chain![Dense<2, 3, Relu>, Dense<3, 2>], SoftmaxCrossEntropy>::new(7);
    /// let src = net.to_rust_source("MODEL")?;
    /// assert!(src.contains("pub static MODEL: ::fusedprop::Network<"));
    /// // std::fs::write("src/model.rs", src)?;  and in the firmware: include!("model.rs");
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// A `static` built this way, with [`Network::from_layers`],
    /// [`Dense::from_parts`](crate::Dense::from_parts) and [`Chain`](crate::Chain), needs no
    /// allocation and no `std`:
    ///
    /// ```
    /// use fusedprop::{Chain, Dense, Network, Relu, SoftmaxCrossEntropy};
    /// static MODEL: Network<Chain<Dense<2, 2, Relu>, Dense<2, 2>>, SoftmaxCrossEntropy> =
    ///     Network::from_layers(
    ///         Chain(
    ///             Dense::from_parts([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0], Relu),
    ///             Dense::from_parts([[1.0, -1.0], [-1.0, 1.0]], [0.0, 0.0], fusedprop::Linear),
    ///         ),
    ///         SoftmaxCrossEntropy,
    ///     );
    /// assert_eq!(MODEL.predict_one(&[3.0, 1.0])?, 0);
    /// assert_eq!(MODEL.predict_one(&[1.0, 3.0])?, 1);
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// `name` is written as given (use a Rust identifier). Std only; allocates the returned
    /// `String` (the rest of the crate never allocates).
    ///
    /// # Errors
    /// [`Error::NonFinite`] (`"weight"`) if a weight is not finite (it would not compile).
    #[cfg(feature = "std")]
    pub fn to_rust_source(&self, name: &str) -> Result<std::string::String, Error> {
        use core::fmt::Write;
        self.check_weights()?;
        let mut s = std::string::String::new();
        let mut shape = std::string::String::new();
        let mut acts = std::string::String::new();
        self.visit_layers(|info: LayerInfo, _| {
            if shape.is_empty() {
                let _ = write!(shape, "{}", info.inputs);
                acts.push_str(info.activation);
            } else {
                acts.push_str(", ");
                acts.push_str(info.activation);
            }
            let _ = write!(shape, "-{}", info.outputs);
        });
        let head = <H as HeadKernel<L::Out>>::RUST_TYPE;
        // Writing to a `String` cannot fail.
        let _ = (|| -> fmt::Result {
            writeln!(
                s,
                "// Generated by fusedprop's `Network::to_rust_source`; regenerate it rather than edit it."
            )?;
            writeln!(
                s,
                "// Every weight is the shortest decimal that reads back as the same f32, bit for bit."
            )?;
            writeln!(
                s,
                "/// A fusedprop network, {shape} ({acts}), {}, {} parameters.",
                H::NAME,
                L::PARAMS
            )?;
            writeln!(s, "#[rustfmt::skip]")?;
            writeln!(
                s,
                "#[allow(clippy::all, clippy::pedantic, clippy::nursery)]"
            )?;
            write!(s, "pub static {name}: ::fusedprop::Network<\n    ")?;
            L::rust_type(&mut s)?;
            write!(
                s,
                ",\n    ::fusedprop::{head},\n> = ::fusedprop::Network::from_layers(\n    "
            )?;
            self.layers.rust_value(&mut s, 4)?;
            writeln!(s, ",\n    ::fusedprop::{head},\n);")
        })();
        Ok(s)
    }

    /// Calls `f` with each dense layer's description and its activation's `f64` definition, in
    /// order (for summaries and oracles).
    pub fn visit_layers(&self, mut f: impl FnMut(LayerInfo, &dyn ActivationF64)) {
        self.layers.describe(&mut f);
    }

    /// Every parameter, flattened: each layer's weights (row-major, `[out][in]`) then its
    /// biases, layer by layer.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] unless `out.len() == PARAMS`.
    pub fn write_params(&self, out: &mut [f32]) -> Result<(), Error> {
        same_len("parameters", L::PARAMS, out.len())?;
        let mut at = 0;
        self.layers.visit(&mut |s: &[f32]| {
            out[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        });
        Ok(())
    }

    /// Sets every parameter from a flat slice in [`Network::write_params`] order.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] unless `params.len() == PARAMS`; [`Error::NonFinite`]
    /// (`"weight"`) if a value is not finite. On error the network is unchanged.
    pub fn read_params(&mut self, params: &[f32]) -> Result<(), Error> {
        same_len("parameters", L::PARAMS, params.len())?;
        if let Some(i) = params.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "weight",
                index: Some(i),
            });
        }
        let mut at = 0;
        self.layers.visit_mut(&mut |s: &mut [f32]| {
            s.copy_from_slice(&params[at..at + s.len()]);
            at += s.len();
        });
        Ok(())
    }

    /// Sets the weights from Keras's `model.get_weights()` order: for each layer its kernel,
    /// `[inputs][outputs]` flattened, then its bias.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] (`"tensors"`) unless there are two tensors per layer;
    /// [`Error::ShapeMismatch`] for a tensor of the wrong size; [`Error::NonFinite`]
    /// (`"weight"`, index in [`Network::write_params`] order). On error the network is
    /// unchanged.
    pub fn read_keras(&mut self, tensors: &[&[f32]]) -> Result<(), Error> {
        self.read_tensors(tensors, true)
    }

    /// Sets the weights from PyTorch tensors in `state_dict` order (`0.weight`, `0.bias`,
    /// `2.weight` ... of an `nn.Sequential`): each layer's weight `[out][in]` flattened, then
    /// its bias.
    ///
    /// # Errors
    /// As [`Network::read_keras`].
    pub fn read_torch(&mut self, tensors: &[&[f32]]) -> Result<(), Error> {
        self.read_tensors(tensors, false)
    }

    fn read_tensors(&mut self, tensors: &[&[f32]], keras: bool) -> Result<(), Error> {
        same_len("tensors", 2 * L::DEPTH, tensors.len())?;
        let mut err = None;
        let (mut i, mut flat) = (0, 0);
        self.layers
            .describe(&mut |info: LayerInfo, _: &dyn ActivationF64| {
                for (t, len) in [
                    (2 * i, info.inputs * info.outputs),
                    (2 * i + 1, info.outputs),
                ] {
                    if err.is_some() {
                        return;
                    }
                    let v = tensors[t];
                    if v.len() != len {
                        err = Some(Error::ShapeMismatch {
                            tensor: t,
                            expected: len,
                            found: v.len(),
                        });
                    } else if let Some(p) = v.iter().position(|x| !x.is_finite()) {
                        // The index the value will have in `write_params` order.
                        let p = if keras && t % 2 == 0 {
                            (p % info.outputs) * info.inputs + p / info.outputs
                        } else {
                            p
                        };
                        err = Some(Error::NonFinite {
                            what: "weight",
                            index: Some(flat + p),
                        });
                    }
                    flat += len;
                }
                i += 1;
            });
        if let Some(e) = err {
            return Err(e);
        }
        let mut t = 0;
        self.layers.visit_mut(&mut |s: &mut [f32]| {
            let v = tensors[t];
            if keras && t % 2 == 0 {
                let o = tensors[t + 1].len();
                let inputs = s.len() / o;
                for (j, row) in s.chunks_mut(inputs).enumerate() {
                    for (k, w) in row.iter_mut().enumerate() {
                        *w = v[k * o + j];
                    }
                }
            } else {
                s.copy_from_slice(v);
            }
            t += 1;
        });
        Ok(())
    }

    /// The head's outputs for each sample: probabilities for the classification heads, the
    /// values for [`MeanSquaredError`](crate::MeanSquaredError).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if `out.len() != x.len()`; [`Error::NonFinite`] (`"input"`)
    /// if an input is not finite, or (`"output"`) if a sample's outputs overflow `f32`. On
    /// error `out` may be partly written.
    pub fn predict_proba(&self, x: &[InRow<L>], out: &mut [OutRow<L>]) -> Result<(), Error> {
        same_len("outputs", x.len(), out.len())?;
        for (block, (xs, os)) in x.chunks(LANES).zip(out.chunks_mut(LANES)).enumerate() {
            let mut z = self.outputs_block(xs, block * LANES)?;
            H::outputs(&mut z);
            <L::Out as ShapeKernel>::store(&z, os);
        }
        Ok(())
    }

    /// Mean loss over a batch, as [`Network::train_step`] computes it (bit for bit).
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::LengthMismatch`], a target the head refuses
    /// ([`Error::LabelOutOfRange`], [`Error::NonFinite`], [`Error::TargetOutOfRange`]),
    /// [`Error::NonFinite`] for a non-finite input or loss.
    pub fn loss(&self, x: &[InRow<L>], y: &[H::T]) -> Result<f32, Error> {
        self.evaluate(x, y, false).map(|(loss, _)| loss)
    }

    /// The mean loss (bit for bit [`Network::loss`]) and, if `accuracy` and the head
    /// classifies, the number of samples whose class is their target's, in one pass.
    pub(crate) fn evaluate(
        &self,
        x: &[InRow<L>],
        y: &[H::T],
        accuracy: bool,
    ) -> Result<(f32, Option<usize>), Error> {
        check_batch::<L, H>(x, y)?;
        let mut hits = if accuracy && y.first().and_then(H::target_class).is_some() {
            Some(0usize)
        } else {
            None
        };
        let mut total = lanes::zero();
        for (t, (xt, yt)) in x
            .chunks(TILE_SAMPLES)
            .zip(y.chunks(TILE_SAMPLES))
            .enumerate()
        {
            let first = t * TILE_SAMPLES;
            // Errors in the training step's order: a tile's inputs are all checked before
            // its first loss.
            if let Some(bad) = xt.iter().position(|r| {
                !<L::In as ShapeKernel>::values(r)
                    .iter()
                    .all(|v| v.is_finite())
            }) {
                return Err(Error::NonFinite {
                    what: "input",
                    index: Some(first + bad),
                });
            }
            let mut tile =
                TileLoss::new(<H as crate::head::sealed::HeadKernel<L::Out>>::FACTOR_BITS);
            for (b, (xs, ys)) in xt.chunks(LANES).zip(yt.chunks(LANES)).enumerate() {
                let start = first + b * LANES;
                let z = self.forward_rows(xs, start)?;
                let l =
                    H::loss::<crate::Linear>(&z, &H::load(ys), lanes::valid(xs.len()), 0.0, None);
                tile.push(l, xs.len(), start)?;
                if let Some(h) = hits.as_mut() {
                    let c = lanes::to_array(H::classes(&z));
                    *h += ys
                        .iter()
                        .zip(c)
                        .filter(|(t, c)| H::target_class(t).map(|t| t as f32) == Some(*c))
                        .count();
                }
            }
            total += tile.finish();
        }
        finite_total(total)?;
        Ok((lanes::sum(total) / x.len() as f32, hits))
    }

    /// One optimizer step on a batch already gathered into lanes (`fit`'s): the inputs
    /// `x` (`n` samples, checked finite when the data set was, `max_x` their lane-wise largest
    /// magnitude) and the targets as rows (checked too). Bit for bit [`Network::train_step`]
    /// on the same rows.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn train_step_blocks<P: Optimizer>(
        &mut self,
        x: &[InBlock<L>],
        n: usize,
        max_x: Lane,
        y: &[H::T],
        opt: &P,
        state: &mut OptimizerState<L, P>,
        ws: &mut NetWorkspace<L>,
    ) -> Result<f32, Error> {
        if n == 0 || y.len() != n || x.len() * LANES < n {
            return Err(Error::EmptyBatch);
        }
        run::<L, H, P>(
            NetRef::Unique(&mut self.layers),
            Inputs::Blocks { x, n, max_x },
            Seed::Targets(y),
            ws,
            Finish::Update { opt, state },
        )
    }

    /// Gradients of the mean loss with respect to every parameter, into `grads`
    /// (overwritten); returns the mean loss. The network is not changed.
    ///
    /// # Errors
    /// As [`Network::loss`], and [`Error::NonFinite`] (`"gradient"`, index in
    /// [`Network::write_params`] order) if a gradient overflows `f32`. On error `grads` may be
    /// partly written.
    pub fn gradients(
        &self,
        x: &[InRow<L>],
        y: &[H::T],
        grads: &mut NetGradients<L>,
        ws: &mut NetWorkspace<L>,
    ) -> Result<f32, Error> {
        check_batch::<L, H>(x, y)?;
        let loss = run::<L, H, crate::Sgd>(
            NetRef::Shared(&self.layers),
            Inputs::Rows(x),
            Seed::Targets(y),
            ws,
            Finish::Gradients(&mut grads.g),
        )?;
        finite_grads::<L>(&grads.g).map(|()| loss)
    }

    /// [`Network::gradients`] into the workspace's own gradient buffer (`ws.acc`), for
    /// callers that keep gradients in a layout of their own.
    pub(crate) fn gradients_in_workspace(
        &self,
        x: &[InRow<L>],
        y: &[H::T],
        ws: &mut NetWorkspace<L>,
    ) -> Result<f32, Error> {
        check_batch::<L, H>(x, y)?;
        let loss = run::<L, H, crate::Sgd>(
            NetRef::Shared(&self.layers),
            Inputs::Rows(x),
            Seed::Targets(y),
            ws,
            Finish::Workspace,
        )?;
        finite_grads::<L>(&ws.acc).map(|()| loss)
    }

    /// One optimizer step on the batch (full batch or mini-batch), the update fused into the
    /// backward pass; returns the mean loss computed *before* the update (as Keras reports
    /// it).
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::LengthMismatch`], a target the head refuses (checked
    /// before any work), [`Error::NonFinite`] for a non-finite input, loss or gradient,
    /// [`Error::UpdateOverflow`] when the update could overflow. On error every weight and
    /// the optimizer state are bit for bit unchanged.
    pub fn train_step<P: Optimizer>(
        &mut self,
        x: &[InRow<L>],
        y: &[H::T],
        opt: &P,
        state: &mut OptimizerState<L, P>,
        ws: &mut NetWorkspace<L>,
    ) -> Result<f32, Error> {
        check_batch::<L, H>(x, y)?;
        run::<L, H, P>(
            NetRef::Unique(&mut self.layers),
            Inputs::Rows(x),
            Seed::Targets(y),
            ws,
            Finish::Update { opt, state },
        )
    }

    /// [`Network::train_step`] on a batch packed once into lanes ([`PackedBatch`]): no
    /// transposes and no input checks on every step, which is most of a small network's
    /// step. Bit for bit the loss, weights and optimizer state of `train_step` on the same
    /// rows. Class labels only: for [`SoftmaxCrossEntropy`](crate::SoftmaxCrossEntropy) heads.
    ///
    /// ```
    /// use fusedprop::{chain, Dense, NetWorkspace, Network, OptimizerState, PackedBatch, Relu,
    ///                 Sgd, SoftmaxCrossEntropy};
    /// let x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    /// let batch = PackedBatch::<2, 1>::from_rows(&x, &[0, 1, 1, 0])?;
    /// let mut net = Network::<chain![Dense<2, 16, Relu>, Dense<16, 2>], SoftmaxCrossEntropy>::new(4);
    /// let mut twin = net.clone();
    /// let (sgd, mut s1, mut s2, mut ws) =
    ///     (Sgd::new(0.5)?, OptimizerState::new(), OptimizerState::new(), NetWorkspace::new());
    /// let a = net.train_step_packed(&batch, &sgd, &mut s1, &mut ws)?;
    /// let b = twin.train_step(&x, &[0, 1, 1, 0], &sgd, &mut s2, &mut ws)?;
    /// assert_eq!(a.to_bits(), b.to_bits());
    /// assert!(net == twin);
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::EmptyBatch`] for an empty batch, [`Error::LabelOutOfRange`] (checked before
    /// any work), and as [`Network::train_step`]. On error every weight and the optimizer
    /// state are bit for bit unchanged.
    pub fn train_step_packed<P: Optimizer, const I: usize, const O: usize, const B: usize>(
        &mut self,
        batch: &PackedBatch<I, B>,
        opt: &P,
        state: &mut OptimizerState<L, P>,
        ws: &mut NetWorkspace<L>,
    ) -> Result<f32, Error>
    where
        L: Layer<In = Dim<I>, Out = Dim<O>>,
        H: Classifier<Dim<O>>,
    {
        let (inputs, y) = crate::driver::packed::<L, I, B>(batch, O)?;
        run::<L, H, P>(
            NetRef::Unique(&mut self.layers),
            inputs,
            Seed::Labels(y),
            ws,
            Finish::Update { opt, state },
        )
    }

    /// One optimizer step for a loss of your own: `dy[s]` is `dL/dy` for sample `s`, the
    /// gradient of your loss (of the whole batch: include its `1/N` if it is a mean) with
    /// respect to the network's outputs (the last layer's activations, before any head).
    /// The backward pass and the update are fused as in [`Network::train_step`]. Get the
    /// outputs to compute it from with [`Network::outputs`].
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::LengthMismatch`], [`Error::NonFinite`] for a non-finite
    /// input or output gradient, [`Error::UpdateOverflow`]. On error every weight and the
    /// optimizer state are unchanged.
    pub fn train_step_with_output_grad<P: Optimizer>(
        &mut self,
        x: &[InRow<L>],
        dy: &[OutRow<L>],
        opt: &P,
        state: &mut OptimizerState<L, P>,
        ws: &mut NetWorkspace<L>,
    ) -> Result<(), Error> {
        if x.is_empty() {
            return Err(Error::EmptyBatch);
        }
        same_len("output gradients", x.len(), dy.len())?;
        if let Some(i) = dy.iter().position(|r| {
            !<L::Out as ShapeKernel>::values(r)
                .iter()
                .all(|v| v.is_finite())
        }) {
            return Err(Error::NonFinite {
                what: "output gradient",
                index: Some(i),
            });
        }
        run::<L, H, P>(
            NetRef::Unique(&mut self.layers),
            Inputs::Rows(x),
            Seed::Given(dy),
            ws,
            Finish::Update { opt, state },
        )
        .map(|_| ())
    }

    /// The last layer's outputs (its activations, before the head) for each sample.
    ///
    /// # Errors
    /// As [`Network::predict_proba`].
    pub fn outputs(&self, x: &[InRow<L>], out: &mut [OutRow<L>]) -> Result<(), Error> {
        same_len("outputs", x.len(), out.len())?;
        for (block, (xs, os)) in x.chunks(LANES).zip(out.chunks_mut(LANES)).enumerate() {
            let z = self.outputs_block(xs, block * LANES)?;
            <L::Out as ShapeKernel>::store(&z, os);
        }
        Ok(())
    }

    /// Loads a block of rows, checks them, and runs it to the last layer's outputs.
    fn forward_rows(&self, xs: &[InRow<L>], first: usize) -> Result<OutBlock<L>, Error> {
        let () = Self::SHAPE;
        crate::simd::warn_once_if_slow_build();
        let mut xb = <L::In as ShapeKernel>::BLOCK_ZERO;
        <L::In as ShapeKernel>::load(xs, &mut xb);
        check_inputs::<L>(&xb, xs, first)?;
        let mut z = <L::Out as ShapeKernel>::BLOCK_ZERO;
        self.layers.forward_block(&xb, &mut z);
        Ok(z)
    }

    /// [`Network::forward_rows`] with the outputs checked finite.
    fn outputs_block(&self, xs: &[InRow<L>], first: usize) -> Result<OutBlock<L>, Error> {
        let z = self.forward_rows(xs, first)?;
        let mut ok = lanes::zero();
        for &v in <L::Out as ShapeKernel>::lanes(&z) {
            ok = lanes::fma(v, lanes::zero(), ok);
        }
        match lanes::first_non_finite(ok, xs.len()) {
            None => Ok(z),
            Some(s) => Err(Error::NonFinite {
                what: "output",
                index: Some(first + s),
            }),
        }
    }
}

impl<L: Layer, H: Classifier<L::Out>> Network<L, H> {
    /// The class of each sample: the most probable (the first one on ties) for
    /// [`SoftmaxCrossEntropy`](crate::SoftmaxCrossEntropy), `p > 0.5` for a one-output
    /// [`BinaryCrossEntropy`](crate::BinaryCrossEntropy).
    ///
    /// # Errors
    /// As [`Network::predict_proba`].
    pub fn predict(&self, x: &[InRow<L>], out: &mut [u32]) -> Result<(), Error> {
        same_len("outputs", x.len(), out.len())?;
        for (block, (xs, os)) in x.chunks(LANES).zip(out.chunks_mut(LANES)).enumerate() {
            let z = self.outputs_block(xs, block * LANES)?;
            let c = lanes::to_array(H::classes(&z));
            for (o, c) in os.iter_mut().zip(c) {
                *o = c as u32;
            }
        }
        Ok(())
    }

    /// The class of one sample (as [`Network::predict`]).
    ///
    /// A latency path for one sample: each layer vectorizes over its inputs rather than over
    /// sixteen samples (fifteen of which would be padding), so it sums each neuron's products
    /// in another order than [`Network::predict`]; the two agree except when two classes'
    /// outputs are within a few rounding errors of each other.
    ///
    /// # Errors
    /// [`Error::NonFinite`] (`"input"`, index 0) if an input is not finite, or (`"output"`,
    /// index 0) if the outputs overflow `f32`.
    #[inline]
    pub fn predict_one(&self, x: &InRow<L>) -> Result<u32, Error> {
        let () = Self::SHAPE;
        crate::simd::warn_once_if_slow_build();
        // PERF: an integer maximum over the magnitudes' bits vectorizes; finite means below
        // the bits of infinity.
        let worst = <L::In as ShapeKernel>::values(x)
            .iter()
            .fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff));
        if worst >= f32::INFINITY.to_bits() {
            return Err(Error::NonFinite {
                what: "input",
                index: Some(0),
            });
        }
        let mut z = <L::Out as ShapeKernel>::ROW_ZERO;
        self.layers.forward_one(x, &mut z);
        let z = <L::Out as ShapeKernel>::values(&z);
        if !z.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFinite {
                what: "output",
                index: Some(0),
            });
        }
        Ok(H::class_one(z))
    }

    /// Fraction of samples whose predicted class is the label.
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::LengthMismatch`], [`Error::LabelOutOfRange`] (a label
    /// that is not a class), and as [`Network::predict_proba`].
    pub fn accuracy(&self, x: &[InRow<L>], labels: &[u32]) -> Result<f32, Error> {
        if x.is_empty() {
            return Err(Error::EmptyBatch);
        }
        same_len("labels", x.len(), labels.len())?;
        let classes = <H as HeadKernel<L::Out>>::CLASSES;
        crate::error::check_labels(labels, classes)?;
        let mut correct = 0usize;
        for (block, (xs, ls)) in x.chunks(LANES).zip(labels.chunks(LANES)).enumerate() {
            let z = self.outputs_block(xs, block * LANES)?;
            let c = lanes::to_array(H::classes(&z));
            correct += ls.iter().zip(c).filter(|(l, c)| **l as f32 == *c).count();
        }
        Ok(correct as f32 / x.len() as f32)
    }
}

/// A Keras-like summary: each layer with its activation, output shape and parameter count,
/// and the loss head.
///
/// ```
/// use fusedprop::{chain, Dense, Network, Relu, SoftmaxCrossEntropy, Tanh};
/// let net = Network::<chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>], SoftmaxCrossEntropy>::ZERO;
/// let s = format!("{net}");
/// assert!(s.contains("dense_1 (Dense, relu)") && s.contains("Total params: 243"));
/// ```
impl<L: Layer, H: Head<L::Out>> fmt::Display for Network<L, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        summary_header(f, "Network")?;
        let mut i = 0;
        let mut res = Ok(());
        self.layers
            .describe(&mut |info: LayerInfo, _: &dyn ActivationF64| {
                let mut name = StrBuf::<40>::new();
                res = res
                    .and_then(|()| {
                        if i == 0 {
                            fmt::Write::write_fmt(
                                &mut name,
                                format_args!("dense (Dense, {})", info.activation),
                            )
                        } else {
                            fmt::Write::write_fmt(
                                &mut name,
                                format_args!("dense_{i} (Dense, {})", info.activation),
                            )
                        }
                    })
                    .and_then(|()| summary_row(f, name.as_str(), info.outputs, info.params));
                i += 1;
            });
        res?;
        summary_footer(f, L::PARAMS)?;
        write!(f, "\nLoss head: {}", H::NAME)
    }
}

impl<L: Layer + fmt::Debug, H: fmt::Debug> fmt::Debug for Network<L, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("layers", &self.layers)
            .field("head", &self.head)
            .finish()
    }
}
