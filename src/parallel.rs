//! Data parallelism over samples with rayon (feature `rayon`): [`Mlp::train_step_par`] and
//! its caller-owned [`ParWorkspace`], a thin wrapper of
//! [`Network::train_step_par`](crate::Network::train_step_par) and its
//! [`NetParWorkspace`].
//!
//! # Bit for bit the serial step
//! The serial [`Mlp::train_step`] already works in fixed tiles of
//! [`TILE_SAMPLES`](crate::TILE_SAMPLES) samples: each tile's parameter gradients are
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

use crate::error::Error;
use crate::mlp::{Mlp, MlpLayers};
use crate::network::OptimizerState;
use crate::network_par::NetParWorkspace;
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

/// Caller-owned memory for [`Mlp::train_step_par`]: `C` tile slots (each a [`Workspace`](crate::Workspace), whose
/// gradient buffer holds the tile's partial sums) and the running sum of the tiles.
///
/// `C` bounds how many tiles run at once; results do not depend on it (nor on the number of
/// threads). A few slots per core is plenty. Its size is about `C + 1` times a
/// [`Workspace`](crate::Workspace): build large ones on the heap with [`ParWorkspace::new_boxed`] (a plain
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
    net: NetParWorkspace<MlpLayers<I, H, O>, C>,
    sgd: OptimizerState<MlpLayers<I, H, O>, Sgd>,
}

impl<const I: usize, const H: usize, const O: usize, const C: usize> ParWorkspace<I, H, O, C> {
    /// A zeroed workspace with the default threshold [`PAR_MIN_FLOP`], as a `const` for
    /// statics and in-place construction.
    pub const ZERO: Self = {
        let () = Self::SLOTS;
        Self {
            net: NetParWorkspace::ZERO,
            sgd: OptimizerState::ZERO,
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
    /// [`Workspace::new_boxed`](crate::Workspace::new_boxed).
    ///
    /// ```
    /// let pws = fusedprop::ParWorkspace::<784, 256, 10, 4>::new_boxed();
    /// assert_eq!(pws.min_flop(), fusedprop::parallel::PAR_MIN_FLOP);
    /// ```
    #[must_use]
    pub fn new_boxed() -> std::boxed::Box<Self> {
        let () = Self::SLOTS;
        let mut pws: std::boxed::Box<Self> = bytemuck::zeroed_box();
        pws.set_min_flop(PAR_MIN_FLOP);
        pws
    }

    /// Sets the least arithmetic per round of `C` tiles (FLOP) for which steps go parallel;
    /// `0` makes every step with two or more tiles parallel. The result does not depend on
    /// it.
    #[inline]
    pub fn set_min_flop(&mut self, flop: u64) {
        self.net.set_min_flop(flop);
    }

    /// The threshold set by [`ParWorkspace::set_min_flop`].
    #[must_use]
    #[inline]
    pub fn min_flop(&self) -> u64 {
        self.net.min_flop()
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
            self.min_flop()
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
        self.as_network_mut()
            .train_step_par(x, labels, sgd, &mut pws.sgd, &mut pws.net)
    }
}
