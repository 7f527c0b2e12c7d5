//! Optimizers. Their updates are applied inside the backward pass
//! ([`Dense::backward_sgd`](crate::Dense::backward_sgd),
//! [`Mlp::train_step`](crate::Mlp::train_step)), never as a second sweep over stored
//! gradients.
//!
//! # SGD
//! Plain stochastic gradient descent, `theta -= lr * dL/dtheta`, as Keras's
//! `SGD(learning_rate=lr)` with no momentum and PyTorch's `optim.SGD(lr=lr)`.

use crate::error::Error;

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
        if lr.is_finite() && lr > 0.0 {
            Ok(Self { lr })
        } else {
            Err(Error::InvalidLearningRate(lr))
        }
    }

    /// The learning rate.
    #[must_use]
    #[inline]
    pub fn learning_rate(&self) -> f32 {
        self.lr
    }
}
