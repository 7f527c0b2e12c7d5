//! Data parallelism over samples with rayon (feature `rayon`): [`Mlp::train_step_par`] and
//! its caller-owned [`ParWorkspace`].
//!
//! # Bit for bit the serial step
//! The serial [`Mlp::train_step`] already works in fixed tiles of
//! [`TILE_SAMPLES`] samples: each tile's parameter gradients are
//! reduced across lanes once and the tile sums are added in tile order (`g = g0`, `g += g1`,
//! ...), the last one inside the fused update `W -= lr * (g + g_last)`; the loss is summed per
//! tile and the tile sums are added in tile order. The parallel step computes the same tile
//! sums, each on whichever thread rayon picks, into one slot of the workspace per tile, then
//! adds them in the same tile order with the same operations: the parameters are split
//! among the threads in chunks, and each element goes through the whole ordered sequence on
//! one thread. The result is therefore bit for bit the serial result, for any number of
//! threads.
//!
//! Tiles are processed in rounds of `C` (the workspace's slot count). In the last round the
//! last tile's gradient is applied as it is added: each weight's gradient is completed and
//! written into the weight in the same pass, never stored and swept again.
//!
//! # When it pays
//! A rayon fork-join costs 15-21 us on the 2-core reference machine, more than a whole Iris
//! epoch, and the step pays one per round of `C` tiles. A step whose rounds carry less
//! arithmetic than [`PAR_MIN_FLOP`] each (or that has a single tile) runs the serial step on
//! slot 0 of the workspace, so going through `train_step_par` never makes a small batch
//! slower. Small models want many slots (64 for 4-32-3: a tile of it is only about 140 kFLOP),
//! wide ones few (a 784-256-10 tile is about 160 MFLOP).

use rayon::prelude::*;

use crate::TILE_SAMPLES;
use crate::error::Error;
use crate::lanes::{self, Lane};
use crate::mlp::{
    Forward, Gradients, Mlp, Source, TileBufs, Workspace, accumulate, check_batch, check_update,
    finite_total, tile_inputs, tile_pass,
};
use crate::optim::Sgd;

/// The least arithmetic per round (one fork-join over up to `C` tiles), in FLOP as the benches
/// count it (`4(IH + HO) + 2HO` per sample), for which [`Mlp::train_step_par`] goes parallel
/// by default.
///
/// A fork-join costs 15-21 us on the 2-core reference machine, so two threads win once a
/// round is worth about 100 us of serial work; the serial kernels run at 50-95 GFLOP/s, so
/// about 8 MFLOP (`benches`, group `parallel`: 4-32-3 with 64 slots from about 7 000 samples,
/// 784-256-10 from two tiles).
pub const PAR_MIN_FLOP: u64 = 8_000_000;

/// What one tile's pass learned, kept per slot until the ordered reduction (its error, if
/// any, is kept on the stack of `par_run`, so that the workspace stays all-zero-valid for
/// `bytemuck::zeroed_box`).
#[derive(Clone, Copy, bytemuck::Zeroable)]
struct TileStats {
    loss: Lane,
    max_x: Lane,
    max_a: Lane,
}

impl TileStats {
    const ZERO: Self = Self {
        loss: Lane::ZERO,
        max_x: Lane::ZERO,
        max_a: Lane::ZERO,
    };
}

/// Caller-owned memory for [`Mlp::train_step_par`]: `C` tile slots (each a [`Workspace`], whose
/// gradient buffer holds the tile's partial sums) and the running sum of the tiles.
///
/// `C` bounds how many tiles run at once; results do not depend on it (nor on the number of
/// threads). A few slots per core is plenty. Its size is about `C + 1` times a
/// [`Workspace`]: build large ones on the heap with [`ParWorkspace::new_boxed`] (a plain
/// `Box::new(ParWorkspace::ZERO)` goes through the stack in debug builds).
///
/// `C` must be at least 1; a workspace with no slot does not compile (a `const` assertion in
/// its constructors and in [`Mlp::train_step_par`]):
///
/// ```compile_fail,E0080
/// let pws = fusedprop::ParWorkspace::<4, 8, 3, 0>::new_boxed();
/// ```
///
/// # Examples
/// ```
/// use fusedprop::{Mlp, ParWorkspace, Sgd};
/// let x = vec![[0.5f32; 4]; 300];
/// let y = vec![1u32; 300];
/// let mut model = Mlp::<4, 8, 3>::new(1);
/// let mut pws = Box::new(ParWorkspace::<4, 8, 3, 4>::ZERO);
/// pws.set_min_flop(0); // parallel even for this small batch
/// let loss = model.train_step_par(&x, &y, &Sgd::new(0.1)?, &mut pws)?;
/// assert!(loss.is_finite());
/// # Ok::<(), fusedprop::Error>(())
/// ```
#[derive(bytemuck::Zeroable)]
pub struct ParWorkspace<const I: usize, const H: usize, const O: usize, const C: usize> {
    slots: [Workspace<I, H, O>; C],
    stats: [TileStats; C],
    total: Gradients<I, H, O>,
    min_flop: u64,
}

impl<const I: usize, const H: usize, const O: usize, const C: usize> ParWorkspace<I, H, O, C> {
    /// A zeroed workspace with the default threshold [`PAR_MIN_FLOP`], as a `const` for
    /// statics and in-place construction.
    pub const ZERO: Self = {
        let () = Self::SLOTS;
        Self {
            slots: [Workspace::ZERO; C],
            stats: [TileStats::ZERO; C],
            total: Gradients::ZERO,
            min_flop: PAR_MIN_FLOP,
        }
    };

    /// The slot check, evaluated at compile time by every constructor and by
    /// [`Mlp::train_step_par`]: a workspace with no slot has nowhere to run a tile.
    const SLOTS: () = assert!(
        C >= 1,
        "ParWorkspace<I, H, O, C>: C must be at least 1 (a slot per tile run at once; a few per core)"
    );

    /// A new workspace (by value; see the type's docs for large models).
    #[must_use]
    pub fn new() -> Self {
        let () = Self::SLOTS;
        Self::ZERO
    }

    /// A zeroed workspace on the heap, allocated zeroed in place (`bytemuck::zeroed_box`)
    /// with no copy of it on any stack (debug builds move `Box::new(ParWorkspace::ZERO)`
    /// through the stack, which overflows a 2 MiB thread stack from a few slots of a
    /// 784-256-10 model), with the default threshold. Allocates, as
    /// [`Workspace::new_boxed`].
    ///
    /// ```
    /// let pws = fusedprop::ParWorkspace::<784, 256, 10, 4>::new_boxed();
    /// assert_eq!(pws.min_flop(), fusedprop::parallel::PAR_MIN_FLOP);
    /// ```
    #[must_use]
    pub fn new_boxed() -> std::boxed::Box<Self> {
        let () = Self::SLOTS;
        let mut pws: std::boxed::Box<Self> = bytemuck::zeroed_box();
        pws.min_flop = PAR_MIN_FLOP;
        pws
    }

    /// Sets the least arithmetic per round of `C` tiles (FLOP) for which steps go parallel;
    /// `0` makes every step with two or more tiles parallel. The result does not depend on
    /// it.
    #[inline]
    pub fn set_min_flop(&mut self, flop: u64) {
        self.min_flop = flop;
    }

    /// The threshold set by [`ParWorkspace::set_min_flop`].
    #[must_use]
    #[inline]
    pub fn min_flop(&self) -> u64 {
        self.min_flop
    }
}

impl<const I: usize, const H: usize, const O: usize, const C: usize> Default
    for ParWorkspace<I, H, O, C>
{
    fn default() -> Self {
        Self::ZERO
    }
}

impl<const I: usize, const H: usize, const O: usize, const C: usize> core::fmt::Debug
    for ParWorkspace<I, H, O, C>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "ParWorkspace<{I}, {H}, {O}, {C}> {{ min_flop: {} }}",
            self.min_flop
        )
    }
}

/// FLOP of one training step on `n` samples: `2(IH + HO)` forward, `2(IH + HO)` weight
/// gradients and `2HO` input gradient per sample.
#[must_use]
pub fn step_flop(inputs: usize, hidden: usize, outputs: usize, n: usize) -> u64 {
    let (i, h, o) = (inputs as u64, hidden as u64, outputs as u64);
    (4 * (i * h + h * o) + 2 * h * o) * n as u64
}

impl<const I: usize, const H: usize, const O: usize> Mlp<I, H, O> {
    /// [`Mlp::train_step`] with the tiles of the batch spread over rayon's threads; the loss
    /// and the updated weights are bit for bit those of `train_step`, whatever the number of
    /// threads. Steps whose rounds of `C` tiles carry less arithmetic than the workspace's
    /// threshold ([`PAR_MIN_FLOP`] by default), or of a single tile, run serially.
    ///
    /// # Errors
    /// As [`Mlp::train_step`]; the same error for the same batch. On error every weight is
    /// bit for bit unchanged.
    ///
    /// # Examples
    /// See [`ParWorkspace`].
    pub fn train_step_par<const C: usize>(
        &mut self,
        x: &[[f32; I]],
        labels: &[u32],
        sgd: &Sgd,
        pws: &mut ParWorkspace<I, H, O, C>,
    ) -> Result<f32, Error> {
        let () = ParWorkspace::<I, H, O, C>::SLOTS;
        crate::simd::warn_once_if_slow_build();
        check_batch::<I, O>(x, labels)?;
        let src = Source::Rows { x, labels };
        let per_round = step_flop(I, H, O, x.len().min(C * TILE_SAMPLES));
        if C < 2 || src.tiles() < 2 || per_round < pws.min_flop {
            return self.train_step(x, labels, sgd, &mut pws.slots[0]);
        }
        par_run(self, src, sgd.learning_rate(), pws)
    }
}

fn par_run<const I: usize, const H: usize, const O: usize, const C: usize>(
    model: &mut Mlp<I, H, O>,
    src: Source<'_, I>,
    lr: f32,
    pws: &mut ParWorkspace<I, H, O, C>,
) -> Result<f32, Error> {
    let n = src.len();
    let tiles = src.tiles();
    let mut fw = Forward {
        loss: lanes::zero(),
        max_x: lanes::zero(),
        max_a: lanes::zero(),
    };
    let ParWorkspace {
        slots,
        stats,
        total,
        ..
    } = pws;
    let mut errs: [Option<Error>; C] = [None; C];
    let mut t0 = 0;
    while t0 < tiles {
        let k = (tiles - t0).min(C);
        let m: &Mlp<I, H, O> = model;
        slots[..k]
            .par_iter_mut()
            .zip(stats[..k].par_iter_mut())
            .zip(errs[..k].par_iter_mut())
            .enumerate()
            .for_each(|(i, ((ws, st), err))| {
                *st = TileStats::ZERO;
                *err = None;
                let t = t0 + i;
                let Workspace { x, a, dh, z, acc } = ws;
                let mut bufs = TileBufs { x, a, dh, z };
                match tile_pass(m, src, t, &mut bufs, &mut st.max_x, &mut st.max_a) {
                    Ok((blocks, loss)) => {
                        st.loss = loss;
                        let TileBufs { x, a, dh, z } = bufs;
                        let xt = tile_inputs(src, t, blocks, &mut x[..]);
                        accumulate(&a[..blocks], &z[..blocks], xt, &dh[..blocks], acc, true);
                    }
                    Err(e) => *err = Some(e),
                }
            });
        // Errors and the loss in tile order, on this thread.
        for (st, err) in stats[..k].iter().zip(&errs[..k]) {
            if let Some(e) = *err {
                return Err(e);
            }
            fw.loss += st.loss;
            fw.max_x = lanes::max(fw.max_x, st.max_x);
            fw.max_a = lanes::max(fw.max_a, st.max_a);
        }
        let last = t0 + k == tiles;
        if last {
            finite_total(fw.loss)?;
            check_update(model, &fw, lr)?;
        }
        // The fixed-order reduction of the round's gradients (and in the last round the
        // fused update), spread over the threads by parameter.
        let parts: [&Gradients<I, H, O>; C] = core::array::from_fn(|i| &slots[i.min(k - 1)].acc);
        let round = Round {
            parts: &parts[..k],
            first: t0 == 0,
            lr: last.then_some(lr),
        };
        let (hidden, output) = model.layers_mut();
        let (w1, b1) = hidden.params_mut();
        let (w2, b2) = output.params_mut();
        round.reduce(
            w1.as_flattened_mut(),
            total.hidden.w.as_flattened_mut(),
            |g| g.hidden.w.as_flattened(),
        );
        round.reduce(
            w2.as_flattened_mut(),
            total.output.w.as_flattened_mut(),
            |g| g.output.w.as_flattened(),
        );
        round.reduce(b1, &mut total.hidden.b, |g| &g.hidden.b);
        round.reduce(b2, &mut total.output.b, |g| &g.output.b);
        t0 += k;
    }
    Ok(lanes::sum(fw.loss) / n as f32)
}

/// One round's share of the ordered reduction: the tile gradients `parts` (in tile order)
/// are added to the running sum, and in the last round the last part is applied in the
/// fused update instead.
struct Round<'a, const I: usize, const H: usize, const O: usize> {
    parts: &'a [&'a Gradients<I, H, O>],
    /// The round starts the sum (`total = part 0`, the serial pass's `Sink::Store`).
    first: bool,
    /// `Some(lr)` in the last round: `W -= lr * (total + last part)`.
    lr: Option<f32>,
}

impl<'a, const I: usize, const H: usize, const O: usize> Round<'a, I, H, O> {
    /// Reduces one parameter array (`w` the weights, `total` the running sum, `part` the
    /// same array of a tile's gradients) in chunks spread over rayon's threads. Each element
    /// goes through the serial pass's operations in its order: `g = g0`, `g += g1`, ...,
    /// `w -= lr * (g + g_last)` (a multiply and a subtract, not fused), so the result is bit
    /// for bit the serial one whatever the split.
    // PERF: chunks of 4096 floats (16 KiB of sum) stay in L1 while each part is streamed
    // over them once, and the two threads split the memory traffic of the reduction (about
    // `parts + 2` times the model's size), which on one thread took about a fifth of a
    // two-tile 784-256-10 step.
    fn reduce(
        &self,
        w: &mut [f32],
        total: &mut [f32],
        part: impl Fn(&'a Gradients<I, H, O>) -> &'a [f32] + Sync,
    ) {
        const CHUNK: usize = 4096;
        let parts = self.parts;
        let apply = self.lr.map(|lr| (lr, parts.len() - 1));
        let sums = parts.len() - usize::from(apply.is_some());
        debug_assert!(sums > 0 || !self.first);
        w.par_chunks_mut(CHUNK)
            .zip(total.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (w, t))| {
                let at = c * CHUNK..c * CHUNK + t.len();
                if let (Some((lr, l)), 1, true) = (apply, sums, self.first) {
                    // Two tiles in all (a batch of up to 256 samples): `g = g0`, then the
                    // update with `g1`, without staging `g` in `total`.
                    let (g0, g1) = (&part(parts[0])[at.clone()], &part(parts[l])[at]);
                    for (w, (&a, &b)) in w.iter_mut().zip(g0.iter().zip(g1)) {
                        *w -= lr * (a + b);
                    }
                    return;
                }
                for (i, p) in parts[..sums].iter().enumerate() {
                    let p = &part(p)[at.clone()];
                    if i == 0 && self.first {
                        t.copy_from_slice(p);
                    } else {
                        for (t, &p) in t.iter_mut().zip(p) {
                            *t += p;
                        }
                    }
                }
                if let Some((lr, l)) = apply {
                    // `total` holds a sum here: a step of one tile never comes here.
                    let g = &part(parts[l])[at];
                    for (w, (&t, &g)) in w.iter_mut().zip(t.iter().zip(g)) {
                        *w -= lr * (t + g);
                    }
                }
            });
    }
}
