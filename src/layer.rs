//! Layers chained at compile time: the [`Layer`] trait, implemented by [`Dense`] and by the
//! binary [`Chain`], and the [`chain!`](crate::chain) macro that writes a chain's type.
//!
//! # Shapes are types
//! A layer's input and output widths are the types [`Dim<N>`](Dim), and [`Chain<A, B>`] is a
//! layer only when `B`'s input is `A`'s output, so a network whose widths do not meet does not
//! compile:
//!
//! ```compile_fail
//! use fusedprop::{chain, Dense, Network, Relu, SoftmaxCrossEntropy};
//! // 16 outputs feed a layer of 8 inputs: a type error.
//! type Bad = chain![Dense<4, 16, Relu>, Dense<8, 3>];
//! let net = Network::<Bad, SoftmaxCrossEntropy>::new(7);
//! ```
//!
//! Associated *types* carry the shapes (`[Lane; N]` buffers): stable Rust cannot size an array
//! by an associated `const` in generic code. Every buffer a chain needs, its tile scratch, its
//! gradients and its optimizer state, is the pair of its two halves' buffers, so a chain of any
//! depth has a size known at compile time and lives wherever its owner puts it (stack, `static`,
//! box), never on a heap of the crate's.
//!
//! # A training tile through a chain
//! Each call handles a whole tile of up to [`TILE_SAMPLES`](crate::TILE_SAMPLES) samples, so the
//! register-tiled kernels of [`Dense`] keep their instruction-level parallelism:
//!
//! 1. `forward_tile`, head to tail: `a = f(W x + b)` per layer, keeping what `f`'s derivative
//!    needs in the layer's `d` buffer (and the largest `|a|`, for the refusal bound);
//! 2. the network's head writes `dL/dz` of the last layer into its `d` buffer;
//! 3. `backprop`, tail to head: `d_prev = f'_prev ⊙ (W^T d)` with the weights *before* the
//!    update; every `d` of the tile is complete before any weight changes;
//! 4. `accumulate` (tiles before the last) or `apply` (the last tile): the parameter gradients
//!    `dW = d a_prev^T`, `db = Σ d`, stored, added, or completed and handed to the optimizer's
//!    rule in the same pass (the fused update).

use crate::activation::{Activation, ConstActivation};
use crate::dense::{Dense, DenseGrads, Sink, param_grads_tile};
use crate::driver::TILE_BLOCKS;
use crate::error::Error;
use crate::lanes::{self, LANES, Lane};
use crate::optim::{ConstZero, Rule, Sgd};
use crate::rng::SplitMix64;

/// A width of `N` units, as a type: the input and output shapes of a [`Layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dim<const N: usize>;

/// What a [`Dim`] provides: the row type users pass (`[f32; N]`) and the lane buffers the
/// kernels use.
pub trait Shape: sealed::ShapeKernel {
    /// The width.
    const N: usize;
}

impl<const N: usize> Shape for Dim<N> {
    const N: usize = N;
}

/// What one layer of a network reports about itself (for summaries and the oracle).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerInfo {
    /// Inputs.
    pub inputs: usize,
    /// Outputs (units).
    pub outputs: usize,
    /// Keras's name of the activation.
    pub activation: &'static str,
    /// Parameters, `inputs * outputs + outputs`.
    pub params: usize,
}

/// An activation's `f64` definition, object-safe (for the oracle of the tests).
pub trait ActivationF64 {
    /// `f(z)`.
    fn eval(&self, z: f64) -> f64;
    /// `f'(z)`.
    fn grad(&self, z: f64) -> f64;
}

impl<A: Activation> ActivationF64 for A {
    fn eval(&self, z: f64) -> f64 {
        self.eval_f64(z)
    }
    fn grad(&self, z: f64) -> f64 {
        self.grad_f64(z)
    }
}

/// A layer of a network, or a chain of layers: [`Dense`] or [`Chain`]. Sealed: the crate's
/// drivers rely on its kernels.
pub trait Layer: sealed::LayerKernel {
    /// Trainable parameters.
    const PARAMS: usize;
    /// Dense layers in it.
    const DEPTH: usize;
}

/// Two layers, or chains, run one after the other: `B` takes `A`'s outputs. Write the type of a
/// long chain with [`chain!`](crate::chain).
#[derive(Clone, PartialEq, Debug, Default)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct Chain<A, B>(pub A, pub B);

impl<A: ConstZero, B: ConstZero> ConstZero for Chain<A, B> {
    const ZERO: Self = Chain(A::ZERO, B::ZERO);
}

impl<const I: usize, const O: usize, A: ConstActivation> ConstZero for Dense<I, O, A> {
    const ZERO: Self = Dense::ZERO;
}

/// The type of a chain of layers, like a Keras `Sequential`:
/// `chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>]` is
/// `Chain<Dense<4, 16, Tanh>, Chain<Dense<16, 8, Relu>, Dense<8, 3>>>`.
///
/// ```
/// use fusedprop::{chain, Dense, Network, Relu, SoftmaxCrossEntropy, Tanh};
/// type Layers = chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>];
/// let net = Network::<Layers, SoftmaxCrossEntropy>::new(7);
/// assert_eq!(Network::<Layers, SoftmaxCrossEntropy>::PARAMS, 80 + 136 + 27);
/// ```
#[macro_export]
macro_rules! chain {
    ($last:ty $(,)?) => { $last };
    ($head:ty, $($rest:ty),+ $(,)?) => { $crate::Chain<$head, $crate::chain![$($rest),+]> };
}

/// The per-tile buffers of one dense layer, and the step's running statistics of the layer
/// for the refusal bound.
#[derive(Clone)]
#[cfg_attr(feature = "std", derive(bytemuck::Zeroable))]
pub struct DenseTile<const O: usize> {
    /// The outputs `f(z)` of each block.
    pub(crate) a: [[Lane; O]; TILE_BLOCKS],
    /// What `f'` needs (forward), then `dL/dz` (backward).
    pub(crate) d: [[Lane; O]; TILE_BLOCKS],
    /// The largest `|a|` of the step so far, per lane (valid samples only).
    max_out: Lane,
    /// The largest `|dL/dz|` of the step so far, per lane: kept for the last layer only,
    /// and for every layer by `track_all` (`driver::measure`, targets without SIMD).
    max_d: Lane,
    /// `0` while every `dL/dz` seen was finite, NaN after (tracked as `max_d` is).
    ok: Lane,
}

impl<const O: usize> ConstZero for DenseTile<O> {
    const ZERO: Self = Self {
        a: [[Lane::ZERO; O]; TILE_BLOCKS],
        d: [[Lane::ZERO; O]; TILE_BLOCKS],
        max_out: Lane::ZERO,
        max_d: Lane::ZERO,
        ok: Lane::ZERO,
    };
}

/// The largest `|v|` of a slice, exactly (an integer maximum over the magnitudes' bits; NaN
/// comes out as NaN).
fn max_abs_bits(v: &[f32]) -> f32 {
    f32::from_bits(v.iter().fold(0u32, |m, x| m.max(x.to_bits() & 0x7fff_ffff)))
}

pub(crate) mod sealed {
    use super::*;

    /// The buffers of a width (crate-internal).
    pub trait ShapeKernel {
        /// One sample: `[f32; N]`.
        type Row: Copy + PartialEq + core::fmt::Debug + Send + Sync + AsRef<[f32]> + AsMut<[f32]>;
        /// Sixteen samples, feature-major: `[Lane; N]`.
        type Block: Copy + Send + Sync;
        /// A zero block.
        const BLOCK_ZERO: Self::Block;
        /// A zero row.
        const ROW_ZERO: Self::Row;
        /// Loads up to sixteen rows (zero past their end).
        fn load(rows: &[Self::Row], out: &mut Self::Block);
        /// Stores the first `rows.len()` samples.
        fn store(b: &Self::Block, rows: &mut [Self::Row]);
        /// The lanes of a block.
        fn lanes(b: &Self::Block) -> &[Lane];
        /// The lanes of a block, mutable.
        fn lanes_mut(b: &mut Self::Block) -> &mut [Lane];
        /// The values of a row.
        fn values(r: &Self::Row) -> &[f32];
        /// The memory of blocks viewed as rows (`16` rows a block).
        fn as_rows_mut(b: &mut [Self::Block]) -> &mut [Self::Row];
        /// Blocks back to rows, for the first `rows.len()` samples and the features below
        /// the last multiple of 16 (what the row kernel of the weight gradients reads).
        fn to_rows(b: &[Self::Block], rows: &mut [Self::Row]);
    }

    impl<const N: usize> ShapeKernel for Dim<N> {
        type Row = [f32; N];
        type Block = [Lane; N];
        const BLOCK_ZERO: Self::Block = [Lane::ZERO; N];
        const ROW_ZERO: Self::Row = [0.0; N];
        #[inline(always)]
        fn load(rows: &[[f32; N]], out: &mut [Lane; N]) {
            lanes::load_rows(rows, out);
        }
        #[inline(always)]
        fn store(b: &[Lane; N], rows: &mut [[f32; N]]) {
            lanes::store_rows(b, rows);
        }
        #[inline(always)]
        fn lanes(b: &[Lane; N]) -> &[Lane] {
            b
        }
        #[inline(always)]
        fn lanes_mut(b: &mut [Lane; N]) -> &mut [Lane] {
            b
        }
        #[inline(always)]
        fn values(r: &[f32; N]) -> &[f32] {
            r
        }
        #[inline(always)]
        fn as_rows_mut(b: &mut [[Lane; N]]) -> &mut [[f32; N]] {
            lanes::as_rows_mut(b)
        }
        #[inline(always)]
        fn to_rows(b: &[[Lane; N]], rows: &mut [[f32; N]]) {
            lanes::blocks_to_rows(b, N - N % 16, rows);
        }
    }

    /// A block of the input (`In`) or output (`Out`) shape of `L`.
    pub type InBlock<L> = <<L as LayerKernel>::In as ShapeKernel>::Block;
    /// See [`InBlock`].
    pub type OutBlock<L> = <<L as LayerKernel>::Out as ShapeKernel>::Block;
    /// A row of the input shape of `L`.
    pub type InRow<L> = <<L as LayerKernel>::In as ShapeKernel>::Row;
    /// A row of the output shape of `L`.
    pub type OutRow<L> = <<L as LayerKernel>::Out as ShapeKernel>::Row;

    /// The kernels of a layer or chain (crate-internal). Every tile method handles the
    /// first `nb` blocks of the tile.
    pub trait LayerKernel: Sized + Send + Sync + Clone + PartialEq + core::fmt::Debug {
        /// Whether every width is at least 1 (checked at compile time by the network).
        const WIDTHS_OK: bool;
        /// Whether the first dense layer computes its weight gradients faster from its
        /// inputs as rows than from lanes, when it is not the network's first layer (whose
        /// rows the caller has): the inputs must first be transposed, which pays for itself
        /// against the lane reductions from about 32 outputs on.
        const ROWS_IN: bool;
        /// Input width.
        type In: super::Shape;
        /// Output width.
        type Out: super::Shape;
        /// Tile buffers.
        type Tile: ConstZero + Send;
        /// Parameter gradients.
        type Grads: ConstZero + Clone + PartialEq + core::fmt::Debug + Send + Sync;
        /// The state of optimizer `P`.
        type State<P: Rule>: ConstZero + Clone + PartialEq + core::fmt::Debug + Send + Sync;
        /// The activation of the last dense layer.
        type Last: Activation;

        fn init_glorot(&mut self, rng: &mut SplitMix64);
        /// Each dense layer's weights (row-major) then biases, in order.
        fn visit(&self, f: &mut impl FnMut(&[f32]));
        fn visit_mut(&mut self, f: &mut impl FnMut(&mut [f32]));
        fn visit_grads(g: &Self::Grads, f: &mut impl FnMut(&[f32]));
        fn visit_state<P: Rule>(s: &Self::State<P>, f: &mut impl FnMut(&[f32]));
        fn describe(&self, f: &mut impl FnMut(LayerInfo, &dyn ActivationF64));
        /// The layer's type as Rust source (`Network::to_rust_source`).
        fn rust_type(out: &mut dyn core::fmt::Write) -> core::fmt::Result;
        /// A `const` expression of the layer as Rust source, its lines after the first
        /// indented by `indent` spaces; every weight the shortest decimal that reads back as
        /// the same `f32`.
        fn rust_value(&self, out: &mut dyn core::fmt::Write, indent: usize) -> core::fmt::Result;

        /// Inference of one sample, vectorized over each layer's inputs (the latency path).
        fn forward_one(&self, x: &InRow<Self>, y: &mut OutRow<Self>);
        /// Inference of one block.
        fn forward_block(&self, x: &InBlock<Self>, y: &mut OutBlock<Self>);
        /// Training forward pass of a tile; `valid` masks the samples of the last block.
        fn forward_tile(&self, x: &[InBlock<Self>], t: &mut Self::Tile, valid: Lane);
        /// The last layer's outputs and its `d` buffer, and its activation.
        fn last<'t>(
            &self,
            t: &'t mut Self::Tile,
        ) -> (
            &'t [OutBlock<Self>; TILE_BLOCKS],
            &'t mut [OutBlock<Self>; TILE_BLOCKS],
            &Self::Last,
        );
        /// The last layer's outputs.
        fn out(t: &Self::Tile) -> &[OutBlock<Self>; TILE_BLOCKS];
        /// Folds the last layer's complete `d` (the head's `dL/dz`) into its statistics.
        fn track_last(t: &mut Self::Tile, nb: usize);
        /// Folds every layer's `d` into its statistics (the exact bound of `check`).
        fn track_all(t: &mut Self::Tile, nb: usize);
        /// The `d` of every layer but the last, from the last one's.
        fn backprop(&self, t: &mut Self::Tile, nb: usize);
        /// `dx = f.backward(kept, W^T d)` of the first layer, for the layer below, whose
        /// outputs are `ys` (ReLU's kept value).
        fn input_grad<F: Activation>(
            &self,
            t: &Self::Tile,
            dx: &mut [InBlock<Self>],
            ys: &[InBlock<Self>],
            f: &F,
        );
        /// The largest `|a|` of the last layer's outputs in the step (valid samples only).
        fn out_max(t: &Self::Tile) -> f64;
        /// [`ActKernel::GRAD_BOUND`](crate::activation::sealed::ActKernel::GRAD_BOUND) of the
        /// last layer's activation.
        fn last_grad_bound(&self) -> f64;
        /// The parameter gradients of the tile, stored (`first`) or added to `g`.
        /// With `rows` (the network's first layer with 16 inputs or more, or a layer with
        /// [`LayerKernel::ROWS_IN`]), the inputs as rows too. May overwrite the tile's
        /// `dL/dz` buffers once they are used (a chain transposes a layer's outputs there for
        /// the next layer's rows).
        fn accumulate(
            &self,
            x: &[InBlock<Self>],
            rows: Option<&[InRow<Self>]>,
            t: &mut Self::Tile,
            g: &mut Self::Grads,
            first: bool,
        );
        /// The fused update from the last tile: `prior + this tile` through `P`'s rule
        /// (`rows` and the tile's buffers as for [`LayerKernel::accumulate`]).
        fn apply<P: Rule>(
            &mut self,
            x: &[InBlock<Self>],
            rows: Option<&[InRow<Self>]>,
            t: &mut Self::Tile,
            step: &P::Step,
            s: &mut Self::State<P>,
            prior: Option<&Self::Grads>,
        );
        /// Starts a step's statistics.
        fn reset(t: &mut Self::Tile);
        /// Folds another tile's statistics into `into` (the parallel step's slots).
        fn merge_stats(into: &mut Self::Tile, from: &Self::Tile);
        /// One round of the parallel step's ordered reduction: `total = parts[0]` (when
        /// `first`) or `total += parts[0]`, then `+= parts[1]` ...; with `update`, the last part
        /// goes through `P`'s rule instead, `w = rule(w, total + last)`. Element by element the
        /// serial step's operations, so bit for bit its result.
        fn reduce_round<P: Rule, const C: usize>(
            &mut self,
            parts: [&Self::Grads; C],
            k: usize,
            total: &mut Self::Grads,
            first: bool,
            update: Option<(&P::Step, &mut Self::State<P>)>,
        );
        /// Refuses an update that could overflow, given the largest input `max_in` and, for
        /// every chain but the network's top one, a bound `d` on the last layer's `|dL/dz|`
        /// (`None`: the one measured by `track_last`, or by `track_all` when `measured`).
        /// Returns the bound on the first layer's `|dL/dz|` and the factor of its input
        /// gradient, `O max|W| >= |W^T v| / max|v|`, for the layer below.
        #[allow(clippy::too_many_arguments)]
        fn check<P: Rule>(
            &self,
            t: &Self::Tile,
            max_in: f64,
            n: usize,
            step: &P::Step,
            s: &Self::State<P>,
            d: Option<f64>,
            measured: bool,
        ) -> Result<(f64, f64), Error>;
    }
}
pub(crate) use sealed::{InBlock, InRow, LayerKernel, OutBlock, OutRow, ShapeKernel};

impl<const I: usize, const O: usize, A: Activation> Layer for Dense<I, O, A> {
    const PARAMS: usize = I * O + O;
    const DEPTH: usize = 1;
}

impl<const I: usize, const O: usize, A: Activation> LayerKernel for Dense<I, O, A> {
    const WIDTHS_OK: bool = I >= 1 && O >= 1;
    const ROWS_IN: bool = lanes::ROW_VIEW && I >= 16 && O >= 32;
    type In = Dim<I>;
    type Out = Dim<O>;
    type Tile = DenseTile<O>;
    type Grads = DenseGrads<I, O>;
    type State<P: Rule> = P::State<I, O>;
    type Last = A;

    fn init_glorot(&mut self, rng: &mut SplitMix64) {
        Dense::init_glorot(self, rng);
    }

    fn visit(&self, f: &mut impl FnMut(&[f32])) {
        f(self.weights().as_flattened());
        f(self.bias());
    }

    fn visit_mut(&mut self, f: &mut impl FnMut(&mut [f32])) {
        let (w, b) = self.params_mut();
        f(w.as_flattened_mut());
        f(b);
    }

    fn visit_grads(g: &DenseGrads<I, O>, f: &mut impl FnMut(&[f32])) {
        f(g.w.as_flattened());
        f(&g.b);
    }

    fn visit_state<P: Rule>(s: &P::State<I, O>, f: &mut impl FnMut(&[f32])) {
        for slot in s.as_ref() {
            f(slot.w.as_flattened());
            f(&slot.b);
        }
    }

    fn describe(&self, f: &mut impl FnMut(LayerInfo, &dyn ActivationF64)) {
        let info = LayerInfo {
            inputs: I,
            outputs: O,
            activation: self.activation().name(),
            params: I * O + O,
        };
        f(info, self.activation());
    }

    fn rust_type(out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        write!(
            out,
            "::fusedprop::Dense<{I}, {O}, ::fusedprop::{}>",
            A::RUST_TYPE
        )
    }

    fn rust_value(&self, out: &mut dyn core::fmt::Write, indent: usize) -> core::fmt::Result {
        let (p1, p2) = (indent + 4, indent + 8);
        write!(out, "::fusedprop::Dense::from_parts(\n{:p1$}[\n", "")?;
        for row in self.weights() {
            write!(out, "{:p2$}[", "")?;
            write_floats(out, row)?;
            out.write_str("],\n")?;
        }
        write!(out, "{:p1$}],\n{:p1$}[", "", "")?;
        write_floats(out, self.bias())?;
        write!(out, "],\n{:p1$}", "")?;
        self.activation().rust_value(out)?;
        write!(out, ",\n{:indent$})", "")
    }

    #[inline(always)]
    fn forward_one(&self, x: &[f32; I], y: &mut [f32; O]) {
        if A::RELU {
            Dense::forward_one::<true>(self, x, y);
            return;
        }
        Dense::forward_one::<false>(self, x, y);
        if A::KEEPS {
            // The activation sixteen outputs at a time, through the same lane kernel as the
            // batch path.
            let act = self.activation();
            let (full, rest) = y.as_chunks_mut::<LANES>();
            for c in full {
                lanes::store16(act.forward(lanes::load16(c)), c);
            }
            if !rest.is_empty() {
                let v = act.forward(lanes::load_partial(rest));
                let n = rest.len();
                rest.copy_from_slice(&lanes::to_array(v)[..n]);
            }
        }
    }

    #[inline]
    fn forward_block(&self, x: &[Lane; I], y: &mut [Lane; O]) {
        Dense::forward_block(self, x, y);
        let act = self.activation();
        for v in y.iter_mut() {
            *v = act.forward(*v);
        }
    }

    fn forward_tile(&self, x: &[[Lane; I]], t: &mut DenseTile<O>, valid: Lane) {
        let nb = x.len();
        let act = *self.activation();
        // PERF: the activation, its kept value and the maximum are applied to each output
        // as it leaves the forward kernel's register tile (a second pass over the outputs
        // cost a load and a store per output), with four maxima in flight (one chain would
        // serialize on the max latency). The padded samples of a partial last block get 0
        // outputs and 0 kept values, so that nothing they compute (even an overflow)
        // reaches a gradient or the bound.
        let partial = if lanes::all_positive(valid) {
            usize::MAX
        } else {
            nb - 1
        };
        let keep = lanes::gt(valid, lanes::zero());
        let mut mx = [t.max_out; 4];
        let (a, d) = (&mut t.a, &mut t.d);
        self.forward_blocks_with(x, |b, j, z| {
            let (mut y, kept) = act.forward_train(z);
            if b == partial {
                y = lanes::select(keep, y, lanes::zero());
                if !A::KEPT_IS_OUTPUT {
                    let k = if A::KEEPS { kept } else { d[b][j] };
                    d[b][j] = lanes::select(keep, k, lanes::zero());
                }
            } else if A::KEEPS && !A::KEPT_IS_OUTPUT {
                d[b][j] = kept;
            }
            a[b][j] = y;
            // ReLU's outputs are >= 0 (or NaN, which the maximum keeps as `abs` would).
            let m = if A::RELU { y } else { lanes::abs(y) };
            mx[j & 3] = lanes::max(mx[j & 3], m);
        });
        t.max_out = lanes::max(lanes::max(mx[0], mx[1]), lanes::max(mx[2], mx[3]));
    }

    fn last<'t>(
        &self,
        t: &'t mut DenseTile<O>,
    ) -> (
        &'t [[Lane; O]; TILE_BLOCKS],
        &'t mut [[Lane; O]; TILE_BLOCKS],
        &A,
    ) {
        (&t.a, &mut t.d, self.activation())
    }

    fn out(t: &DenseTile<O>) -> &[[Lane; O]; TILE_BLOCKS] {
        &t.a
    }

    fn track_last(t: &mut DenseTile<O>, nb: usize) {
        // PERF: four chains of each in flight: one serializes on the FMA and max latencies
        // (a tenth of a small network's step).
        let (mut mx, mut ok) = ([t.max_d; 4], [t.ok; 4]);
        for db in &t.d[..nb] {
            for (i, &v) in db.iter().enumerate() {
                mx[i & 3] = lanes::max(mx[i & 3], lanes::abs(v));
                // v * 0 + ok is NaN once a v is NaN or infinite.
                ok[i & 3] = lanes::fma(v, lanes::zero(), ok[i & 3]);
            }
        }
        t.max_d = lanes::max(lanes::max(mx[0], mx[1]), lanes::max(mx[2], mx[3]));
        t.ok = (ok[0] + ok[1]) + (ok[2] + ok[3]);
    }

    fn track_all(t: &mut DenseTile<O>, nb: usize) {
        Self::track_last(t, nb);
    }

    fn backprop(&self, _t: &mut DenseTile<O>, _nb: usize) {}

    fn input_grad<F: Activation>(
        &self,
        t: &DenseTile<O>,
        dx: &mut [[Lane; I]],
        ys: &[[Lane; I]],
        f: &F,
    ) {
        let nb = dx.len();
        let d = &t.d[..nb];
        if F::KEPT_IS_OUTPUT {
            self.backward_input_blocks_with::<false>(d, dx, ys, |_, y, g| f.backward(y, g));
        } else {
            self.backward_input_blocks_with::<false>(d, dx, ys, |k, _, g| f.backward(k, g));
        }
    }

    fn out_max(t: &DenseTile<O>) -> f64 {
        f64::from(lanes::reduce_max(t.max_out))
    }

    fn last_grad_bound(&self) -> f64 {
        A::GRAD_BOUND
    }

    fn accumulate(
        &self,
        x: &[[Lane; I]],
        rows: Option<&[[f32; I]]>,
        t: &mut DenseTile<O>,
        g: &mut DenseGrads<I, O>,
        first: bool,
    ) {
        let sink: Sink<'_, I, O, Sgd> = if first { Sink::Store(g) } else { Sink::Add(g) };
        param_grads_tile(x, rows.filter(|_| I >= 16), &t.d[..x.len()], sink);
    }

    fn apply<P: Rule>(
        &mut self,
        x: &[[Lane; I]],
        rows: Option<&[[f32; I]]>,
        t: &mut DenseTile<O>,
        step: &P::Step,
        s: &mut P::State<I, O>,
        prior: Option<&DenseGrads<I, O>>,
    ) {
        let (w, b) = self.params_mut();
        let sink: Sink<'_, I, O, P> = Sink::Update {
            w,
            b,
            state: s,
            step,
            prior,
        };
        param_grads_tile(x, rows.filter(|_| I >= 16), &t.d[..x.len()], sink);
    }

    fn merge_stats(into: &mut DenseTile<O>, from: &DenseTile<O>) {
        into.max_out = lanes::max(into.max_out, from.max_out);
        into.max_d = lanes::max(into.max_d, from.max_d);
        into.ok += from.ok;
    }

    fn reduce_round<P: Rule, const C: usize>(
        &mut self,
        parts: [&DenseGrads<I, O>; C],
        k: usize,
        total: &mut DenseGrads<I, O>,
        first: bool,
        update: Option<(&P::Step, &mut P::State<I, O>)>,
    ) {
        let (w, b) = self.params_mut();
        let wp: [&[f32]; C] = core::array::from_fn(|i| parts[i].w.as_flattened());
        let bp: [&[f32]; C] = core::array::from_fn(|i| &parts[i].b[..]);
        match update {
            None => {
                reduce_flat::<P>(
                    w.as_flattened_mut(),
                    total.w.as_flattened_mut(),
                    &wp[..k],
                    first,
                    None,
                );
                reduce_flat::<P>(b, &mut total.b, &bp[..k], first, None);
            }
            Some((step, s)) => {
                let slots = s.as_mut();
                let (mut sw, mut sb): ([&mut [f32]; 2], [&mut [f32]; 2]) =
                    ([&mut [], &mut []], [&mut [], &mut []]);
                for (i, slot) in slots.iter_mut().enumerate().take(2) {
                    let DenseGrads {
                        w: slot_w,
                        b: slot_b,
                    } = slot;
                    sw[i] = slot_w.as_flattened_mut();
                    sb[i] = slot_b;
                }
                let n = slots_len::<P, I, O>();
                reduce_flat::<P>(
                    w.as_flattened_mut(),
                    total.w.as_flattened_mut(),
                    &wp[..k],
                    first,
                    Some((step, &mut sw[..n])),
                );
                reduce_flat::<P>(b, &mut total.b, &bp[..k], first, Some((step, &mut sb[..n])));
            }
        }
    }

    fn reset(t: &mut DenseTile<O>) {
        t.max_out = lanes::zero();
        t.max_d = lanes::zero();
        t.ok = lanes::zero();
    }

    fn check<P: Rule>(
        &self,
        t: &DenseTile<O>,
        max_in: f64,
        n: usize,
        step: &P::Step,
        s: &P::State<I, O>,
        d: Option<f64>,
        _measured: bool,
    ) -> Result<(f64, f64), Error> {
        let d = match d {
            Some(d) => d,
            None => {
                if !lanes::all_finite(t.ok) {
                    return Err(Error::NonFinite {
                        what: "gradient",
                        index: None,
                    });
                }
                f64::from(lanes::reduce_max(t.max_d))
            }
        };
        // |dW_jk| = |Σ_s d_sj x_sk| <= n max|d| max|x|; |db_j| <= n max|d|.
        let g = n as f64 * d * max_in.max(1.0);
        let w = f64::from(self.max_abs());
        let mut sm = [0.0f64; 2];
        for (m, slot) in sm.iter_mut().zip(s.as_ref()) {
            let v = max_abs_bits(slot.w.as_flattened()).max(max_abs_bits(&slot.b));
            *m = f64::from(v);
        }
        if !(w.is_finite() && P::is_safe(step, w, g, sm)) {
            return Err(Error::UpdateOverflow);
        }
        Ok((d, O as f64 * w))
    }
}

impl<A: Layer, B: Layer<In = <A as LayerKernel>::Out>> Layer for Chain<A, B> {
    const PARAMS: usize = A::PARAMS + B::PARAMS;
    const DEPTH: usize = A::DEPTH + B::DEPTH;
}

impl<A: Layer, B: Layer<In = <A as LayerKernel>::Out>> Chain<A, B> {
    /// The inputs of `B` for its parameter gradients, once `A`'s are done: `A`'s outputs in
    /// lanes, and, if `B` wants them ([`LayerKernel::ROWS_IN`]), as rows too, transposed
    /// into `A`'s `dL/dz` buffer, which nothing reads after `A`'s gradients.
    // PERF: a hidden layer's inputs exist only in lanes, so its weight gradients need a
    // 16-way cross-lane reduction per 16 weights and tile (about 3 shuffles and adds a
    // weight); the row kernel needs none, and the transpose costs about 5 operations per
    // 8 inputs of 8 samples. 64-128-64-10 went from 89.9% to 91.0% of the FMA peak on
    // AVX-512 and from 58% to 77% with AVX2 (alternating runs, README's Network table).
    #[inline(always)]
    fn inner_rows<'t>(
        a_layer: &A,
        t: &'t mut A::Tile,
        nb: usize,
    ) -> (&'t [InBlock<B>], Option<&'t [InRow<B>]>) {
        let (a, d, _) = a_layer.last(t);
        let a = &a[..nb];
        if !B::ROWS_IN {
            return (a, None);
        }
        let rows = <A::Out as ShapeKernel>::as_rows_mut(&mut d[..nb]);
        <A::Out as ShapeKernel>::to_rows(a, rows);
        (a, Some(rows))
    }
}

impl<A: Layer, B: Layer<In = <A as LayerKernel>::Out>> LayerKernel for Chain<A, B> {
    const WIDTHS_OK: bool = A::WIDTHS_OK && B::WIDTHS_OK;
    const ROWS_IN: bool = A::ROWS_IN;
    type In = A::In;
    type Out = B::Out;
    type Tile = (A::Tile, B::Tile);
    type Grads = (A::Grads, B::Grads);
    type State<P: Rule> = (A::State<P>, B::State<P>);
    type Last = B::Last;

    fn init_glorot(&mut self, rng: &mut SplitMix64) {
        self.0.init_glorot(rng);
        self.1.init_glorot(rng);
    }

    fn visit(&self, f: &mut impl FnMut(&[f32])) {
        self.0.visit(f);
        self.1.visit(f);
    }

    fn visit_mut(&mut self, f: &mut impl FnMut(&mut [f32])) {
        self.0.visit_mut(f);
        self.1.visit_mut(f);
    }

    fn visit_grads(g: &Self::Grads, f: &mut impl FnMut(&[f32])) {
        A::visit_grads(&g.0, f);
        B::visit_grads(&g.1, f);
    }

    fn visit_state<P: Rule>(s: &Self::State<P>, f: &mut impl FnMut(&[f32])) {
        A::visit_state::<P>(&s.0, f);
        B::visit_state::<P>(&s.1, f);
    }

    fn describe(&self, f: &mut impl FnMut(LayerInfo, &dyn ActivationF64)) {
        self.0.describe(f);
        self.1.describe(f);
    }

    fn rust_type(out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        out.write_str("::fusedprop::Chain<")?;
        A::rust_type(out)?;
        out.write_str(", ")?;
        B::rust_type(out)?;
        out.write_str(">")
    }

    fn rust_value(&self, out: &mut dyn core::fmt::Write, indent: usize) -> core::fmt::Result {
        let p = indent + 4;
        write!(out, "::fusedprop::Chain(\n{:p$}", "")?;
        self.0.rust_value(out, p)?;
        write!(out, ",\n{:p$}", "")?;
        self.1.rust_value(out, p)?;
        write!(out, ",\n{:indent$})", "")
    }

    #[inline(always)]
    fn forward_one(&self, x: &InRow<Self>, y: &mut OutRow<Self>) {
        let mut mid = <A::Out as ShapeKernel>::ROW_ZERO;
        self.0.forward_one(x, &mut mid);
        self.1.forward_one(&mid, y);
    }

    #[inline]
    fn forward_block(&self, x: &InBlock<Self>, y: &mut OutBlock<Self>) {
        let mut mid = <A::Out as ShapeKernel>::BLOCK_ZERO;
        self.0.forward_block(x, &mut mid);
        self.1.forward_block(&mid, y);
    }

    fn forward_tile(&self, x: &[InBlock<Self>], t: &mut Self::Tile, valid: Lane) {
        let nb = x.len();
        self.0.forward_tile(x, &mut t.0, valid);
        self.1.forward_tile(&A::out(&t.0)[..nb], &mut t.1, valid);
    }

    fn last<'t>(
        &self,
        t: &'t mut Self::Tile,
    ) -> (
        &'t [OutBlock<Self>; TILE_BLOCKS],
        &'t mut [OutBlock<Self>; TILE_BLOCKS],
        &Self::Last,
    ) {
        self.1.last(&mut t.1)
    }

    fn out(t: &Self::Tile) -> &[OutBlock<Self>; TILE_BLOCKS] {
        B::out(&t.1)
    }

    fn track_last(t: &mut Self::Tile, nb: usize) {
        B::track_last(&mut t.1, nb);
    }

    fn track_all(t: &mut Self::Tile, nb: usize) {
        A::track_all(&mut t.0, nb);
        B::track_all(&mut t.1, nb);
    }

    fn backprop(&self, t: &mut Self::Tile, nb: usize) {
        self.1.backprop(&mut t.1, nb);
        let (a, d, f) = self.0.last(&mut t.0);
        self.1.input_grad(&t.1, &mut d[..nb], &a[..nb], f);
        self.0.backprop(&mut t.0, nb);
    }

    fn input_grad<F: Activation>(
        &self,
        t: &Self::Tile,
        dx: &mut [InBlock<Self>],
        ys: &[InBlock<Self>],
        f: &F,
    ) {
        self.0.input_grad(&t.0, dx, ys, f);
    }

    fn out_max(t: &Self::Tile) -> f64 {
        B::out_max(&t.1)
    }

    fn last_grad_bound(&self) -> f64 {
        self.1.last_grad_bound()
    }

    fn accumulate(
        &self,
        x: &[InBlock<Self>],
        rows: Option<&[InRow<Self>]>,
        t: &mut Self::Tile,
        g: &mut Self::Grads,
        first: bool,
    ) {
        let nb = x.len();
        self.0.accumulate(x, rows, &mut t.0, &mut g.0, first);
        let (a, rows) = Self::inner_rows(&self.0, &mut t.0, nb);
        self.1.accumulate(a, rows, &mut t.1, &mut g.1, first);
    }

    fn apply<P: Rule>(
        &mut self,
        x: &[InBlock<Self>],
        rows: Option<&[InRow<Self>]>,
        t: &mut Self::Tile,
        step: &P::Step,
        s: &mut Self::State<P>,
        prior: Option<&Self::Grads>,
    ) {
        let nb = x.len();
        // Tail first is not needed here: every `d` of the tile was computed by `backprop`
        // with the old weights; the two halves' updates are independent.
        self.0
            .apply::<P>(x, rows, &mut t.0, step, &mut s.0, prior.map(|p| &p.0));
        let (a, rows) = Self::inner_rows(&self.0, &mut t.0, nb);
        self.1
            .apply::<P>(a, rows, &mut t.1, step, &mut s.1, prior.map(|p| &p.1));
    }

    fn reset(t: &mut Self::Tile) {
        A::reset(&mut t.0);
        B::reset(&mut t.1);
    }

    fn merge_stats(into: &mut Self::Tile, from: &Self::Tile) {
        A::merge_stats(&mut into.0, &from.0);
        B::merge_stats(&mut into.1, &from.1);
    }

    fn reduce_round<P: Rule, const C: usize>(
        &mut self,
        parts: [&Self::Grads; C],
        k: usize,
        total: &mut Self::Grads,
        first: bool,
        update: Option<(&P::Step, &mut Self::State<P>)>,
    ) {
        let (ua, ub) = match update {
            Some((step, s)) => (Some((step, &mut s.0)), Some((step, &mut s.1))),
            None => (None, None),
        };
        self.0.reduce_round::<P, C>(
            core::array::from_fn(|i| &parts[i].0),
            k,
            &mut total.0,
            first,
            ua,
        );
        self.1.reduce_round::<P, C>(
            core::array::from_fn(|i| &parts[i].1),
            k,
            &mut total.1,
            first,
            ub,
        );
    }

    fn check<P: Rule>(
        &self,
        t: &Self::Tile,
        max_in: f64,
        n: usize,
        step: &P::Step,
        s: &Self::State<P>,
        d: Option<f64>,
        measured: bool,
    ) -> Result<(f64, f64), Error> {
        // Top down: the layer above bounds the `dL/dz` of the layers below it,
        // |f'(z) (W^T d)_k| <= max|f'| O max|W| max|d|, with the weights before the update
        // (or, `measured`, each layer's own maximum).
        let mid = A::out_max(&t.0);
        let (d_above, factor) = self.1.check::<P>(&t.1, mid, n, step, &s.1, d, measured)?;
        let d_below = (!measured).then(|| self.0.last_grad_bound() * factor * d_above);
        self.0
            .check::<P>(&t.0, max_in, n, step, &s.0, d_below, measured)
    }
}

/// Values as Rust `f32` literals separated by commas: `{:?}` is the shortest decimal that
/// reads back as the same `f32` (`-0.0` and subnormals included).
fn write_floats(out: &mut dyn core::fmt::Write, v: &[f32]) -> core::fmt::Result {
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.write_str(", ")?;
        }
        write!(out, "{x:?}")?;
    }
    Ok(())
}

/// The number of state slots of `P` for a dense layer.
fn slots_len<P: Rule, const I: usize, const O: usize>() -> usize {
    <P::State<I, O> as ConstZero>::ZERO.as_ref().len()
}

/// The ordered reduction of [`LayerKernel::reduce_round`] over one flat parameter array `w`,
/// its running sum `total` and its state slots `s` (as many as the rule has).
///
/// Each element goes through the serial step's operations in its order (`g = g0`, `g += g1`,
/// ..., then the rule with `g + g_last`), so the result is bit for bit the serial one however
/// the array is split: with rayon, in chunks over the threads.
// PERF: chunks of 4096 floats (16 KiB of sum) stay in L1 while each part is streamed over
// them once, and the threads split the memory traffic of the reduction (about `parts + 2`
// times the layer's size), which on one thread took a fifth of a two-tile 784-256-10 step.
fn reduce_flat<P: Rule>(
    w: &mut [f32],
    total: &mut [f32],
    parts: &[&[f32]],
    first: bool,
    update: Option<(&P::Step, &mut [&mut [f32]])>,
) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        const CHUNK: usize = 4096;
        const MAX_PARTS: usize = 64;
        if w.len() > CHUNK && parts.len() <= MAX_PARTS {
            let sub = |c: usize, len: usize| -> ([&[f32]; MAX_PARTS], usize) {
                let at = c * CHUNK..c * CHUNK + len;
                let mut p: [&[f32]; MAX_PARTS] = [&[]; MAX_PARTS];
                for (d, s) in p.iter_mut().zip(parts) {
                    *d = &s[at.clone()];
                }
                (p, parts.len())
            };
            let chunks = w.par_chunks_mut(CHUNK).zip(total.par_chunks_mut(CHUNK));
            match update {
                None => chunks.enumerate().for_each(|(c, (w, t))| {
                    let (p, k) = sub(c, t.len());
                    reduce_chunk::<P>(w, t, &p[..k], first, None);
                }),
                Some((step, s)) => match s {
                    [] => chunks.enumerate().for_each(|(c, (w, t))| {
                        let (p, k) = sub(c, t.len());
                        reduce_chunk::<P>(w, t, &p[..k], first, Some((step, &mut [])));
                    }),
                    [s0] => chunks.zip(s0.par_chunks_mut(CHUNK)).enumerate().for_each(
                        |(c, ((w, t), s0))| {
                            let (p, k) = sub(c, t.len());
                            reduce_chunk::<P>(w, t, &p[..k], first, Some((step, &mut [s0])));
                        },
                    ),
                    [s0, s1, ..] => chunks
                        .zip(s0.par_chunks_mut(CHUNK))
                        .zip(s1.par_chunks_mut(CHUNK))
                        .enumerate()
                        .for_each(|(c, (((w, t), s0), s1))| {
                            let (p, k) = sub(c, t.len());
                            let mut s = [s0, s1];
                            reduce_chunk::<P>(w, t, &p[..k], first, Some((step, &mut s)));
                        }),
                },
            }
            return;
        }
    }
    reduce_chunk::<P>(w, total, parts, first, update);
}

/// [`reduce_flat`] on one thread.
fn reduce_chunk<P: Rule>(
    w: &mut [f32],
    total: &mut [f32],
    parts: &[&[f32]],
    first: bool,
    update: Option<(&P::Step, &mut [&mut [f32]])>,
) {
    let sums = parts.len() - usize::from(update.is_some());
    if let (Some((step, [])), 1, true) = (&update, sums, first) {
        // Two tiles in all (a batch of up to 256 samples) and no state: `g0 + g1` straight
        // into the rule, without staging `g0` in `total` (the serial step's `prior + partial`).
        let (g0, g1) = (parts[0], parts[1]);
        for (w, (&a, &b)) in w.iter_mut().zip(g0.iter().zip(g1)) {
            *w = P::apply(step, *w, a + b, &mut [0.0; 2]);
        }
        return;
    }
    // The running sum `g = g0`, `g += g1`, ... of the parts before the last, in `total`.
    for (i, p) in parts[..sums].iter().enumerate() {
        if i == 0 && first {
            total.copy_from_slice(p);
        } else {
            for (t, &v) in total.iter_mut().zip(*p) {
                *t += v;
            }
        }
    }
    let Some((step, s)) = update else {
        return;
    };
    let last = parts[sums];
    // The serial step's `prior + partial`, `prior` the sum of the earlier tiles (none when
    // this is the step's only tile).
    let alone = sums == 0 && first;
    match s {
        [] => {
            for (e, (w, &l)) in w.iter_mut().zip(last).enumerate() {
                let g = if alone { l } else { total[e] + l };
                *w = P::apply(step, *w, g, &mut [0.0; 2]);
            }
        }
        _ => {
            for e in 0..w.len() {
                let g = if alone { last[e] } else { total[e] + last[e] };
                let mut st = [0.0f32; 2];
                for (v, slot) in st.iter_mut().zip(s.iter()) {
                    *v = slot[e];
                }
                w[e] = P::apply(step, w[e], g, &mut st);
                for (v, slot) in st.iter().zip(s.iter_mut()) {
                    slot[e] = *v;
                }
            }
        }
    }
}
