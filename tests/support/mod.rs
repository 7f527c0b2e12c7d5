//! Shared test support: proptest strategies (as functions), the one table of tolerances,
//! and the finite-difference helper. Included by each test file with `mod support;`.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the shared support"
)]

pub mod net;

use fusedprop::Mlp;
use fusedprop::rng::SplitMix64;
use proptest::prelude::*;
use proptest::test_runner::Config;

// ---------------------------------------------------------------------------------------
// The table of tolerances. Every comparison in the suite uses one of these, and nothing else.
// ---------------------------------------------------------------------------------------

/// Finite differences: relative step. The step for coordinate `x` is
/// `h = FD_STEP * max(1, |x|)`, and the derivative is Richardson's extrapolation of two
/// central differences, `(4 D(h/2) - D(h)) / 3` with `D(h) = (f(x+h) - f(x-h)) / 2h`, whose
/// truncation error is `O(h^4)`: about `1e-12` times the fifth derivative at `h = 1e-3`,
/// while the rounding error of the `f64` loss is about `eps |f| / h = 2e-13 |f|`. A plain
/// central difference would need `h ~ 1e-5` and then has a rounding error near `1e-11 |f|`.
pub const FD_STEP: f64 = 1e-3;

/// Finite differences: the bound on `|g - g_fd| / max(|g|, |g_fd|, FD_FLOOR)`, as the issue
/// asks. Both sides are `f64`: `g` from the oracle's analytic backward, `g_fd` from its
/// forward.
pub const FD_REL: f64 = 1e-6;

/// Finite differences: the floor of the denominator. Gradients far smaller than the function
/// value are compared absolutely: the rounding noise of the difference quotient is about
/// `1e-12 |f|` and the losses and projections under test are at most about 30, so
/// `|g - g_fd| < FD_REL * FD_FLOOR = 1e-10` is above the noise with a margin of ten.
pub const FD_FLOOR: f64 = 1e-4;

/// An absolute-plus-relative tolerance for an `f32` kernel against the `f64` oracle:
/// `|got - want| <= abs * scale + rel * |want|`, where `scale` is the size of the terms the
/// result was summed from (the condition of the sum; 1 where there is no sum).
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    /// Absolute part, multiplied by the scale of the computation.
    pub abs: f64,
    /// Relative part.
    pub rel: f64,
}

/// `f32` unit roundoff, `2^-24`.
pub const U32: f64 = 1.0 / 16_777_216.0;

/// Dense forward (`y = Wx + b`) and the dense gradients (`dW`, `db`, `dx`) over up to `n`
/// terms: a sum of `n` products in `f32`, with FMA or without, has an error below
/// `gamma_n = n u / (1 - n u)` times `sum |terms|` (Higham, Accuracy and Stability, 3.1).
/// The kernels' sums have at most 300 terms here; `abs = 2 n u` with `n` given at the call
/// through [`dot_tol`], plus the final rounding (`rel = u`).
pub fn dot_tol(n: usize) -> Tol {
    Tol {
        abs: 2.0 * (n as f64 + 1.0) * U32,
        rel: U32,
    }
}

/// ReLU and its backward are exact: a select, no arithmetic.
pub const RELU: Tol = Tol { abs: 0.0, rel: 0.0 };

/// Softmax probabilities: `wide`'s `exp` is a polynomial accurate to about 2 ulp, the sum of
/// `N <= 33` terms in `[0, 1]` adds `N u`, and the division one more rounding. Probabilities
/// lie in `[0, 1]`, so an absolute bound of `64 u ~ 4e-6` covers `N <= 33` with margin and
/// `rel = 8 u` the tiny probabilities.
pub const SOFTMAX: Tol = Tol {
    abs: 64.0 * U32,
    rel: 8.0 * U32,
};

/// Log-softmax, softmax backward, log-softmax backward and the cross-entropy: one `exp` per
/// term and one `ln` (`wide`'s `ln` is accurate to a few ulp), a sum of up to 33 terms, and
/// the subtraction of the row maximum, which is exact or one rounding of a value of the size
/// of the logits. `scale` is `max(1, max|z|)` (or the size of the upstream gradient).
pub const LOG_SOFTMAX: Tol = Tol {
    abs: 64.0 * U32,
    rel: 8.0 * U32,
};

/// A tolerance that grows with the number of terms of the longest chain of sums.
#[derive(Debug, Clone, Copy)]
pub struct TolPerTerm {
    /// Absolute part per term, multiplied by the scale of the computation.
    pub abs_per_term: f64,
    /// Relative part.
    pub rel: f64,
}

/// The whole `Mlp` (loss, every parameter gradient, `predict_proba`; `f32` against the
/// oracle). The longest chain of sums has `N + I + H + O` terms (the batch sum, both dense
/// layers, the softmax's normalization); by the `gamma_n` bound each term adds at most `u`
/// times the sum of the absolute values of the terms (the *scale*, which tests/model.rs
/// computes with the oracle's chain rule on magnitudes: activations by the size of their
/// terms `|b1| + sum |W1||x|`, not their value, since a small activation can be the
/// difference of large terms; `dz` by `max(1, size of the logits' terms) / N`). `exp` and `ln` and
/// the error of the upstream quantities (`dz` feeds `dW2` and `dh`) count as 8 more terms,
/// and everything is doubled: `abs = 4 u` per term.
pub const MLP: TolPerTerm = TolPerTerm {
    abs_per_term: 4.0 * U32,
    rel: 4.0 * U32,
};

/// The fused SGD step (`Mlp::train_step`) against `Mlp::gradients` followed by
/// `w - lr * g` in `f32`: both paths sum each gradient in the same order (the same tile
/// kernel, the same lane reduction, earlier tiles added before the last), and the update
/// is the same single `f32` expression `w - lr * g` (Rust never contracts it into an FMA),
/// so they must agree **bit for bit**.
pub const FUSED_SGD: Tol = Tol { abs: 0.0, rel: 0.0 };

/// An optimizer step (`Network::train_step` with SGD, momentum, Nesterov, Adam, Adam with
/// PyTorch's ε, AdamW) against an `f64` replay of its documented rule from the same `f32`
/// weights and state with the oracle's gradients: `1e-5` times the size of the terms of
/// the value's last operation (`|w| + |update|`, `|v μ| + |g lr|`, `|m| + |g - m|(1 - β1)`
/// ...). The rule itself is a handful of `f32` roundings (Adam: about ten, including
/// `sqrt` and the per-step `α`), a few ulp, so `1e-5 ~ 170 u` leaves a wide margin while a
/// wrong coefficient (`β` for `1 - β`, a missing bias correction, ε misplaced) misses by
/// orders of magnitude. The error of the gradient itself is not in this row: the test adds
/// the replay's spread between `g - δ` and `g + δ`, `δ` the network row's bound on `g`
/// (near `g = 0` Adam's step is `±lr` whatever `g`'s size, so it cannot be relative).
pub const OPTIMIZER: Tol = Tol {
    abs: 1e-5,
    rel: 0.0,
};

/// Added to every `f32`-against-oracle bound: products of the tiny edge inputs
/// (`1e-30 * 1e-30`) underflow in `f32` and flush to zero or to a subnormal, an absolute
/// error below eight times the smallest normal `f32` (1.2e-38) that no relative bound covers.
pub const UNDERFLOW: f64 = 8.0 * f32::MIN_POSITIVE as f64;

/// Golden values (tests/golden.rs): a 2-3-2 network whose every quantity is below 2 in
/// magnitude, each result a chain of at most about ten `f32` roundings (three-term sums,
/// one `exp` per logit, one `ln`), against float64 literals from numpy: `16 u ~ 1e-6`
/// absolute. Mean-vs-sum (a factor of 3) and sign mistakes miss it by five orders.
pub const GOLDEN: Tol = Tol {
    abs: 16.0 * U32,
    rel: 0.0,
};

/// The oracle against the same numpy literals: both float64, different summation orders,
/// `exp` and `ln` within a few ulp: `1e-14`.
pub const GOLDEN_ORACLE: Tol = Tol {
    abs: 1e-14,
    rel: 0.0,
};

/// Asserts `|got - want| <= tol.abs * scale + tol.rel * |want| + UNDERFLOW` (NaN fails),
/// naming `what`.
#[track_caller]
pub fn assert_close(got: f64, want: f64, scale: f64, tol: Tol, what: &dyn core::fmt::Display) {
    let bound = tol.abs * scale + tol.rel * want.abs() + UNDERFLOW;
    let err = (got - want).abs();
    assert!(
        err <= bound,
        "{what}: got {got:e}, want {want:e}, |error| {err:e} > bound {bound:e} \
         (abs {:e} x scale {scale:e} + rel {:e})",
        tol.abs,
        tol.rel
    );
}

/// Asserts the finite-difference gradient check for one coordinate.
#[track_caller]
pub fn assert_fd(g: f64, g_fd: f64, what: &dyn core::fmt::Display) {
    let rel = (g - g_fd).abs() / g.abs().max(g_fd.abs()).max(FD_FLOOR);
    assert!(
        rel < FD_REL,
        "{what}: analytic {g:e} vs finite difference {g_fd:e}: relative error {rel:e} \
         >= {FD_REL:e} (floor {FD_FLOOR:e})"
    );
}

/// The step used for coordinate value `x`.
pub fn fd_step(x: f64) -> f64 {
    FD_STEP * x.abs().max(1.0)
}

/// Richardson-extrapolated central difference of `f` at `x` (see [`FD_STEP`]).
pub fn central_difference(x: f64, mut f: impl FnMut(f64) -> f64) -> f64 {
    let h = fd_step(x);
    let d = |f: &mut dyn FnMut(f64) -> f64, h: f64| (f(x + h) - f(x - h)) / (2.0 * h);
    let d1 = d(&mut f, h);
    let d2 = d(&mut f, h / 2.0);
    (4.0 * d2 - d1) / 3.0
}

// ---------------------------------------------------------------------------------------
// Case counts.
// ---------------------------------------------------------------------------------------

/// A proptest config with `default` cases, or `PROPTEST_CASES` if that is set (proptest
/// reads the variable only for its own default config, which `with_cases` replaces).
pub fn cases(default: u32) -> Config {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases: n,
        // Regression files live next to each test file, in `proptest-regressions/`.
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------

/// Values a kernel should handle exactly like their neighbours: signed zeros, tiny and
/// subnormal magnitudes, and the ends of the range `exp` handles in `f32` (`±88`).
pub const EDGE_VALUES: [f32; 10] = [
    0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 1e-40, 88.0, -88.0, 87.5,
];

/// One finite value: mostly uniform in `±range`, sometimes an edge value.
pub fn value(range: f32) -> impl Strategy<Value = f32> + Clone {
    prop_oneof![
        8 => -range..=range,
        1 => proptest::sample::select(&EDGE_VALUES[..6]),
    ]
}

/// A row of `N` logits, mostly in `±20`, with edge values and occasionally `±88`.
pub fn logits<const N: usize>() -> impl Strategy<Value = [f32; N]> + Clone {
    let v = prop_oneof![
        12 => -20.0f32..=20.0,
        2 => proptest::sample::select(&EDGE_VALUES[..]),
    ];
    proptest::array::uniform::<_, N>(v)
}

/// A row of `N` values in `±range` (with a few edge values).
pub fn row<const N: usize>(range: f32) -> impl Strategy<Value = [f32; N]> + Clone {
    proptest::array::uniform::<_, N>(value(range))
}

/// A row of `N` values in `±range`, `f64`, for the oracle's gradient checks (no edge values:
/// finite differences need smooth neighbourhoods).
pub fn row64<const N: usize>(range: f64) -> impl Strategy<Value = [f64; N]> + Clone {
    proptest::array::uniform::<_, N>(-range..=range)
}

/// A batch of `len` rows.
pub fn rows<const N: usize>(
    len: impl Into<proptest::sample::SizeRange>,
    range: f32,
) -> impl Strategy<Value = Vec<[f32; N]>> {
    proptest::collection::vec(row::<N>(range), len)
}

/// `n` labels, each a class of `O`.
pub fn labels<const O: usize>(n: usize) -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(0..O as u32, n)
}

/// A labelled batch: inputs in `±range` and labels below `O`, of a length in `len`.
pub fn batch<const I: usize, const O: usize>(
    len: core::ops::RangeInclusive<usize>,
    range: f32,
) -> impl Strategy<Value = (Vec<[f32; I]>, Vec<u32>)> {
    len.prop_flat_map(move |n| (rows::<I>(n, range), labels::<O>(n)))
}

/// A model with every parameter drawn from a seed: weights uniform in twice the Glorot
/// range (so that ReLUs switch on and off), biases uniform in `±0.5` (so that bias
/// gradients are exercised away from zero).
pub fn mlp<const I: usize, const H: usize, const O: usize>() -> impl Strategy<Value = Mlp<I, H, O>>
{
    any::<u64>().prop_map(mlp_from_seed::<I, H, O>)
}

/// The model [`mlp`] draws for `seed`.
pub fn mlp_from_seed<const I: usize, const H: usize, const O: usize>(seed: u64) -> Mlp<I, H, O> {
    let mut rng = SplitMix64::new(seed);
    let mut w1 = [[0.0; I]; H];
    let mut b1 = [0.0; H];
    let mut w2 = [[0.0; H]; O];
    let mut b2 = [0.0; O];
    let l1 = 2.0 * (6.0 / (I + H) as f64).sqrt();
    let l2 = 2.0 * (6.0 / (H + O) as f64).sqrt();
    w1.iter_mut().flatten().for_each(|w| *w = rng.uniform(l1));
    b1.iter_mut().for_each(|b| *b = rng.uniform(0.5));
    w2.iter_mut().flatten().for_each(|w| *w = rng.uniform(l2));
    b2.iter_mut().for_each(|b| *b = rng.uniform(0.5));
    Mlp::from_weights(w1, b1, w2, b2).expect("finite weights")
}

/// A `[[f32; I]; O]` matrix and `[f32; O]` vector from a seed: uniform in `±range`, with
/// about one entry in eight replaced by an edge value. (Seeded rather than an array
/// strategy: proptest's value trees for `[[f32; 33]; 33]` overflow the test thread's stack.)
pub fn matrix_from_seed<const I: usize, const O: usize>(
    seed: u64,
    range: f64,
) -> ([[f32; I]; O], [f32; O]) {
    let mut rng = SplitMix64::new(seed);
    let mut draw = move || {
        if rng.next_u64().is_multiple_of(8) {
            EDGE_VALUES[(rng.next_u64() % 6) as usize]
        } else {
            rng.uniform(range)
        }
    };
    let mut w = [[0.0; I]; O];
    let mut b = [0.0; O];
    w.iter_mut().flatten().for_each(|v| *v = draw());
    b.iter_mut().for_each(|v| *v = draw());
    (w, b)
}

/// Converts a batch of `f32` rows to `f64`, exactly.
pub fn to64<const N: usize>(rows: &[[f32; N]]) -> Vec<[f64; N]> {
    rows.iter().map(|r| r.map(f64::from)).collect()
}
