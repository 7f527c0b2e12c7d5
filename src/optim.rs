//! Optimizers. Their updates are applied inside the backward pass
//! ([`Dense::backward_sgd`](crate::Dense::backward_sgd),
//! [`Mlp::train_step`](crate::Mlp::train_step), [`Network::train_step`](crate::Network::train_step)),
//! never as a second sweep over stored gradients.
//!
//! Each optimizer is one *update rule*, written once and generic over the number type, so that
//! the scalar path (single weights), the SIMD path (sixteen weights at once) and the parallel
//! path run the same operations in the same order and agree bit for bit. The rules follow
//! Keras 3 to the operation (`g` is the gradient of the mean loss, `t` the step number from 1):
//!
//! | optimizer | update |
//! |---|---|
//! | [`Sgd`] | `w -= g * lr` |
//! | [`Momentum`] | `v = v * momentum - g * lr`, then `w += v` |
//! | [`Momentum::nesterov`] | `v = v * momentum - g * lr`, then `w += v * momentum - g * lr` |
//! | [`Adam`] | `m += (g - m)(1 - β1)`, `v += (g² - v)(1 - β2)`, `α = lr sqrt(1 - β2^t) / (1 - β1^t)`, `w -= m α / (sqrt(v) + ε)` |
//! | [`Adam::pytorch`] | as Adam, but `w -= m (lr / (1 - β1^t)) / (sqrt(v) / sqrt(1 - β2^t) + ε)` (PyTorch's placement of ε) |
//! | [`Adam::adamw`] | first `w -= w * wd * lr` (decoupled decay, biases included), then Adam |
//!
//! Optimizer state (velocities, moments, the step count) lives in an
//! [`OptimizerState`](crate::OptimizerState) the caller owns, beside the model; plain SGD has
//! none. The per-step scalars (`α`, `β^t`) are computed once per step in `f64` and rounded to
//! `f32`.
//!
//! # Refusing a step
//! Before the first weight of a step is written, the training step bounds every gradient
//! (from the largest activation and backpropagated gradient of the batch) and asks the rule
//! whether an update with gradients of that size could overflow `f32` anywhere: in a weight, a
//! velocity or a moment. If it could, the step is refused with
//! [`Error::UpdateOverflow`] and nothing (weights or optimizer state) is written.

use crate::dense::DenseGrads;
use crate::error::Error;

/// Values too close to `f32::MAX` to be safe: 1/16 of it, a margin for the rounding of
/// sums of up to millions of terms.
pub(crate) const LIMIT: f64 = f32::MAX as f64 / 16.0;

pub(crate) mod sealed {
    use super::ConstZero;
    use crate::dense::DenseGrads;
    use crate::lanes::{self, Lane};
    use core::ops::{Add, Div, Mul, Sub};

    /// The number types an update rule runs on: one weight (`f32`) or sixteen (a lane).
    pub trait Real:
        Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
    {
        /// `v` in every lane.
        fn splat(v: f32) -> Self;
        /// Correctly rounded square root (the same instruction on both types).
        fn sqrt(self) -> Self;
    }

    impl Real for f32 {
        #[inline(always)]
        fn splat(v: f32) -> Self {
            v
        }

        #[inline(always)]
        fn sqrt(self) -> Self {
            // `f32::sqrt` is std-only; the lane square root is IEEE's correctly rounded one on
            // every target, so this agrees bit for bit with the lane path.
            lanes::lane(&lanes::sqrt(lanes::splat(self)), 0)
        }
    }

    impl Real for Lane {
        #[inline(always)]
        fn splat(v: f32) -> Self {
            lanes::splat(v)
        }

        #[inline(always)]
        fn sqrt(self) -> Self {
            lanes::sqrt(self)
        }
    }

    /// The update rule of an optimizer (crate-internal: the optimizers are a closed set).
    pub trait Rule: Copy {
        /// The scalars of one step (learning rate, bias corrections).
        type Step: Copy + Send + Sync;
        /// The state of a dense layer: one array laid out as its parameters per slot (none
        /// for SGD, the velocity for momentum, the two moments for Adam).
        type State<const I: usize, const O: usize>: ConstZero
            + AsRef<[DenseGrads<I, O>]>
            + AsMut<[DenseGrads<I, O>]>
            + Clone
            + PartialEq
            + core::fmt::Debug
            + Send
            + Sync;
        /// The scalars of step `t` (from 1).
        fn step(&self, t: u64) -> Self::Step;
        /// The new value of a weight `w` with gradient `g` and state `s` (updated in place;
        /// only as many entries as the state has slots are used).
        fn apply<T: Real>(c: &Self::Step, w: T, g: T, s: &mut [T; 2]) -> T;
        /// Whether every weight and state value stays finite after an update of weights of
        /// magnitude up to `w` with gradients up to `g` and state up to `s`.
        fn is_safe(c: &Self::Step, w: f64, g: f64, s: [f64; 2]) -> bool;
    }
}
pub(crate) use sealed::{Real, Rule};

/// An optimizer whose update is fused into the backward pass: [`Sgd`], [`Momentum`] or
/// [`Adam`] (which also covers AdamW).
pub trait Optimizer: Rule + core::fmt::Debug + Send + Sync {
    /// The learning rate.
    fn learning_rate(&self) -> f32;
    /// The same optimizer with another learning rate (for schedules).
    ///
    /// # Errors
    /// [`Error::InvalidLearningRate`] unless `lr` is finite and `> 0`.
    fn with_learning_rate(&self, lr: f32) -> Result<Self, Error>;
}

fn check_lr(lr: f32) -> Result<f32, Error> {
    if lr.is_finite() && lr > 0.0 {
        Ok(lr)
    } else {
        Err(Error::InvalidLearningRate(lr))
    }
}

fn check_param(name: &'static str, v: f32, ok: bool) -> Result<f32, Error> {
    if v.is_finite() && ok {
        Ok(v)
    } else {
        Err(Error::InvalidHyperparameter { name, value: v })
    }
}

/// Plain SGD with a learning rate that is finite and positive by construction.
///
/// # Examples
/// ```
/// use fusedprop::Sgd;
/// let sgd = Sgd::new(0.01).unwrap();
/// assert_eq!(sgd.learning_rate(), 0.01);
/// assert!(Sgd::new(f32::NAN).is_err());
/// assert!(Sgd::new(0.0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    lr: f32,
}

impl Sgd {
    /// SGD with learning rate `lr`.
    ///
    /// # Errors
    /// [`Error::InvalidLearningRate`] unless `lr` is finite and `> 0`.
    #[inline]
    pub fn new(lr: f32) -> Result<Self, Error> {
        Ok(Self { lr: check_lr(lr)? })
    }

    /// The learning rate.
    #[must_use]
    #[inline]
    pub fn learning_rate(&self) -> f32 {
        self.lr
    }
}

impl Rule for Sgd {
    type Step = f32;
    type State<const I: usize, const O: usize> = [DenseGrads<I, O>; 0];

    #[inline(always)]
    fn step(&self, _t: u64) -> f32 {
        self.lr
    }

    #[inline(always)]
    fn apply<T: Real>(lr: &f32, w: T, g: T, _s: &mut [T; 2]) -> T {
        w - T::splat(*lr) * g
    }

    fn is_safe(lr: &f32, w: f64, g: f64, _s: [f64; 2]) -> bool {
        g.is_finite() && g < LIMIT && w + f64::from(*lr) * g < LIMIT
    }
}

impl Optimizer for Sgd {
    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn with_learning_rate(&self, lr: f32) -> Result<Self, Error> {
        Sgd::new(lr)
    }
}

/// SGD with momentum, plain or Nesterov, as Keras's `SGD(momentum=..., nesterov=...)`:
/// `v = v * momentum - g * lr`, then `w += v` (or `w += v * momentum - g * lr`).
///
/// # Examples
/// ```
/// use fusedprop::Momentum;
/// let m = Momentum::new(0.01, 0.9)?;
/// let n = Momentum::nesterov(0.01, 0.9)?;
/// assert!(Momentum::new(0.01, 1.5).is_err());
/// # Ok::<(), fusedprop::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Momentum {
    lr: f32,
    momentum: f32,
    nesterov: bool,
}

impl Momentum {
    /// SGD with momentum (Keras's `SGD(learning_rate=lr, momentum=momentum)`).
    ///
    /// # Errors
    /// [`Error::InvalidLearningRate`] unless `lr` is finite and `> 0`;
    /// [`Error::InvalidHyperparameter`] unless `0 <= momentum < 1`.
    pub fn new(lr: f32, momentum: f32) -> Result<Self, Error> {
        Ok(Self {
            lr: check_lr(lr)?,
            momentum: check_param("momentum", momentum, (0.0..1.0).contains(&momentum))?,
            nesterov: false,
        })
    }

    /// Nesterov momentum (Keras's `SGD(..., nesterov=True)`).
    ///
    /// # Errors
    /// As [`Momentum::new`].
    pub fn nesterov(lr: f32, momentum: f32) -> Result<Self, Error> {
        Ok(Self {
            nesterov: true,
            ..Self::new(lr, momentum)?
        })
    }

    /// The momentum coefficient.
    #[must_use]
    pub fn momentum(&self) -> f32 {
        self.momentum
    }

    /// Whether the update is Nesterov's.
    #[must_use]
    pub fn is_nesterov(&self) -> bool {
        self.nesterov
    }
}

/// The scalars of a momentum step.
#[derive(Clone, Copy)]
pub struct MomentumStep {
    lr: f32,
    momentum: f32,
    nesterov: bool,
}

impl Rule for Momentum {
    type Step = MomentumStep;
    type State<const I: usize, const O: usize> = [DenseGrads<I, O>; 1];

    fn step(&self, _t: u64) -> MomentumStep {
        MomentumStep {
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
        }
    }

    #[inline(always)]
    fn apply<T: Real>(c: &MomentumStep, w: T, g: T, s: &mut [T; 2]) -> T {
        let (mu, lr) = (T::splat(c.momentum), T::splat(c.lr));
        let v = s[0] * mu - g * lr;
        s[0] = v;
        if c.nesterov {
            w + (v * mu - g * lr)
        } else {
            w + v
        }
    }

    fn is_safe(c: &MomentumStep, w: f64, g: f64, s: [f64; 2]) -> bool {
        let step = f64::from(c.lr) * g;
        let v = f64::from(c.momentum) * s[0] + step;
        let dw = if c.nesterov {
            f64::from(c.momentum) * v + step
        } else {
            v
        };
        g.is_finite() && g < LIMIT && v < LIMIT && w + dw < LIMIT
    }
}

impl Optimizer for Momentum {
    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn with_learning_rate(&self, lr: f32) -> Result<Self, Error> {
        Ok(Self {
            lr: check_lr(lr)?,
            ..*self
        })
    }
}

/// Where Adam adds ε.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epsilon {
    /// Keras and TensorFlow: `w -= m α / (sqrt(v) + ε)` with `α = lr sqrt(1 - β2^t) / (1 - β1^t)`.
    Keras,
    /// PyTorch: `w -= m (lr / (1 - β1^t)) / (sqrt(v) / sqrt(1 - β2^t) + ε)`.
    PyTorch,
}

/// Adam, and AdamW with [`Adam::adamw`], as Keras defines them (PyTorch's placement of ε with
/// [`Adam::pytorch`]).
///
/// Defaults are Keras's: `β1 = 0.9`, `β2 = 0.999`, `ε = 1e-7` (PyTorch's `ε` is `1e-8`: set it
/// with [`Adam::epsilon`]).
///
/// # Examples
/// ```
/// use fusedprop::Adam;
/// let adam = Adam::new(0.001)?;
/// let adamw = Adam::adamw(0.002, 0.01)?;
/// let torch = Adam::pytorch(0.001)?.epsilon(1e-8)?;
/// assert!(Adam::new(0.001)?.betas(0.9, 1.0).is_err());
/// # Ok::<(), fusedprop::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    placement: Epsilon,
}

impl Adam {
    /// Keras's `Adam(learning_rate=lr)`.
    ///
    /// # Errors
    /// [`Error::InvalidLearningRate`] unless `lr` is finite and `> 0`.
    pub fn new(lr: f32) -> Result<Self, Error> {
        Ok(Self {
            lr: check_lr(lr)?,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            weight_decay: 0.0,
            placement: Epsilon::Keras,
        })
    }

    /// Keras's `AdamW(learning_rate=lr, weight_decay=weight_decay)`: before each Adam step
    /// `w -= w * weight_decay * lr`, on every weight and bias.
    ///
    /// # Errors
    /// As [`Adam::new`], and [`Error::InvalidHyperparameter`] unless
    /// `0 <= weight_decay` and `weight_decay * lr < 1`.
    pub fn adamw(lr: f32, weight_decay: f32) -> Result<Self, Error> {
        let a = Self::new(lr)?;
        let ok = weight_decay >= 0.0 && f64::from(weight_decay) * f64::from(lr) < 1.0;
        Ok(Self {
            weight_decay: check_param("weight_decay", weight_decay, ok)?,
            ..a
        })
    }

    /// Adam with PyTorch's placement of ε (and still Keras's default ε, `1e-7`).
    ///
    /// # Errors
    /// As [`Adam::new`].
    pub fn pytorch(lr: f32) -> Result<Self, Error> {
        Ok(Self {
            placement: Epsilon::PyTorch,
            ..Self::new(lr)?
        })
    }

    /// The same optimizer with decay rates `beta1` and `beta2` of the moments.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] unless both are in `[0, 1)`.
    pub fn betas(self, beta1: f32, beta2: f32) -> Result<Self, Error> {
        Ok(Self {
            beta1: check_param("beta_1", beta1, (0.0..1.0).contains(&beta1))?,
            beta2: check_param("beta_2", beta2, (0.0..1.0).contains(&beta2))?,
            ..self
        })
    }

    /// The same optimizer with another ε.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] unless `eps` is finite and `> 0` (the refusal bound
    /// divides by it).
    pub fn epsilon(self, eps: f32) -> Result<Self, Error> {
        Ok(Self {
            eps: check_param("epsilon", eps, eps > 0.0)?,
            ..self
        })
    }

    /// Where ε is added.
    #[must_use]
    pub fn epsilon_placement(&self) -> Epsilon {
        self.placement
    }

    /// The decoupled weight decay (0 for plain Adam).
    #[must_use]
    pub fn weight_decay(&self) -> f32 {
        self.weight_decay
    }
}

/// The scalars of an Adam step.
#[derive(Clone, Copy)]
pub struct AdamStep {
    /// `1 - β1`, `1 - β2`.
    b1c: f32,
    b2c: f32,
    /// Keras: `α`; PyTorch: `lr / (1 - β1^t)`.
    alpha: f32,
    /// PyTorch: `sqrt(1 - β2^t)`; Keras: unused.
    bc2_sqrt: f32,
    eps: f32,
    /// `weight_decay`, `lr` (AdamW); `decay` is false for plain Adam.
    wd: f32,
    lr: f32,
    decay: bool,
    pytorch: bool,
}

/// `b^t` in `f64`, by squaring (no `powi` without std).
fn pow(b: f64, t: u64) -> f64 {
    let (mut r, mut b, mut t) = (1.0, b, t);
    while t > 0 {
        if t & 1 == 1 {
            r *= b;
        }
        b *= b;
        t >>= 1;
    }
    r
}

impl Rule for Adam {
    type Step = AdamStep;
    type State<const I: usize, const O: usize> = [DenseGrads<I, O>; 2];

    fn step(&self, t: u64) -> AdamStep {
        // Keras computes the powers in the variable's dtype, float32.
        let bc1 = 1.0 - pow(f64::from(self.beta1), t) as f32;
        let bc2 = 1.0 - pow(f64::from(self.beta2), t) as f32;
        let bc2_sqrt = Real::sqrt(bc2);
        let alpha = match self.placement {
            Epsilon::Keras => self.lr * bc2_sqrt / bc1,
            Epsilon::PyTorch => self.lr / bc1,
        };
        AdamStep {
            b1c: 1.0 - self.beta1,
            b2c: 1.0 - self.beta2,
            alpha,
            bc2_sqrt,
            eps: self.eps,
            wd: self.weight_decay,
            lr: self.lr,
            decay: self.weight_decay > 0.0,
            pytorch: self.placement == Epsilon::PyTorch,
        }
    }

    #[inline(always)]
    fn apply<T: Real>(c: &AdamStep, w: T, g: T, s: &mut [T; 2]) -> T {
        let w = if c.decay {
            w - w * T::splat(c.wd) * T::splat(c.lr)
        } else {
            w
        };
        let m = s[0] + (g - s[0]) * T::splat(c.b1c);
        let v = s[1] + (g * g - s[1]) * T::splat(c.b2c);
        s[0] = m;
        s[1] = v;
        let denom = if c.pytorch {
            v.sqrt() / T::splat(c.bc2_sqrt) + T::splat(c.eps)
        } else {
            v.sqrt() + T::splat(c.eps)
        };
        w - m * T::splat(c.alpha) / denom
    }

    fn is_safe(c: &AdamStep, w: f64, g: f64, s: [f64; 2]) -> bool {
        // m and v are convex combinations of their old values and g, g^2; the denominator is
        // at least ε.
        let m = s[0].max(g);
        let v = s[1].max(g * g);
        let decay = if c.decay {
            w * f64::from(c.wd) * f64::from(c.lr)
        } else {
            0.0
        };
        let step = m * f64::from(c.alpha) / f64::from(c.eps);
        g.is_finite() && m < LIMIT && v < LIMIT && w + decay + step < LIMIT
    }
}

impl Optimizer for Adam {
    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn with_learning_rate(&self, lr: f32) -> Result<Self, Error> {
        Ok(Self {
            lr: check_lr(lr)?,
            ..*self
        })
    }
}

/// A value with an all-zero constant, for state, gradients and scratch that must be buildable
/// in a `static` (crate-internal; implemented for the layer buffers and their tuples).
pub trait ConstZero: Sized {
    /// All zero.
    const ZERO: Self;
}

impl<A: ConstZero, B: ConstZero> ConstZero for (A, B) {
    const ZERO: Self = (A::ZERO, B::ZERO);
}

impl<T: ConstZero, const K: usize> ConstZero for [T; K] {
    const ZERO: Self = [T::ZERO; K];
}
