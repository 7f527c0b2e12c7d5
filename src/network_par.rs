//! [`Network::train_step_par`]: the tiles of a batch spread over rayon's threads, bit for bit
//! the serial [`Network::train_step`] for any optimizer and any number of threads (feature
//! `rayon`).
//!
//! The serial step sums the tiles' parameter gradients in tile order (`g = g0`, `g += g1`, ...)
//! and hands `g + g_last` to the optimizer's rule; its loss is summed per tile and the tile sums
//! in tile order; its refusal bound takes maxima over the tiles. The parallel step computes the
//! same tile gradients, each on whichever thread rayon picks, into one slot of the workspace per
//! tile, then runs the serial step's sequence of additions and the rule element by element in
//! tile order (maxima do not depend on order). So the weights, the optimizer state and the loss
//! are bit for bit the serial ones, and so is the error of a refused step.

use rayon::prelude::*;

use crate::driver::{EXACT_ALWAYS, Inputs, Seed, check_batch, measure, tile_inputs, tile_pass};
use crate::driver::{TILE_SAMPLES, finite_total};
use crate::error::Error;
use crate::head::Head;
use crate::lanes::{self, Lane};
use crate::layer::Layer;
use crate::network::{InRow, NetWorkspace, Network, OptimizerState, Target};
use crate::optim::{ConstZero, Optimizer};
use crate::parallel::PAR_MIN_FLOP;

/// What one slot's tile learned in a round (its error, if any, is kept on the stack of
/// `par_run`, so that the workspace stays all-zero-valid for `bytemuck::zeroed_box`).
#[derive(Clone, Copy, bytemuck::Zeroable)]
struct SlotStats {
    loss: Lane,
    max_x: Lane,
}

impl SlotStats {
    const ZERO: Self = Self {
        loss: Lane::ZERO,
        max_x: Lane::ZERO,
    };
}

/// Caller-owned memory for [`Network::train_step_par`]: `C` tile slots (each a
/// [`NetWorkspace`], whose gradient buffer holds its tile's sums) and the running sum of the
/// tiles. Results depend neither on `C` nor on the number of threads.
///
/// # Examples
/// ```
/// use fusedprop::{chain, Adam, Dense, NetParWorkspace, Network, OptimizerState, Relu,
///                 SoftmaxCrossEntropy};
/// type Layers = chain![Dense<4, 16, Relu>, Dense<16, 3>];
/// let x = vec![[0.5f32; 4]; 300];
/// let y = vec![1u32; 300];
/// let mut net = Network::<Layers, SoftmaxCrossEntropy>::new(1);
/// let mut pws = Box::new(NetParWorkspace::<Layers, 4>::ZERO);
/// pws.set_min_flop(0); // parallel even for this small batch
/// let mut state = OptimizerState::new();
/// let loss = net.train_step_par(&x, &y, &Adam::new(0.01)?, &mut state, &mut pws)?;
/// assert!(loss.is_finite());
/// # Ok::<(), fusedprop::Error>(())
/// ```
#[derive(bytemuck::Zeroable)]
#[zeroable(bound = "")]
pub struct NetParWorkspace<L: Layer, const C: usize> {
    slots: [NetWorkspace<L>; C],
    stats: [SlotStats; C],
    total: L::Grads,
    min_flop: u64,
}

impl<L: Layer, const C: usize> NetParWorkspace<L, C> {
    /// A zeroed workspace with the default threshold [`PAR_MIN_FLOP`], as a `const`.
    pub const ZERO: Self = Self {
        slots: [NetWorkspace::ZERO; C],
        stats: [SlotStats::ZERO; C],
        total: L::Grads::ZERO,
        min_flop: PAR_MIN_FLOP,
    };

    /// A new workspace (by value).
    #[must_use]
    pub fn new() -> Self {
        Self::ZERO
    }

    /// Sets the least arithmetic per round of `C` tiles (FLOP) for which steps go parallel;
    /// `0` makes every step of two or more tiles parallel. Results do not depend on it.
    pub fn set_min_flop(&mut self, flop: u64) {
        self.min_flop = flop;
    }

    /// The threshold set by [`NetParWorkspace::set_min_flop`].
    #[must_use]
    pub fn min_flop(&self) -> u64 {
        self.min_flop
    }
}

impl<L: Layer, const C: usize> Default for NetParWorkspace<L, C> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<L: Layer, const C: usize> core::fmt::Debug for NetParWorkspace<L, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "NetParWorkspace<_, {C}> {{ min_flop: {} }}",
            self.min_flop
        )
    }
}

impl<L: Layer, H: Head<L::Out>> Network<L, H> {
    /// [`Network::train_step`] with the tiles of the batch spread over rayon's threads; the
    /// loss, the weights and the optimizer state are bit for bit those of `train_step`,
    /// whatever the number of threads (module docs). Steps whose rounds of `C` tiles carry
    /// less arithmetic than the workspace's threshold, or of a single tile, run serially.
    ///
    /// # Errors
    /// As [`Network::train_step`]; the same error for the same batch. On error every weight
    /// and the optimizer state are bit for bit unchanged.
    pub fn train_step_par<P: Optimizer, const C: usize>(
        &mut self,
        x: &[InRow<L>],
        y: &[Target<L, H>],
        opt: &P,
        state: &mut OptimizerState<L, P>,
        pws: &mut NetParWorkspace<L, C>,
    ) -> Result<f32, Error> {
        const { assert!(C > 0, "NetParWorkspace needs at least one slot") };
        check_batch::<L, H>(x, y)?;
        crate::simd::warn_once_if_slow_build();
        let tiles = x.len().div_ceil(TILE_SAMPLES);
        let per_round = self.step_flop(x.len().min(C * TILE_SAMPLES));
        if C < 2 || tiles < 2 || per_round < pws.min_flop {
            return self.train_step(x, y, opt, state, &mut pws.slots[0]);
        }
        par_run::<L, H, P, C>(&mut self.layers, x, y, opt, state, pws)
    }
}

fn par_run<L: Layer, H: Head<L::Out>, P: Optimizer, const C: usize>(
    layers: &mut L,
    x: &[InRow<L>],
    y: &[Target<L, H>],
    opt: &P,
    state: &mut OptimizerState<L, P>,
    pws: &mut NetParWorkspace<L, C>,
) -> Result<f32, Error> {
    let n = x.len();
    let tiles = n.div_ceil(TILE_SAMPLES);
    let NetParWorkspace {
        slots,
        stats,
        total,
        ..
    } = pws;
    for ws in slots.iter_mut() {
        L::reset(&mut ws.tile);
    }
    let seed = Seed::Targets(y);
    let mut loss = lanes::zero();
    let mut max_x = lanes::zero();
    let mut errs = [None; C];
    let mut t0 = 0;
    while t0 < tiles {
        let k = (tiles - t0).min(C);
        let m: &L = layers;
        let seed = &seed;
        slots[..k]
            .par_iter_mut()
            .zip(stats[..k].par_iter_mut())
            .zip(errs[..k].par_iter_mut())
            .enumerate()
            .for_each(|(i, ((ws, st), err))| {
                let t = t0 + i;
                let mut mx = lanes::zero();
                let NetWorkspace { x: wx, tile, acc } = ws;
                match tile_pass::<L, H>(m, Inputs::<L>::Rows(x), seed, t, wx, tile, &mut mx) {
                    Ok((nb, l)) => {
                        let (xt, rows) = tile_inputs(Inputs::<L>::Rows(x), t, nb, wx);
                        m.accumulate(xt, rows, tile, acc, true);
                        *st = SlotStats { loss: l, max_x: mx };
                        *err = None;
                    }
                    Err(e) => {
                        *st = SlotStats::ZERO;
                        *err = Some(e);
                    }
                }
            });
        // Errors and the loss in tile order, as the serial step meets them.
        for (st, err) in stats[..k].iter().zip(&errs[..k]) {
            if let Some(e) = *err {
                return Err(e);
            }
            loss += st.loss;
            max_x = lanes::max(max_x, st.max_x);
        }
        let last = t0 + k == tiles;
        let parts: [&L::Grads; C] = core::array::from_fn(|i| &slots[i.min(k - 1)].acc);
        if !last {
            layers.reduce_round::<P, C>(parts, k, total, t0 == 0, None);
            t0 += k;
            continue;
        }
        finite_total(loss)?;
        // The bound of the serial step: maxima over every tile of the step.
        let (head, rest) = slots.split_at_mut(1);
        for ws in rest.iter() {
            L::merge_stats(&mut head[0].tile, &ws.tile);
        }
        let step = opt.step(state.step + 1);
        let max_in = f64::from(lanes::reduce_max(max_x));
        let exact = EXACT_ALWAYS;
        match layers.check::<P>(&head[0].tile, max_in, n, &step, &state.layers, None, exact) {
            Ok(_) => {}
            Err(e) if exact => return Err(e),
            Err(_) => {
                // The exact bound, as the serial step decides it (`driver::measure`), on one
                // thread: the slots' gradients are kept, the head slot's tile buffers reused.
                let NetWorkspace { x: wx, tile, .. } = &mut head[0];
                measure::<L, H>(layers, Inputs::<L>::Rows(x), seed, wx, tile)?;
                layers.check::<P>(&head[0].tile, max_in, n, &step, &state.layers, None, true)?;
            }
        }
        let parts: [&L::Grads; C] = core::array::from_fn(|i| &slots[i.min(k - 1)].acc);
        layers.reduce_round::<P, C>(parts, k, total, t0 == 0, Some((&step, &mut state.layers)));
        state.step += 1;
        t0 += k;
    }
    Ok(lanes::sum(loss) / n as f32)
}
