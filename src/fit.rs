//! [`Network::fit`]: training the way Keras's `model.fit` does, with no heap.
//!
//! Epochs of mini-batches of any size, in order or shuffled every epoch (Fisher-Yates on
//! [`SplitMix64`] from a seed, or on any [`rand_core::Rng`] you pass), the last partial batch
//! kept (as Keras keeps it) or dropped, validation after every epoch (loss, and accuracy for
//! classification heads), a learning-rate [`Schedule`], [`EarlyStopping`] and a callback per
//! epoch that sees the epoch's figures ([`EpochLog`]) and may stop training.
//!
//! ```
//! use core::ops::ControlFlow;
//! use fusedprop::fit::{EarlyStopping, FitConfig, FitData, FitWorkspace, Monitor, Schedule};
//! use fusedprop::{chain, Adam, Dense, Network, OptimizerState, Relu, SoftmaxCrossEntropy};
//!
//! type Layers = chain![Dense<2, 16, Relu>, Dense<16, 2>];
//! // XOR, 64 noisy samples: 48 to train on, 16 to validate with.
//! let x: Vec<[f32; 2]> = (0..64).map(|i| [(i & 1) as f32 + 0.01 * i as f32, ((i >> 1) & 1) as f32]).collect();
//! let y: Vec<u32> = (0..64).map(|i| ((i & 1) ^ ((i >> 1) & 1)) as u32).collect();
//! let (x_val, y_val) = (&x[48..], &y[48..]);
//!
//! let mut net = Network::<Layers, SoftmaxCrossEntropy>::new(1);
//! let mut best = net.clone(); // where early stopping keeps the best weights
//! let (adam, mut state) = (Adam::new(0.05)?, OptimizerState::new());
//! let mut ws = FitWorkspace::<Layers, SoftmaxCrossEntropy, 1>::new(); // batches up to 16
//! let mut order = [0usize; 48]; // the permutation, one entry per training sample
//! let config = FitConfig::new(16, 200)
//!     .shuffle(7)
//!     .schedule(Schedule::Cosine { decay_steps: 600, alpha: 0.1 })
//!     .early_stopping(EarlyStopping::new(Monitor::ValLoss).patience(20).restore_best_weights(true));
//! let data = FitData::new(&x[..48], &y[..48], &mut order).validation(x_val, y_val).best(&mut best);
//! let summary = net.fit(data, &adam, &mut state, &mut ws, &config, |log| {
//!     if log.epoch % 50 == 0 {
//!         println!("epoch {}: loss {:.4}, val_loss {:?}", log.epoch + 1, log.loss, log.val_loss);
//!     }
//!     ControlFlow::Continue(())
//! })?;
//! assert!(summary.epochs >= 1);
//! assert!(net.accuracy(x_val, y_val)? >= 0.75);
//! # Ok::<(), fusedprop::fit::FitError>(())
//! ```
//!
//! # What it guarantees
//! - **Every sample once per epoch.** The batches of an epoch are consecutive slices of the
//!   permutation in the caller's `order` buffer, reset to `0..n` at every epoch and then
//!   shuffled, so the permutation depends only on the seed and the epoch (with a seed), and
//!   every sample is in exactly one batch (or in the dropped remainder, with `drop_last`).
//! - **The steps of [`Network::train_step`].** Each batch is gathered from the permutation
//!   into the lanes of the [`FitWorkspace`] once and trained with the kernels of
//!   `train_step`: the losses, weights and optimizer state are bit for bit those of
//!   `train_step` on the same rows in the same order with the same learning rates.
//! - **Data checked once.** Inputs, targets and the validation set are checked before the
//!   first step; a bad sample is an error before anything is trained.
//! - **Refusals.** A step the network refuses ([`Error::UpdateOverflow`], a non-finite loss)
//!   ends `fit` with a [`FitError`] naming the epoch and the batch; the weights and the
//!   optimizer state are those from before that step, bit for bit.
//! - **No heap.** The permutation is the caller's slice, the batch buffers are in the
//!   [`FitWorkspace`], the best weights go into a network the caller provides, and the history
//!   is whatever the callback records.
//!
//! [`SplitMix64`]: crate::rng::SplitMix64

use core::fmt;
use core::ops::ControlFlow;

use crate::error::{Error, same_len};
use crate::head::Head;
use crate::lanes::{self, LANES, Lane};
use crate::layer::{InBlock, Layer, ShapeKernel};
use crate::network::{InRow, NetWorkspace, Network, OptimizerState, Target};
use crate::optim::Optimizer;
use crate::rng::{SplitMix64, shuffle};

/// The order of the training samples in each epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shuffle {
    /// Rows in order, every epoch (Keras's `shuffle=False`).
    None,
    /// A new permutation every epoch, drawn by Fisher-Yates from a [`SplitMix64`] seeded
    /// from this seed and the epoch number: the permutation of epoch `e` depends only on
    /// the seed and `e` (PyTorch's `DataLoader(shuffle=True, generator=...)`).
    ///
    /// [`SplitMix64`]: crate::rng::SplitMix64
    Seed(u64),
}

/// How the learning rate changes during training. `initial` is the optimizer's learning
/// rate, `step` the number of updates applied before this one (Keras's
/// `optimizer.iterations`, [`OptimizerState::steps`]) and `epoch` the epoch, from 0.
///
/// ```
/// use fusedprop::fit::Schedule;
/// let exp = Schedule::Exponential { decay_steps: 100, decay_rate: 0.5, staircase: false };
/// assert!((exp.learning_rate(0.1, 100, 0) - 0.05).abs() < 1e-8);
/// let cos = Schedule::Cosine { decay_steps: 100, alpha: 0.0 };
/// assert!((cos.learning_rate(0.1, 50, 0) - 0.05).abs() < 1e-8);
/// let step = Schedule::Step { every_epochs: 10, factor: 0.1 };
/// assert!((step.learning_rate(0.1, 0, 25) - 0.001).abs() < 1e-9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// The optimizer's learning rate throughout.
    Constant,
    /// `initial * factor^floor(epoch / every_epochs)` (PyTorch's `StepLR`).
    Step {
        /// Epochs between two decays (at least 1).
        every_epochs: usize,
        /// The factor applied at each decay (finite and positive).
        factor: f32,
    },
    /// Keras's `ExponentialDecay`: `initial * decay_rate^(step / decay_steps)`, the exponent
    /// rounded down with `staircase`.
    Exponential {
        /// Steps for one factor of `decay_rate` (at least 1).
        decay_steps: u64,
        /// The factor per `decay_steps` (finite and positive).
        decay_rate: f32,
        /// Whether the exponent is an integer (the rate drops once per `decay_steps`).
        staircase: bool,
    },
    /// Keras's `CosineDecay` (no warm-up): with `s = min(step, decay_steps)`,
    /// `initial * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)`.
    Cosine {
        /// Steps over which the rate falls (at least 1).
        decay_steps: u64,
        /// The floor, a fraction of `initial` in `[0, 1]`.
        alpha: f32,
    },
}

impl Schedule {
    /// The learning rate of the update after `step` updates, in epoch `epoch`, computed in
    /// `f64` and rounded once. A rate that decays to zero (a cosine with `alpha = 0` at its
    /// end) is returned as zero; [`Network::fit`] then uses the least positive normal `f32`,
    /// since the optimizers need a positive rate (the weights then move by nothing an `f32`
    /// weight of normal size can show).
    #[must_use]
    pub fn learning_rate(&self, initial: f32, step: u64, epoch: usize) -> f32 {
        let lr0 = f64::from(initial);
        let lr = match *self {
            Schedule::Constant => return initial,
            Schedule::Step {
                every_epochs,
                factor,
            } => {
                let k = epoch / every_epochs.max(1);
                lr0 * libm::pow(f64::from(factor), k as f64)
            }
            Schedule::Exponential {
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = step as f64 / decay_steps.max(1) as f64;
                if staircase {
                    p = libm::floor(p);
                }
                lr0 * libm::pow(f64::from(decay_rate), p)
            }
            Schedule::Cosine { decay_steps, alpha } => {
                let d = decay_steps.max(1);
                let frac = step.min(d) as f64 / d as f64;
                let cosine = 0.5 * (1.0 + libm::cos(core::f64::consts::PI * frac));
                let alpha = f64::from(alpha);
                lr0 * ((1.0 - alpha) * cosine + alpha)
            }
        };
        lr as f32
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |what, value: f64, expected| {
            Err(Error::InvalidArgument {
                what,
                value,
                expected,
            })
        };
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step {
                every_epochs,
                factor,
            } => {
                if every_epochs == 0 {
                    return bad("every_epochs", 0.0, "at least 1");
                }
                if !(factor.is_finite() && factor > 0.0) {
                    return bad("factor", f64::from(factor), "finite and positive");
                }
                Ok(())
            }
            Schedule::Exponential {
                decay_steps,
                decay_rate,
                ..
            } => {
                if decay_steps == 0 {
                    return bad("decay_steps", 0.0, "at least 1");
                }
                if !(decay_rate.is_finite() && decay_rate > 0.0) {
                    return bad("decay_rate", f64::from(decay_rate), "finite and positive");
                }
                Ok(())
            }
            Schedule::Cosine { decay_steps, alpha } => {
                if decay_steps == 0 {
                    return bad("decay_steps", 0.0, "at least 1");
                }
                if !(0.0..=1.0).contains(&alpha) {
                    return bad("alpha", f64::from(alpha), "in [0, 1]");
                }
                Ok(())
            }
        }
    }
}

/// The figure early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    /// The epoch's training loss (lower is better).
    Loss,
    /// The validation loss (lower is better); needs validation data.
    ValLoss,
    /// The validation accuracy (higher is better); needs validation data and a classification
    /// head.
    ValAccuracy,
}

impl Monitor {
    fn value(self, log: &EpochLog) -> Option<f32> {
        match self {
            Monitor::Loss => Some(log.loss),
            Monitor::ValLoss => log.val_loss,
            Monitor::ValAccuracy => log.val_accuracy,
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(self, Monitor::ValAccuracy)
    }
}

/// Keras's `EarlyStopping` callback: stop when the monitored figure has not improved by more
/// than `min_delta` for `patience` epochs, and with `restore_best_weights` put back the weights
/// of the best epoch when training ends (into the network given by [`FitData::best`]).
///
/// As Keras counts: an epoch improves when `value - min_delta < best` (or `value + min_delta >
/// best` for accuracy); otherwise a counter grows, and training stops once it reaches
/// `patience` (never after the first epoch).
///
/// ```
/// use fusedprop::fit::{EarlyStopping, Monitor};
/// let es = EarlyStopping::new(Monitor::ValLoss).patience(10).min_delta(1e-4).restore_best_weights(true);
/// assert_eq!(es.monitor(), Monitor::ValLoss);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStopping {
    monitor: Monitor,
    patience: usize,
    min_delta: f32,
    restore_best: bool,
}

impl EarlyStopping {
    /// Watches `monitor` with Keras's defaults: patience 0, `min_delta` 0, no restoring.
    #[must_use]
    pub const fn new(monitor: Monitor) -> Self {
        Self {
            monitor,
            patience: 0,
            min_delta: 0.0,
            restore_best: false,
        }
    }

    /// Epochs without improvement after which training stops.
    #[must_use]
    pub const fn patience(mut self, epochs: usize) -> Self {
        self.patience = epochs;
        self
    }

    /// The least change that counts as an improvement (its magnitude is used).
    #[must_use]
    pub const fn min_delta(mut self, delta: f32) -> Self {
        self.min_delta = delta;
        self
    }

    /// Whether to put back the best epoch's weights when training ends.
    #[must_use]
    pub const fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best = restore;
        self
    }

    /// The figure watched.
    #[must_use]
    pub const fn monitor(&self) -> Monitor {
        self.monitor
    }
}

/// What [`Network::fit`] does: batch size, epochs, order, schedule, early stopping. A small
/// `Copy` value built with `const` methods.
///
/// ```
/// use fusedprop::fit::{FitConfig, Schedule};
/// const CONFIG: FitConfig = FitConfig::new(32, 100).shuffle(42).drop_last(true)
///     .schedule(Schedule::Exponential { decay_steps: 1000, decay_rate: 0.9, staircase: false });
/// assert_eq!(CONFIG.batch_size(), 32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitConfig {
    batch_size: usize,
    epochs: usize,
    shuffle: Shuffle,
    drop_last: bool,
    schedule: Schedule,
    early_stopping: Option<EarlyStopping>,
}

impl FitConfig {
    /// `epochs` epochs of batches of `batch_size` samples, rows in order, the last partial
    /// batch kept, a constant learning rate, no early stopping.
    #[must_use]
    pub const fn new(batch_size: usize, epochs: usize) -> Self {
        Self {
            batch_size,
            epochs,
            shuffle: Shuffle::None,
            drop_last: false,
            schedule: Schedule::Constant,
            early_stopping: None,
        }
    }

    /// A new permutation every epoch from `seed` ([`Shuffle::Seed`]).
    #[must_use]
    pub const fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = Shuffle::Seed(seed);
        self
    }

    /// The order of the samples ([`Shuffle`]).
    #[must_use]
    pub const fn order(mut self, shuffle: Shuffle) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// Whether to drop the last batch of an epoch when it is smaller than `batch_size`
    /// (PyTorch's `drop_last`; Keras keeps it).
    #[must_use]
    pub const fn drop_last(mut self, drop: bool) -> Self {
        self.drop_last = drop;
        self
    }

    /// The learning-rate schedule.
    #[must_use]
    pub const fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Early stopping.
    #[must_use]
    pub const fn early_stopping(mut self, early_stopping: EarlyStopping) -> Self {
        self.early_stopping = Some(early_stopping);
        self
    }

    /// The batch size.
    #[must_use]
    pub const fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The number of epochs.
    #[must_use]
    pub const fn epochs(&self) -> usize {
        self.epochs
    }

    /// The batches of an epoch over `n` samples.
    #[must_use]
    pub const fn batches_per_epoch(&self, n: usize) -> usize {
        if self.batch_size == 0 {
            0
        } else if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }
}

/// Inputs with their targets.
type Samples<'a, L, H> = (&'a [InRow<L>], &'a [Target<L, H>]);

/// The data of a [`Network::fit`]: the training samples and targets, the caller's buffer for
/// the permutation (one entry per training sample), and optionally validation data and the
/// network that keeps the best weights for [`EarlyStopping::restore_best_weights`].
///
/// With a generator of your own (any [`rand_core::Rng`]): each epoch's permutation is drawn
/// from it.
/// ```
/// use core::ops::ControlFlow;
/// use fusedprop::rng::SplitMix64;
/// use fusedprop::{chain, Dense, FitConfig, FitData, FitWorkspace, Network, OptimizerState,
///                 Relu, Sgd, SoftmaxCrossEntropy};
/// type L = chain![Dense<2, 8, Relu>, Dense<8, 2>];
/// let x = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]];
/// let y = [1, 1, 0, 0];
/// let train = |seed| {
///     let mut net = Network::<L, SoftmaxCrossEntropy>::new(1);
///     let (mut state, mut ws) = (OptimizerState::new(), FitWorkspace::<L, _, 1>::new());
///     let (mut order, mut rng) = ([0; 4], SplitMix64::new(seed));
///     let data = FitData::new(&x, &y, &mut order).rng(&mut rng);
///     net.fit(data, &Sgd::new(0.1).unwrap(), &mut state, &mut ws, &FitConfig::new(2, 10),
///             |_| ControlFlow::Continue(())).unwrap();
///     net
/// };
/// assert!(train(5) == train(5));
/// ```
pub struct FitData<'a, L: Layer, H: Head<L::Out>> {
    x: &'a [InRow<L>],
    y: &'a [Target<L, H>],
    order: &'a mut [usize],
    validation: Option<Samples<'a, L, H>>,
    best: Option<&'a mut Network<L, H>>,
    rng: Option<&'a mut dyn rand_core::Rng>,
    on_batch: Option<&'a mut dyn FnMut(&BatchLog)>,
}

impl<'a, L: Layer, H: Head<L::Out>> FitData<'a, L, H> {
    /// Training inputs `x` with targets `y` (labels for
    /// [`SoftmaxCrossEntropy`](crate::SoftmaxCrossEntropy), rows for the other heads), and
    /// `order`, which must have one entry per sample: `fit` writes each epoch's permutation
    /// there.
    #[must_use]
    pub fn new(x: &'a [InRow<L>], y: &'a [Target<L, H>], order: &'a mut [usize]) -> Self {
        Self {
            x,
            y,
            order,
            validation: None,
            best: None,
            rng: None,
            on_batch: None,
        }
    }

    /// Data evaluated after every epoch (Keras's `validation_data`).
    #[must_use]
    pub fn validation(mut self, x: &'a [InRow<L>], y: &'a [Target<L, H>]) -> Self {
        self.validation = Some((x, y));
        self
    }

    /// Where early stopping keeps the best epoch's weights (needed for
    /// [`EarlyStopping::restore_best_weights`]).
    #[must_use]
    pub fn best(mut self, best: &'a mut Network<L, H>) -> Self {
        self.best = Some(best);
        self
    }

    /// Shuffle every epoch with this generator instead of [`FitConfig`]'s order: each epoch
    /// starts again from `0..n` and draws its permutation from `rng`.
    #[must_use]
    pub fn rng(mut self, rng: &'a mut dyn rand_core::Rng) -> Self {
        self.rng = Some(rng);
        self
    }

    /// Called after every step with its [`BatchLog`] (Keras's `on_train_batch_end`).
    #[must_use]
    pub fn on_batch(mut self, f: &'a mut dyn FnMut(&BatchLog)) -> Self {
        self.on_batch = Some(f);
        self
    }
}

impl<L: Layer, H: Head<L::Out>> fmt::Debug for FitData<'_, L, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FitData")
            .field("samples", &self.x.len())
            .field("validation", &self.validation.map(|(x, _)| x.len()))
            .field("best", &self.best.is_some())
            .field("rng", &self.rng.is_some())
            .field("on_batch", &self.on_batch.is_some())
            .finish()
    }
}

/// Caller-owned memory for [`Network::fit`]: the step's [`NetWorkspace`] and a batch of up
/// to `16 * B` samples gathered into lanes. `B` bounds the batch size
/// ([`FitWorkspace::CAPACITY`]); [`FitWorkspace::ZERO`] is a `const` for statics.
///
/// ```
/// use fusedprop::{chain, Dense, FitWorkspace, Relu, SoftmaxCrossEntropy};
/// type L = chain![Dense<4, 8, Relu>, Dense<8, 3>];
/// // Batches of up to 64 samples; a large workspace goes in a Box or a static.
/// let ws = Box::new(FitWorkspace::<L, SoftmaxCrossEntropy, 4>::ZERO);
/// assert_eq!(FitWorkspace::<L, SoftmaxCrossEntropy, 4>::CAPACITY, 64);
/// ```
pub struct FitWorkspace<L: Layer, H: Head<L::Out>, const B: usize> {
    step: NetWorkspace<L>,
    x: [InBlock<L>; B],
    y: [[Target<L, H>; LANES]; B],
    rows: [InRow<L>; LANES],
}

impl<L: Layer, H: Head<L::Out>, const B: usize> FitWorkspace<L, H, B> {
    /// A zeroed workspace, as a `const`.
    pub const ZERO: Self = Self {
        step: NetWorkspace::ZERO,
        x: [<L::In as ShapeKernel>::BLOCK_ZERO; B],
        y: [[<H as crate::head::sealed::HeadKernel<L::Out>>::TARGET_ZERO; LANES]; B],
        rows: [<L::In as ShapeKernel>::ROW_ZERO; LANES],
    };

    /// The largest batch: `16 * B` samples.
    pub const CAPACITY: usize = B * LANES;

    /// A new workspace (by value).
    #[must_use]
    pub fn new() -> Self {
        Self::ZERO
    }

    /// Gathers the samples `idx` into lanes, block by block; returns the lane-wise largest
    /// magnitude of the inputs. `idx.len()` is at most the capacity and every index is in
    /// range (checked by the caller).
    fn gather(&mut self, x: &[InRow<L>], y: &[Target<L, H>], idx: &[usize]) -> Lane {
        let mut max_x = lanes::zero();
        for ((ids, xb), yb) in idx
            .chunks(LANES)
            .zip(self.x.iter_mut())
            .zip(self.y.iter_mut())
        {
            for ((&i, row), t) in ids.iter().zip(self.rows.iter_mut()).zip(yb.iter_mut()) {
                *row = x[i];
                *t = y[i];
            }
            <L::In as ShapeKernel>::load(&self.rows[..ids.len()], xb);
            for &v in <L::In as ShapeKernel>::lanes(xb) {
                max_x = lanes::max(max_x, lanes::abs(v));
            }
        }
        max_x
    }
}

impl<L: Layer, H: Head<L::Out>, const B: usize> Default for FitWorkspace<L, H, B> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<L: Layer, H: Head<L::Out>, const B: usize> fmt::Debug for FitWorkspace<L, H, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FitWorkspace<_, _, {B}>")
    }
}

/// The figures of one epoch, given to the callback of [`Network::fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochLog {
    /// The epoch, from 0 (as Keras's callbacks count; Keras prints `epoch + 1`).
    pub epoch: usize,
    /// The epochs asked for.
    pub epochs: usize,
    /// The mean training loss of the epoch: each batch's loss (computed before its update)
    /// weighted by its size, as Keras 3 reports it.
    pub loss: f32,
    /// The validation loss after the epoch, if there is validation data.
    pub val_loss: Option<f32>,
    /// The validation accuracy after the epoch, for classification heads with validation
    /// data.
    pub val_accuracy: Option<f32>,
    /// The learning rate of the epoch's last step.
    pub learning_rate: f32,
    /// Optimizer steps taken so far ([`OptimizerState::steps`]).
    pub steps: u64,
    /// Whether early stopping counted this epoch as its best so far.
    pub improved: bool,
}

/// One step of [`Network::fit`], given to [`FitData::on_batch`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchLog {
    /// The epoch, from 0.
    pub epoch: usize,
    /// The batch of the epoch, from 0.
    pub batch: usize,
    /// Samples in the batch.
    pub size: usize,
    /// The batch's mean loss, computed before the update (as [`Network::train_step`]
    /// returns it).
    pub loss: f32,
    /// The learning rate of the step.
    pub learning_rate: f32,
}

/// Why [`Network::fit`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// All the epochs asked for ran.
    Completed,
    /// Early stopping ran out of patience.
    EarlyStopping,
    /// The callback returned [`ControlFlow::Break`].
    Callback,
}

/// What [`Network::fit`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitSummary {
    /// The epochs that ran.
    pub epochs: usize,
    /// Why training stopped.
    pub stop: Stop,
    /// The best epoch by the early-stopping monitor (from 0), if early stopping was set.
    pub best_epoch: Option<usize>,
    /// The monitored value of that epoch.
    pub best: Option<f32>,
    /// Whether the best epoch's weights were put back.
    pub restored: bool,
    /// The figures of the last epoch that ran.
    pub last: Option<EpochLog>,
}

/// An error of [`Network::fit`]: the [`Error`], and where training was when it happened
/// (`None` for an error in the arguments or the data, found before the first step). A step
/// that was refused left the weights and the optimizer state as they were before it.
///
/// ```
/// use core::ops::ControlFlow;
/// use fusedprop::{chain, Adam, Dense, Error, FitConfig, FitData, FitWorkspace, MeanSquaredError,
///                 Network, OptimizerState, Tanh};
/// type L = chain![Dense<1, 4, Tanh>, Dense<4, 1>];
/// let x = [[0.5f32]; 32];
/// let mut y = [[1.0f32]; 32];
/// y[20] = [1e19]; // in the second batch of 16: Adam's second moment would overflow
/// let mut net = Network::<L, MeanSquaredError>::new(1);
/// let (adam, mut state, mut ws) = (Adam::new(0.01)?, OptimizerState::new(), FitWorkspace::<L, _, 1>::new());
/// let mut order = [0; 32];
/// let err = net
///     .fit(FitData::new(&x, &y, &mut order), &adam, &mut state, &mut ws,
///          &FitConfig::new(16, 5), |_| ControlFlow::Continue(()))
///     .unwrap_err();
/// assert_eq!((err.epoch, err.batch, err.error), (Some(0), Some(1), Error::UpdateOverflow));
/// assert!(err.to_string().starts_with("epoch 1, batch 2: "));
/// assert_eq!(state.steps(), 1); // the first batch's step, and nothing of the refused one
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitError {
    /// What went wrong.
    pub error: Error,
    /// The epoch (from 0) whose step or validation failed.
    pub epoch: Option<usize>,
    /// The batch of that epoch (from 0) whose step was refused; `None` for validation.
    pub batch: Option<usize>,
}

impl FitError {
    fn before(error: Error) -> Self {
        Self {
            error,
            epoch: None,
            batch: None,
        }
    }
}

impl From<Error> for FitError {
    fn from(error: Error) -> Self {
        Self::before(error)
    }
}

impl From<FitError> for Error {
    fn from(e: FitError) -> Self {
        e.error
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.epoch, self.batch) {
            (Some(e), Some(b)) => write!(f, "epoch {}, batch {}: {}", e + 1, b + 1, self.error),
            (Some(e), None) => write!(f, "epoch {}, validation: {}", e + 1, self.error),
            _ => fmt::Display::fmt(&self.error, f),
        }
    }
}

impl core::error::Error for FitError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The seed of epoch `epoch`'s generator: both mixed through SplitMix64's output function so
/// that neighbouring seeds and epochs give unrelated streams.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let e = SplitMix64::new(epoch as u64 ^ 0xA076_1D64_78BD_642F).next_u64();
    SplitMix64::new(seed).next_u64() ^ e
}

/// Writes epoch `epoch`'s permutation of `0..order.len()` into `order`: the identity, then
/// Fisher-Yates from `rng` if given, else as `shuffle` says. This is the order
/// [`Network::fit`] uses.
///
/// ```
/// use fusedprop::fit::{epoch_order, Shuffle};
/// let (mut a, mut b) = ([0usize; 10], [0usize; 10]);
/// epoch_order(&mut a, Shuffle::Seed(3), 5, None);
/// epoch_order(&mut b, Shuffle::Seed(3), 5, None);
/// assert_eq!(a, b);
/// epoch_order(&mut b, Shuffle::None, 5, None);
/// assert_eq!(b, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
/// ```
pub fn epoch_order<'r>(
    order: &mut [usize],
    shuffle_: Shuffle,
    epoch: usize,
    rng: Option<&mut (dyn rand_core::Rng + 'r)>,
) {
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    match (rng, shuffle_) {
        (Some(r), _) => shuffle(order, r),
        (None, Shuffle::Seed(seed)) => {
            shuffle(order, &mut SplitMix64::new(epoch_seed(seed, epoch)));
        }
        (None, Shuffle::None) => {}
    }
}

/// Copies every weight and bias of `src` into `dst`, slice by slice in place: no temporary
/// the size of the network (a large one would need it on the stack), and nothing but the
/// parameters (an activation's own parameter, such as a leaky ReLU's slope, stays `dst`'s).
fn copy_weights<L: Layer, H: Head<L::Out>>(dst: &mut Network<L, H>, src: &Network<L, H>) {
    let mut k = 0;
    dst.layers.visit_mut(&mut |d: &mut [f32]| {
        // The k-th slice of `src`: a walk over the 2 * depth slices, copying one.
        let mut j = 0;
        src.layers.visit(&mut |s: &[f32]| {
            if j == k {
                d.copy_from_slice(s);
            }
            j += 1;
        });
        k += 1;
    });
}

/// The state of early stopping between epochs.
struct Watch {
    es: EarlyStopping,
    best: Option<f32>,
    best_epoch: Option<usize>,
    wait: usize,
}

impl Watch {
    /// Keras's `on_epoch_end`: returns (improved, stop).
    fn update(&mut self, epoch: usize, value: f32) -> (bool, bool) {
        self.wait += 1;
        let d = self.es.min_delta.abs();
        let improved = match self.best {
            None => true,
            Some(b) if self.es.monitor.higher_is_better() => value - d > b,
            Some(b) => value + d < b,
        };
        if improved {
            self.best = Some(value);
            self.best_epoch = Some(epoch);
            self.wait = 0;
            return (true, false);
        }
        (false, self.wait >= self.es.patience && epoch > 0)
    }
}

impl<L: Layer, H: Head<L::Out>> Network<L, H> {
    /// Trains like Keras's `model.fit`: `config.epochs()` epochs of mini-batches of
    /// `config.batch_size()` samples of `data`, with the optimizer `opt` (its learning rate is
    /// the schedule's initial rate) and its `state`; after every epoch the validation data (if
    /// any) is evaluated, early stopping (if set) is updated, and `on_epoch` gets the epoch's
    /// [`EpochLog`]: returning [`ControlFlow::Break`] stops training. Nothing is allocated
    /// (module docs, which also have an example).
    ///
    /// The batches are gathered into `ws` (at most [`FitWorkspace::CAPACITY`] samples) and
    /// trained bit for bit as [`Network::train_step`] trains the same rows.
    ///
    /// Regression (targets are rows), batches of 8 shuffled, the last partial batch dropped,
    /// a step decay of the learning rate, the history recorded by the callback, and a stop
    /// once the loss is low enough:
    /// ```
    /// use core::ops::ControlFlow;
    /// use fusedprop::{chain, Dense, FitConfig, FitData, FitWorkspace, MeanSquaredError,
    ///                 Momentum, Network, OptimizerState, Schedule, Stop, Tanh};
    ///
    /// type L = chain![Dense<1, 16, Tanh>, Dense<16, 1>];
    /// let x: Vec<[f32; 1]> = (0..100).map(|i| [i as f32 / 50.0 - 1.0]).collect();
    /// let y: Vec<[f32; 1]> = x.iter().map(|v| [v[0] * v[0]]).collect();
    /// let mut net = Network::<L, MeanSquaredError>::new(3);
    /// let (opt, mut state) = (Momentum::new(0.05, 0.9)?, OptimizerState::new());
    /// let mut ws = FitWorkspace::<L, MeanSquaredError, 1>::new();
    /// let mut order = vec![0; x.len()];
    /// let config = FitConfig::new(8, 500)
    ///     .shuffle(1)
    ///     .drop_last(true)
    ///     .schedule(Schedule::Step { every_epochs: 100, factor: 0.5 });
    /// let mut history = [0.0f32; 500];
    /// let s = net.fit(FitData::new(&x, &y, &mut order), &opt, &mut state, &mut ws, &config, |log| {
    ///     history[log.epoch] = log.loss;
    ///     if log.loss < 2e-3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    /// })?;
    /// assert_eq!(s.stop, Stop::Callback);
    /// assert_eq!(state.steps(), 12 * s.epochs as u64); // 100 / 8 = 12 full batches an epoch
    /// # Ok::<(), fusedprop::FitError>(())
    /// ```
    ///
    /// # Errors
    /// Before the first step, with no epoch: [`Error::InvalidArgument`] for a batch size of 0
    /// or over the workspace's capacity, a `drop_last` that leaves no batch, a schedule's
    /// parameter out of range, a monitor that needs validation data (or a classification
    /// head) it does not have, or `restore_best_weights` without [`FitData::best`];
    /// [`Error::LengthMismatch`] for an `order` buffer that is not one entry per sample; the
    /// errors of [`Network::loss`] for bad training or validation data. During training, with
    /// the epoch and batch: the errors of [`Network::train_step`] (the step was refused and
    /// changed nothing) and [`Error::InvalidLearningRate`] for a schedule whose rate is not
    /// finite. On error the weights and optimizer state are those after the last step taken.
    pub fn fit<P: Optimizer, const B: usize>(
        &mut self,
        data: FitData<'_, L, H>,
        opt: &P,
        state: &mut OptimizerState<L, P>,
        ws: &mut FitWorkspace<L, H, B>,
        config: &FitConfig,
        mut on_epoch: impl FnMut(&EpochLog) -> ControlFlow<()>,
    ) -> Result<FitSummary, FitError> {
        let FitData {
            x,
            y,
            order,
            validation,
            mut best,
            mut rng,
            mut on_batch,
        } = data;
        let n = x.len();
        let bs = config.batch_size;
        if bs == 0 || bs > FitWorkspace::<L, H, B>::CAPACITY {
            return Err(FitError::before(Error::InvalidArgument {
                what: "batch_size",
                value: bs as f64,
                expected: "at least 1 and at most the FitWorkspace's capacity (16 * B)",
            }));
        }
        // The data, checked once: every step then gathers without checking.
        crate::driver::check_batch::<L, H>(x, y)?;
        if let Some(i) = x.iter().position(|r| {
            !<L::In as ShapeKernel>::values(r)
                .iter()
                .all(|v| v.is_finite())
        }) {
            return Err(FitError::before(Error::NonFinite {
                what: "input",
                index: Some(i),
            }));
        }
        same_len("permutation entries", n, order.len())?;
        let batches = config.batches_per_epoch(n);
        if batches == 0 {
            return Err(FitError::before(Error::InvalidArgument {
                what: "batch_size",
                value: bs as f64,
                expected: "at most the number of training samples when drop_last is set",
            }));
        }
        config.schedule.check()?;
        if let Some((vx, vy)) = validation {
            crate::driver::check_batch::<L, H>(vx, vy)?;
        }
        let mut watch = None;
        if let Some(es) = config.early_stopping {
            let needs_val = matches!(es.monitor, Monitor::ValLoss | Monitor::ValAccuracy);
            let classifies = y
                .first()
                .and_then(<H as crate::head::sealed::HeadKernel<L::Out>>::target_class)
                .is_some();
            if needs_val && validation.is_none() {
                return Err(FitError::before(Error::InvalidArgument {
                    what: "early stopping monitor",
                    value: 0.0,
                    expected: "validation data (FitData::validation) to monitor val_loss or val_accuracy",
                }));
            }
            if es.monitor == Monitor::ValAccuracy && !classifies {
                return Err(FitError::before(Error::InvalidArgument {
                    what: "early stopping monitor",
                    value: 0.0,
                    expected: "a classification head to monitor val_accuracy",
                }));
            }
            if es.restore_best && best.is_none() {
                return Err(FitError::before(Error::InvalidArgument {
                    what: "restore_best_weights",
                    value: 1.0,
                    expected: "a network to keep the best weights in (FitData::best)",
                }));
            }
            watch = Some(Watch {
                es,
                best: None,
                best_epoch: None,
                wait: 0,
            });
        }

        let initial = opt.learning_rate();
        let mut summary = FitSummary {
            epochs: 0,
            stop: Stop::Completed,
            best_epoch: None,
            best: None,
            restored: false,
            last: None,
        };
        let mut result = Ok(());
        'epochs: for epoch in 0..config.epochs {
            epoch_order(order, config.shuffle, epoch, rng.as_deref_mut());
            let mut total = 0.0f64;
            let mut seen = 0usize;
            let mut lr = initial;
            for (b, idx) in order.chunks(bs).take(batches).enumerate() {
                let max_x = ws.gather(x, y, idx);
                let m = idx.len();
                let step = match config.schedule {
                    Schedule::Constant => self.train_step_blocks(
                        &ws.x[..m.div_ceil(LANES)],
                        m,
                        max_x,
                        &ws.y.as_flattened()[..m],
                        opt,
                        state,
                        &mut ws.step,
                    ),
                    s => {
                        lr = s.learning_rate(initial, state.step, epoch);
                        if lr == 0.0 {
                            lr = f32::MIN_POSITIVE;
                        }
                        opt.with_learning_rate(lr).and_then(|o| {
                            self.train_step_blocks(
                                &ws.x[..m.div_ceil(LANES)],
                                m,
                                max_x,
                                &ws.y.as_flattened()[..m],
                                &o,
                                state,
                                &mut ws.step,
                            )
                        })
                    }
                };
                match step {
                    Ok(loss) => {
                        total += f64::from(loss) * m as f64;
                        seen += m;
                        if let Some(f) = on_batch.as_deref_mut() {
                            f(&BatchLog {
                                epoch,
                                batch: b,
                                size: m,
                                loss,
                                learning_rate: lr,
                            });
                        }
                    }
                    Err(error) => {
                        result = Err(FitError {
                            error,
                            epoch: Some(epoch),
                            batch: Some(b),
                        });
                        break 'epochs;
                    }
                }
            }
            let (mut val_loss, mut val_accuracy) = (None, None);
            if let Some((vx, vy)) = validation {
                match self.evaluate(vx, vy, true) {
                    Ok((l, hits)) => {
                        val_loss = Some(l);
                        val_accuracy = hits.map(|h| h as f32 / vx.len() as f32);
                    }
                    Err(error) => {
                        result = Err(FitError {
                            error,
                            epoch: Some(epoch),
                            batch: None,
                        });
                        break 'epochs;
                    }
                }
            }
            let mut log = EpochLog {
                epoch,
                epochs: config.epochs,
                loss: (total / seen.max(1) as f64) as f32,
                val_loss,
                val_accuracy,
                learning_rate: lr,
                steps: state.step,
                improved: false,
            };
            let mut stop_early = false;
            if let Some(w) = watch.as_mut()
                && let Some(v) = w.es.monitor.value(&log)
            {
                let (improved, stop) = w.update(epoch, v);
                log.improved = improved;
                stop_early = stop;
                if improved
                    && w.es.restore_best
                    && let Some(b) = best.as_deref_mut()
                {
                    copy_weights(b, self);
                }
            }
            summary.epochs = epoch + 1;
            summary.last = Some(log);
            if on_epoch(&log).is_break() {
                summary.stop = Stop::Callback;
                break;
            }
            if stop_early {
                summary.stop = Stop::EarlyStopping;
                break;
            }
        }
        if let Some(w) = watch {
            summary.best_epoch = w.best_epoch;
            summary.best = w.best;
            // Keras restores at the end of training whenever it has best weights; a refused
            // step leaves the model as it was before that step, so nothing is restored then.
            if result.is_ok()
                && w.es.restore_best
                && w.best_epoch.is_some()
                && let Some(b) = best.as_deref()
            {
                copy_weights(self, b);
                summary.restored = true;
            }
        }
        result.map(|()| summary)
    }
}
