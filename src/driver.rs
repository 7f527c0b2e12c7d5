//! The tile driver shared by every training entry point ([`Network`]'s, [`Mlp`]'s, and the
//! parallel step's): a batch goes through the layers in tiles of [`TILE_SAMPLES`] samples,
//! forward, seeded by the loss head (or by the caller's `dL/dy`), backward, and then either
//! into a gradient sum or straight into the optimizer's rule (ARCHITECTURE.md, "The path of a
//! training step"). The model types only check their arguments and call [`run`].
//!
//! [`Mlp`]: crate::Mlp

use crate::batch::PackedBatch;
use crate::error::{Error, same_len};
use crate::head::Head;
use crate::lanes::{self, LANES, Lane};
use crate::layer::{InBlock, Layer, LayerKernel, ShapeKernel};
use crate::network::{InRow, NetWorkspace, Network, OptimizerState, OutRow, Target};
use crate::optim::Optimizer;

/// Blocks of sixteen samples in a training tile: 8 where `wide` has SIMD, 1 with the narrow
/// lane of targets without it (`lanes`), where the tile is most of a workspace's memory and
/// there are no parallel FMA pipes for a long tile to keep busy.
pub(crate) const TILE_BLOCKS: usize = if lanes::NARROW { 1 } else { 8 };

/// Samples in a training tile: the activations of this many samples are kept (in the
/// workspace) between the forward and the backward pass, and each weight gradient is reduced
/// across lanes once per tile.
///
/// 128 (eight blocks of sixteen) on targets where `wide` has SIMD (x86 with SSE2, aarch64
/// with NEON, wasm32 with simd128); 16 (one block) on the others, such as Cortex-M and
/// RISC-V microcontrollers, so that a [`Workspace`](crate::Workspace) or
/// [`NetWorkspace`](crate::NetWorkspace) is an eighth of the size. Results depend on it only
/// through the order in which the per-tile sums are added (one tile or several), so the same
/// program on the two kinds of target agrees to rounding.
pub const TILE_SAMPLES: usize = TILE_BLOCKS * LANES;

/// Whether every tile measures every layer's `|dL/dz|` for the exact refusal bound (targets
/// without SIMD, where a pass over `d` is cheap beside the step and flash is not: no
/// closed-form bound and no second pass over the batch), or only the last layer's, the
/// others bounded in closed form and measured by [`measure`] only when that refuses.
pub(crate) const EXACT_ALWAYS: bool = lanes::NARROW;

/// The network, shared (for `gradients`) or unique (for training).
pub(crate) enum NetRef<'a, L> {
    Shared(&'a L),
    Unique(&'a mut L),
}

impl<L> NetRef<'_, L> {
    pub(crate) fn get(&self) -> &L {
        match self {
            NetRef::Shared(l) => l,
            NetRef::Unique(l) => l,
        }
    }
}

/// Where a step's inputs come from: rows, loaded into lanes tile by tile, or a
/// [`PackedBatch`] already in lanes (and checked when it was filled).
pub(crate) enum Inputs<'a, L: LayerKernel> {
    Rows(&'a [InRow<L>]),
    Blocks {
        x: &'a [InBlock<L>],
        n: usize,
        max_x: Lane,
    },
}

impl<L: LayerKernel> Clone for Inputs<'_, L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L: LayerKernel> Copy for Inputs<'_, L> {}

impl<L: LayerKernel> Inputs<'_, L> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Inputs::Rows(x) => x.len(),
            Inputs::Blocks { n, .. } => *n,
        }
    }
}

/// Where the gradient of the last layer's outputs comes from.
pub(crate) enum Seed<'a, T, R> {
    /// The head's loss against these targets.
    Targets(&'a [T]),
    /// Given by the caller, per sample (`dL/dy`).
    Given(&'a [R]),
    /// Class labels already in lanes (a [`PackedBatch`]'s, `-1` in padded lanes).
    Labels(&'a [Lane]),
}

/// What the last tile does with the parameter gradients.
pub(crate) enum Finish<'a, L: Layer, P: Optimizer> {
    Gradients(&'a mut L::Grads),
    /// The gradients, into the workspace's own sum buffer.
    Workspace,
    Update {
        opt: &'a P,
        state: &'a mut OptimizerState<L, P>,
    },
}

/// Errors with the first gradient (in [`Network::write_params`] order) that is not finite:
/// a finite loss does not bound the gradients (`dW = d a^T` overflows with huge activations).
pub(crate) fn finite_grads<L: Layer>(g: &L::Grads) -> Result<(), Error> {
    first_non_finite("gradient", |f| L::visit_grads(g, &mut |s: &[f32]| f(s)))
}

/// Errors with the position (in visiting order) of the first value that `visit` hands its
/// closure that is not finite, as [`Error::NonFinite`] of `what`: the one scan behind
/// [`finite_grads`] and [`Network::check_weights`].
pub(crate) fn first_non_finite(
    what: &'static str,
    visit: impl FnOnce(&mut dyn FnMut(&[f32])),
) -> Result<(), Error> {
    let mut at = 0;
    let mut bad = None;
    visit(&mut |s: &[f32]| {
        if bad.is_none()
            && let Some(i) = s.iter().position(|v| !v.is_finite())
        {
            bad = Some(at + i);
        }
        at += s.len();
    });
    match bad {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite {
            what,
            index: Some(i),
        }),
    }
}

/// Checks a batch before any work.
pub(crate) fn check_batch<L: Layer, H: Head<L::Out>>(
    x: &[InRow<L>],
    y: &[H::T],
) -> Result<(), Error> {
    if x.is_empty() {
        return Err(Error::EmptyBatch);
    }
    same_len(
        <H as crate::head::sealed::HeadKernel<L::Out>>::TARGETS,
        x.len(),
        y.len(),
    )?;
    H::check(y)
}

/// Errors with the index of the first non-finite input of a loaded block.
#[inline(always)]
pub(crate) fn check_inputs<L: LayerKernel>(
    xb: &InBlock<L>,
    rows: &[InRow<L>],
    first: usize,
) -> Result<(), Error> {
    let mut ok = lanes::zero();
    for &v in <L::In as ShapeKernel>::lanes(xb) {
        ok = lanes::fma(v, lanes::zero(), ok);
    }
    if lanes::all_finite(ok) {
        return Ok(());
    }
    let bad = rows
        .iter()
        .position(|r| {
            !<L::In as ShapeKernel>::values(r)
                .iter()
                .all(|v| v.is_finite())
        })
        .unwrap_or(0);
    Err(Error::NonFinite {
        what: "input",
        index: Some(first + bad),
    })
}

/// Forward pass, seed and backward pass of tile `t` up to (not including) the parameter
/// gradients: loads the tile's rows into `wx`, fills `tile`, widens `max_x`; returns the
/// number of blocks and the tile's per-lane loss sum. The layers are only read.
pub(crate) fn tile_pass<L: Layer, H: Head<L::Out>>(
    m: &L,
    inputs: Inputs<'_, L>,
    seed: &Seed<'_, Target<L, H>, OutRow<L>>,
    t: usize,
    wx: &mut [InBlock<L>; TILE_BLOCKS],
    tile: &mut L::Tile,
    max_x: &mut Lane,
) -> Result<(usize, Lane), Error> {
    let n = inputs.len();
    let inv_n = 1.0 / n as f32;
    let first = t * TILE_SAMPLES;
    let count = (n - first).min(TILE_SAMPLES);
    let nb = count.div_ceil(LANES);
    let b0 = first / LANES;
    let xt: &[InBlock<L>] = match inputs {
        Inputs::Rows(x) => {
            for (b, xs) in x[first..first + count].chunks(LANES).enumerate() {
                <L::In as ShapeKernel>::load(xs, &mut wx[b]);
                check_inputs::<L>(&wx[b], xs, first + b * LANES)?;
                for &v in <L::In as ShapeKernel>::lanes(&wx[b]) {
                    *max_x = lanes::max(*max_x, lanes::abs(v));
                }
            }
            &wx[..nb]
        }
        Inputs::Blocks { x, max_x: mx, .. } => {
            *max_x = lanes::max(*max_x, mx);
            &x[b0..b0 + nb]
        }
    };
    let last_valid = lanes::valid(count - (nb - 1) * LANES);
    m.forward_tile(xt, tile, last_valid);
    let (a, d, f) = m.last(tile);
    if <L::Last as crate::activation::sealed::ActKernel>::KEPT_IS_OUTPUT {
        // The layers below read a ReLU's outputs in place of a kept copy; the head reads `d`.
        d[..nb].copy_from_slice(&a[..nb]);
    }
    let mut tile_loss = TileLoss::new(<H as crate::head::sealed::HeadKernel<L::Out>>::FACTOR_BITS);
    // PERF: full blocks two at a time, the head's two dependency chains interleaved
    // (`HeadKernel::loss_n`; Iris 1.5-2% faster, the same values), where the registers hold
    // two blocks of logits and their temporaries (AVX-512); elsewhere one at a time.
    const PAIR: usize = if lanes::FEW_REGS { 1 } else { 2 };
    let mut b = 0;
    while PAIR > 1 && b + PAIR <= nb && first + (b + PAIR) * LANES <= n {
        let start = first + b * LANES;
        let ys: [_; PAIR] = match seed {
            Seed::Targets(y) => {
                core::array::from_fn(|i| H::load(&y[start + i * LANES..start + (i + 1) * LANES]))
            }
            Seed::Labels(y) => {
                let y0 = H::label_lanes(y[b0 + b]).ok_or(Error::EmptyBatch)?;
                let mut ys = [y0; PAIR];
                for (i, v) in ys.iter_mut().enumerate().skip(1) {
                    *v = H::label_lanes(y[b0 + b + i]).ok_or(Error::EmptyBatch)?;
                }
                ys
            }
            Seed::Given(_) => break,
        };
        let Some((ds, _)) = d[b..].split_first_chunk_mut::<PAIR>() else {
            break;
        };
        let ls = H::loss_n::<_, PAIR>(
            core::array::from_fn(|i| &a[b + i]),
            ys.each_ref(),
            inv_n,
            ds.each_mut(),
            f,
        );
        for (i, l) in ls.into_iter().enumerate() {
            tile_loss.push(l, LANES, start + i * LANES)?;
        }
        b += PAIR;
    }
    for b in b..nb {
        let start = first + b * LANES;
        let vn = (n - start).min(LANES);
        let valid = lanes::valid(vn);
        match seed {
            Seed::Targets(y) => {
                let yb = H::load(&y[start..start + vn]);
                let l = H::loss(&a[b], &yb, valid, inv_n, Some((&mut d[b], f)));
                tile_loss.push(l, vn, start)?;
            }
            Seed::Labels(y) => {
                let Some(yb) = H::label_lanes(y[b0 + b]) else {
                    return Err(Error::EmptyBatch);
                };
                let l = H::loss(&a[b], &yb, valid, inv_n, Some((&mut d[b], f)));
                tile_loss.push(l, vn, start)?;
            }
            Seed::Given(g) => {
                let mut gb = <L::Out as ShapeKernel>::BLOCK_ZERO;
                <L::Out as ShapeKernel>::load(&g[start..start + vn], &mut gb);
                let dl = <L::Out as ShapeKernel>::lanes_mut(&mut d[b]);
                for (dv, &gv) in dl.iter_mut().zip(<L::Out as ShapeKernel>::lanes(&gb)) {
                    *dv = crate::activation::sealed::ActKernel::backward(f, *dv, gv);
                }
            }
        }
    }
    L::track_last(tile, nb);
    m.backprop(tile, nb);
    if EXACT_ALWAYS {
        L::track_all(tile, nb);
    }
    Ok((nb, tile_loss.finish()))
}

/// The inputs of tile `t` for the parameter gradients: in lanes, and as rows for a first
/// layer of 16 inputs or more (the row kernel of the weight gradients): the caller's rows, or
/// a packed tile transposed into `wx`, whose memory a packed batch leaves unused, so that
/// both sources give bit for bit the same gradients.
pub(crate) fn tile_inputs<'a, L: Layer>(
    inputs: Inputs<'a, L>,
    t: usize,
    nb: usize,
    wx: &'a mut [InBlock<L>; TILE_BLOCKS],
) -> (&'a [InBlock<L>], Option<&'a [InRow<L>]>) {
    let first = t * TILE_SAMPLES;
    let count = (inputs.len() - first).min(TILE_SAMPLES);
    match inputs {
        Inputs::Rows(x) => (
            &wx[..nb],
            lanes::ROW_VIEW.then_some(&x[first..first + count]),
        ),
        Inputs::Blocks { x, .. } => {
            let xt = &x[first / LANES..first / LANES + nb];
            if !lanes::ROW_VIEW || <L::In as crate::layer::Shape>::N < 16 {
                return (xt, None);
            }
            let rows = &mut <L::In as ShapeKernel>::as_rows_mut(&mut wx[..])[..count];
            <L::In as ShapeKernel>::to_rows(xt, rows);
            (xt, Some(rows))
        }
    }
}

/// The shared forward + backward pass over a whole batch, tile by tile (module docs of
/// [`network`](crate::network)).
pub(crate) fn run<L: Layer, H: Head<L::Out>, P: Optimizer>(
    mut layers: NetRef<'_, L>,
    inputs: Inputs<'_, L>,
    seed: Seed<'_, Target<L, H>, OutRow<L>>,
    ws: &mut NetWorkspace<L>,
    mut finish: Finish<'_, L, P>,
) -> Result<f32, Error> {
    let () = Network::<L, H>::SHAPE;
    crate::simd::warn_once_if_slow_build();
    let n = inputs.len();
    let tiles = n.div_ceil(TILE_SAMPLES);
    let NetWorkspace { x: wx, tile, acc } = ws;
    L::reset(tile);
    let mut max_x = lanes::zero();
    let mut loss = lanes::zero();
    for t in 0..tiles {
        let (nb, tile_loss) =
            tile_pass::<L, H>(layers.get(), inputs, &seed, t, wx, tile, &mut max_x)?;
        loss += tile_loss;
        if t + 1 < tiles {
            let (xt, rows) = tile_inputs(inputs, t, nb, wx);
            let target: &mut L::Grads = match &mut finish {
                Finish::Gradients(g) => g,
                Finish::Workspace | Finish::Update { .. } => acc,
            };
            layers.get().accumulate(xt, rows, tile, target, t == 0);
            continue;
        }
        finite_total(loss)?;
        match &mut finish {
            Finish::Gradients(g) => {
                let (xt, rows) = tile_inputs(inputs, t, nb, wx);
                layers.get().accumulate(xt, rows, tile, g, t == 0);
            }
            Finish::Workspace => {
                let (xt, rows) = tile_inputs(inputs, t, nb, wx);
                layers.get().accumulate(xt, rows, tile, acc, t == 0);
            }
            Finish::Update { opt, state } => {
                let NetRef::Unique(m) = &mut layers else {
                    return Err(Error::EmptyBatch);
                };
                let step = opt.step(state.step + 1);
                let max_in = f64::from(lanes::reduce_max(max_x));
                let exact = EXACT_ALWAYS;
                match m.check::<P>(tile, max_in, n, &step, &state.layers, None, exact) {
                    Ok(_) => {}
                    Err(e) if exact => return Err(e),
                    Err(_) => {
                        // The closed-form bound is loose: measure every layer's `dL/dz` and
                        // decide on those. The last tile ends up in `wx` and `tile` as before.
                        measure::<L, H>(m, inputs, &seed, wx, tile)?;
                        m.check::<P>(tile, max_in, n, &step, &state.layers, None, true)?;
                    }
                }
                let (xt, rows) = tile_inputs(inputs, t, nb, wx);
                let prior = if tiles > 1 { Some(&*acc) } else { None };
                m.apply::<P>(xt, rows, tile, &step, &mut state.layers, prior);
                state.step += 1;
            }
        }
    }
    Ok(lanes::sum(loss) / n as f32)
}

/// The step's statistics again, every layer's `dL/dz` measured (`LayerKernel::track_all`),
/// for the exact refusal bound when the closed-form one refuses: every tile passes forward
/// and backward again, in order, so the last tile's buffers end as the first pass left them.
/// Only a step that the closed-form bound refuses pays for it.
#[cold]
#[inline(never)]
pub(crate) fn measure<L: Layer, H: Head<L::Out>>(
    m: &L,
    inputs: Inputs<'_, L>,
    seed: &Seed<'_, Target<L, H>, OutRow<L>>,
    wx: &mut [InBlock<L>; TILE_BLOCKS],
    tile: &mut L::Tile,
) -> Result<(), Error> {
    L::reset(tile);
    let mut max_x = lanes::zero();
    for t in 0..inputs.len().div_ceil(TILE_SAMPLES) {
        let (nb, _) = tile_pass::<L, H>(m, inputs, seed, t, wx, tile, &mut max_x)?;
        L::track_all(tile, nb);
    }
    Ok(())
}

/// The per-lane sum of a tile's losses, each `add + ln(factor)` (`HeadKernel::loss`), as
/// the sum of the `add`s plus one logarithm of the product of the factors, taken at the end
/// of the tile: a tile's factors below `2^bits` multiply to below `2^127` when
/// `bits * TILE_BLOCKS <= 127` (fewer than 32,768 classes of softmax with SIMD lanes; any
/// number on the narrow lane, one block a tile), and otherwise each block takes its own
/// logarithm. Heads whose factor is one (`bits = 0`) take none. `Network::loss` and the
/// training steps sum through this in the same order, so their losses agree bit for bit.
// PERF: the logarithm was a third of the softmax head's cost on the Iris step.
pub(crate) struct TileLoss {
    add: Lane,
    product: Lane,
    bits: u32,
}

impl TileLoss {
    /// An empty sum for factors below `2^bits`.
    #[inline(always)]
    pub(crate) fn new(bits: u32) -> Self {
        Self {
            add: lanes::zero(),
            product: lanes::splat(1.0),
            bits,
        }
    }

    /// Whether each block takes its own logarithm: on the narrow lane (one block a tile, so
    /// the same value, and the product's code would cost the Cortex-M4F build flash:
    /// examples/cortex-m's budget), and where a tile's product could overflow.
    #[inline(always)]
    fn per_block(&self) -> bool {
        lanes::NARROW || self.bits as usize * TILE_BLOCKS > 127
    }

    /// Adds one block's losses, refusing a non-finite one (`finite_loss`: the block of `n`
    /// samples from `first`). `add + factor` is finite exactly when both are (`add >= 0` or
    /// NaN, `factor` in `[1, 2^bits)` or NaN).
    #[inline(always)]
    pub(crate) fn push(
        &mut self,
        (add, factor): (Lane, Lane),
        n: usize,
        first: usize,
    ) -> Result<(), Error> {
        if self.per_block() {
            let l = if self.bits == 0 {
                add
            } else {
                add + ln_product(factor)
            };
            finite_loss(l, n, first)?;
            self.add += l;
        } else {
            finite_loss(add + factor, n, first)?;
            self.add += add;
            self.product *= factor;
        }
        Ok(())
    }

    /// The per-lane sum.
    #[inline(always)]
    pub(crate) fn finish(self) -> Lane {
        if self.bits == 0 || self.per_block() {
            self.add
        } else {
            self.add + ln_product(self.product)
        }
    }
}

/// `lanes::ln`, once in the binary for every [`TileLoss`] (it runs once a tile).
#[inline(never)]
fn ln_product(p: Lane) -> Lane {
    lanes::ln(p)
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

/// A [`PackedBatch`] as the driver's inputs and seed, checked before any work: not empty, and
/// every label below `classes` (labels are not checked against a model when a batch is filled).
pub(crate) fn packed<'a, L, const I: usize, const B: usize>(
    batch: &'a PackedBatch<I, B>,
    classes: usize,
) -> Result<(Inputs<'a, L>, &'a [Lane]), Error>
where
    L: Layer + LayerKernel<In = crate::layer::Dim<I>>,
{
    if batch.n == 0 {
        return Err(Error::EmptyBatch);
    }
    let blocks = batch.blocks();
    let y = &batch.y[..blocks];
    for (b, &yb) in y.iter().enumerate() {
        if !lanes::labels_below(yb, classes) {
            let (s, l) = lanes::to_array(yb)
                .into_iter()
                .enumerate()
                .find(|&(_, l)| l >= classes as f32)
                .unwrap_or((0, 0.0));
            let index = b * LANES + s;
            // The labels are floats here: from 2^24 on they are rounded, so report the one
            // the caller passed. The first out-of-range sample with such a label is the first
            // such label of the batch (every one is out of range).
            let label = match batch.inexact_label {
                Some((i, label)) if i == index => label,
                _ => l as u32,
            };
            return Err(Error::LabelOutOfRange {
                index,
                label,
                classes,
            });
        }
    }
    let inputs = Inputs::Blocks {
        x: &batch.x[..blocks],
        n: batch.n,
        max_x: batch.max_x,
    };
    Ok((inputs, y))
}
