//! TEMPORARY stand-ins (replaced by the accurate kernels of the `act-math` branch).
#![allow(dead_code, reason = "stand-ins")]
use crate::lanes::{self, Lane};

pub(crate) fn sigmoid(x: Lane) -> Lane {
    let e = lanes::exp(-x);
    lanes::splat(1.0) / (lanes::splat(1.0) + e)
}
pub(crate) fn tanh(x: Lane) -> Lane {
    lanes::splat(2.0) * sigmoid(x + x) - lanes::splat(1.0)
}
pub(crate) fn silu(x: Lane) -> Lane {
    x * sigmoid(x)
}
pub(crate) fn silu_grad(x: Lane) -> Lane {
    let s = sigmoid(x);
    s * (lanes::splat(1.0) + x * (lanes::splat(1.0) - s))
}
pub(crate) fn erf(x: Lane) -> Lane {
    // Abramowitz-Stegun 7.1.26 placeholder
    let a = lanes::abs(x);
    let t = lanes::splat(1.0) / (lanes::splat(1.0) + lanes::splat(0.327_591_1) * a);
    let p = ((((lanes::splat(1.061_405_4) * t - lanes::splat(1.453_152_1)) * t
        + lanes::splat(1.421_413_8))
        * t
        - lanes::splat(0.284_496_74))
        * t
        + lanes::splat(0.254_829_6))
        * t;
    let r = lanes::splat(1.0) - p * lanes::exp(-a * a);
    lanes::select(lanes::gt(lanes::zero(), x), -r, r)
}
pub(crate) fn gelu(x: Lane) -> Lane {
    x * lanes::splat(0.5)
        * (lanes::splat(1.0) + erf(x * lanes::splat(core::f32::consts::FRAC_1_SQRT_2)))
}
pub(crate) fn gelu_grad(x: Lane) -> Lane {
    let cdf = lanes::splat(0.5)
        * (lanes::splat(1.0) + erf(x * lanes::splat(core::f32::consts::FRAC_1_SQRT_2)));
    let pdf = lanes::exp(lanes::splat(-0.5) * x * x) * lanes::splat(0.398_942_3);
    cdf + x * pdf
}
