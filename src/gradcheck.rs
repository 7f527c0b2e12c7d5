//! A gradient checker: analytic gradients against central finite differences of the loss,
//! for a model ([`check_mlp`]) or for any composition of the kernels ([`check_gradients`]).
//!
//! For each parameter `p_i` the loss is evaluated at `p_i + h` and `p_i - h` (both rounded to
//! `f32`, and the difference quotient divided by the distance actually stepped), with
//! `h = step * max(1, |p_i|)`, and compared with the analytic gradient `g_i` by
//!
//! ```text
//! rel_i = |g_i - fd_i| / max(|g_i|, |fd_i|, floor)
//! ```
//!
//! The error of a central difference is about `h^2 |f'''| / 6` (truncation) plus
//! `eps |f| / h` (rounding of the loss). Give the loss in `f64` where you can: then
//! `step = 1e-5` (near the cube root of `f64`'s epsilon, the best step for a central
//! difference) is accurate to about `1e-9` relative, and a step that small rarely carries a
//! ReLU across its kink. A loss computed in `f32` has `eps = 6e-8`: its
//! rounding noise, `6e-8 |f| / h`, is about `3e-5` for a loss near 1 at `step = 1e-3`, so
//! compare with a `floor` of about `1e-2` and expect agreement to about `1e-3` (as in the
//! example below).
//!
//! Near a kink (ReLU at 0) a finite difference is meaningless: a coordinate whose
//! perturbation moves some pre-activation across 0 shows up as an outlier at `worst_index`
//! (an analytic 0 against a clear numeric slope, say). A smaller `step` moves fewer
//! pre-activations across; a dead unit whose pre-activation is exactly 0 (zero bias, zero
//! inputs) is always at its kink.
//!
//! Needs the `std` feature (it is a development tool: it reports through `f64` and is the
//! only place the crate would want `Vec`-sized scratch for a user's parameter vector).
//!
//! # Examples
//! A network with two hidden layers composed by hand from the kernels, 2 -> 4 -> 3 -> 2,
//! trained one SGD step with the fused per-layer update, then its gradients (from
//! [`Dense::backward`](crate::Dense::backward) and the kernels' backward functions) checked against the loss:
//!
//! ```
//! use fusedprop::gradcheck::check_gradients;
//! use fusedprop::{
//!     relu, relu_backward, softmax_cross_entropy_backward, sparse_categorical_cross_entropy,
//!     Accumulate, Dense, DenseGrads, Sgd,
//! };
//!
//! let x = [[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0], [1.0, 1.0]];
//! let y = [0, 1, 1, 0];
//! let mut rng = fusedprop::rng::SplitMix64::new(7);
//! // Glorot weights, and small positive biases so that no ReLU sits exactly at its kink
//! // (with zero biases, a sample whose inputs to a layer are all 0 puts every unit there,
//! // and a finite difference across a kink measures nothing).
//! let mut l1 = Dense::<2, 4>::glorot(&mut rng);
//! let mut l2 = Dense::<4, 3>::glorot(&mut rng);
//! let mut l3 = Dense::<3, 2>::glorot(&mut rng);
//! l1 = Dense::from_weights(*l1.weights(), [0.1; 4])?;
//! l2 = Dense::from_weights(*l2.weights(), [0.1; 3])?;
//!
//! // Forward: keep what the backward pass needs (inputs and post-ReLU outputs).
//! fn forward(
//!     l1: &Dense<2, 4>, l2: &Dense<4, 3>, l3: &Dense<3, 2>, x: &[[f32; 2]; 4],
//! ) -> ([[f32; 4]; 4], [[f32; 3]; 4], [[f32; 2]; 4]) {
//!     let (mut a1, mut a2, mut z) = ([[0.0; 4]; 4], [[0.0; 3]; 4], [[0.0; 2]; 4]);
//!     l1.forward_batch(x, &mut a1).unwrap();
//!     let h1 = a1;
//!     relu(&h1, &mut a1).unwrap();
//!     l2.forward_batch(&a1, &mut a2).unwrap();
//!     let h2 = a2;
//!     relu(&h2, &mut a2).unwrap();
//!     l3.forward_batch(&a2, &mut z).unwrap();
//!     (a1, a2, z)
//! }
//!
//! // One training step, the update fused into each layer's backward pass. Each layer hands
//! // the layer below its input gradient, computed with its weights before the update.
//! let sgd = Sgd::new(0.1)?;
//! let (a1, a2, z) = forward(&l1, &l2, &l3, &x);
//! let mut dz = [[0.0; 2]; 4];
//! let loss_before = softmax_cross_entropy_backward(&z, &y, &mut dz)?;
//! let (mut da2, mut dh2) = ([[0.0; 3]; 4], [[0.0; 3]; 4]);
//! l3.backward_sgd(&a2, &dz, Some(&mut da2), &sgd, &mut DenseGrads::default())?;
//! relu_backward(&a2, &da2, &mut dh2)?;
//! let (mut da1, mut dh1) = ([[0.0; 4]; 4], [[0.0; 4]; 4]);
//! l2.backward_sgd(&a1, &dh2, Some(&mut da1), &sgd, &mut DenseGrads::default())?;
//! relu_backward(&a1, &da1, &mut dh1)?;
//! l1.backward_sgd(&x, &dh1, None, &sgd, &mut DenseGrads::default())?;
//! let (_, _, z) = forward(&l1, &l2, &l3, &x);
//! assert!(sparse_categorical_cross_entropy(&z, &y)? < loss_before);
//!
//! // The analytic gradients at the new point, by the chain rule through the kernels.
//! let (a1, a2, z) = forward(&l1, &l2, &l3, &x);
//! softmax_cross_entropy_backward(&z, &y, &mut dz)?;
//! let (mut g1, mut g2, mut g3) =
//!     (DenseGrads::default(), DenseGrads::default(), DenseGrads::default());
//! l3.backward(&a2, &dz, &mut g3, Accumulate::Overwrite, Some(&mut da2))?;
//! relu_backward(&a2, &da2, &mut dh2)?;
//! l2.backward(&a1, &dh2, &mut g2, Accumulate::Overwrite, Some(&mut da1))?;
//! relu_backward(&a1, &da1, &mut dh1)?;
//! l1.backward(&x, &dh1, &mut g1, Accumulate::Overwrite, None)?;
//!
//! // Flatten parameters and gradients in one order: W1, b1, W2, b2, W3, b3.
//! fn flat(parts: &[&[f32]]) -> Vec<f32> {
//!     parts.iter().flat_map(|p| p.iter().copied()).collect()
//! }
//! let mut params = flat(&[
//!     l1.weights().as_flattened(), l1.bias(),
//!     l2.weights().as_flattened(), l2.bias(),
//!     l3.weights().as_flattened(), l3.bias(),
//! ]);
//! let analytic = flat(&[
//!     g1.w.as_flattened(), &g1.b, g2.w.as_flattened(), &g2.b, g3.w.as_flattened(), &g3.b,
//! ]);
//!
//! // The loss as a function of the flat parameters.
//! fn unflat<const I: usize, const O: usize>(p: &mut &[f32]) -> Dense<I, O> {
//!     let (mut w, mut b) = ([[0.0; I]; O], [0.0; O]);
//!     w.as_flattened_mut().copy_from_slice(&p[..I * O]);
//!     b.copy_from_slice(&p[I * O..I * O + O]);
//!     *p = &p[I * O + O..];
//!     Dense::from_weights(w, b).unwrap()
//! }
//! let loss = |p: &[f32]| {
//!     let mut p = p;
//!     let (l1, l2, l3) = (unflat(&mut p), unflat(&mut p), unflat(&mut p));
//!     let (_, _, z) = forward(&l1, &l2, &l3, &x);
//!     f64::from(sparse_categorical_cross_entropy(&z, &y).unwrap())
//! };
//!
//! // The loss is computed in f32 here: a step of 1e-3, a floor of 1e-2, agreement to 1e-2.
//! let report = check_gradients(&mut params, &analytic, 1e-3, 1e-2, loss)?;
//! assert_eq!(report.checked, 8 + 4 + 12 + 3 + 6 + 2);
//! assert!(report.worst_rel_error < 1e-2, "{report:?}");
//! # Ok::<(), fusedprop::Error>(())
//! ```

use std::vec;

use crate::error::{Error, same_len};
use crate::reference::MlpParams;
use crate::{Gradients, Mlp, Workspace};

/// The outcome of a gradient check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheck {
    /// The largest `|g - fd| / max(|g|, |fd|, floor)` over the checked parameters (0 if
    /// there are none); `+inf` if some parameter could not be checked (its error was NaN or
    /// infinite, for example because `p + h` and `p - h` round to the same `f32`), and then
    /// `worst_index` is the first such parameter.
    pub worst_rel_error: f64,
    /// The parameter where it occurred (`None` if there are no parameters).
    pub worst_index: Option<usize>,
    /// The analytic gradient at `worst_index`.
    pub analytic: f64,
    /// The finite-difference estimate at `worst_index`.
    pub numeric: f64,
    /// How many parameters were checked.
    pub checked: usize,
}

impl GradCheck {
    /// Whether every checked parameter agreed within `max_rel_error`. A check whose worst
    /// error is not finite (a parameter whose perturbation rounded away, see
    /// [`check_gradients`]) never passes, whatever `max_rel_error`.
    #[must_use]
    pub fn passed(&self, max_rel_error: f64) -> bool {
        self.worst_rel_error.is_finite() && self.worst_rel_error <= max_rel_error
    }
}

/// Checks `analytic` (the gradient of `loss` at `params`) against central finite differences
/// of `loss`, one parameter at a time.
///
/// `step` is relative: parameter `p` is moved by `h = step * max(1, |p|)`; `floor` bounds the
/// denominator of the relative error from below, so that gradients much smaller than
/// `floor` are compared absolutely. A parameter whose relative error is NaN or infinite
/// fails the check: the report's `worst_rel_error` is `+inf` and `worst_index` names it.
/// That happens when the step is too small for the parameter's `f32` precision (`p + h`
/// and `p - h` round to the same value, so the difference quotient is `0 / 0`):
///
/// ```
/// use fusedprop::gradcheck::check_gradients;
/// let loss = |q: &[f32]| f64::from(q[0]).powi(2) + f64::from(q[1]).powi(2);
/// // The gradient at (0, 1000) is (0, 2000); the second entry is wrong, but 1000 +- 1e-5
/// // is 1000 in f32, so no finite difference can judge it.
/// let r = check_gradients(&mut [0.0, 1000.0], &[0.0, -12345.0], 1e-8, 1e-6, loss)?;
/// assert!(!r.passed(1e-3));
/// assert_eq!(r.worst_index, Some(1));
/// assert_eq!(r.worst_rel_error, f64::INFINITY);
/// # Ok::<(), fusedprop::Error>(())
/// ```
///
/// `params` is perturbed during the check and restored, bit for bit, before this returns
/// (also on error). See the [module docs](self) for how to choose `step` and for an
/// example.
///
/// # Errors
/// [`Error::LengthMismatch`] if `analytic` and `params` differ in length;
/// [`Error::InvalidArgument`] (`"step"`) if `step` is not finite and positive, (`"floor"`)
/// if `floor` is not finite and non-negative (a `floor` of `+inf` would pass any gradient);
/// [`Error::NonFinite`] (`"gradient"`, index) for a non-finite analytic gradient;
/// [`Error::NonFinite`] (`"loss"`, index of the parameter) if the loss is not finite at a
/// perturbed point.
pub fn check_gradients(
    params: &mut [f32],
    analytic: &[f32],
    step: f32,
    floor: f64,
    mut loss: impl FnMut(&[f32]) -> f64,
) -> Result<GradCheck, Error> {
    same_len("gradients", params.len(), analytic.len())?;
    if !(step.is_finite() && step > 0.0) {
        return Err(Error::InvalidArgument {
            what: "step",
            value: f64::from(step),
            expected: "finite and positive",
        });
    }
    if !(floor.is_finite() && floor >= 0.0) {
        return Err(Error::InvalidArgument {
            what: "floor",
            value: floor,
            expected: "finite and non-negative",
        });
    }
    if let Some(i) = analytic.iter().position(|g| !g.is_finite()) {
        return Err(Error::NonFinite {
            what: "gradient",
            index: Some(i),
        });
    }
    let mut report = GradCheck {
        worst_rel_error: 0.0,
        worst_index: None,
        analytic: 0.0,
        numeric: 0.0,
        checked: 0,
    };
    for i in 0..params.len() {
        let p = params[i];
        let h = f64::from(step) * f64::from(p.abs()).max(1.0);
        // The points actually evaluated are f32; divide by the distance between them.
        let plus = (f64::from(p) + h) as f32;
        let minus = (f64::from(p) - h) as f32;
        params[i] = plus;
        let lp = loss(params);
        params[i] = minus;
        let lm = loss(params);
        params[i] = p;
        if !(lp.is_finite() && lm.is_finite()) {
            return Err(Error::NonFinite {
                what: "loss",
                index: Some(i),
            });
        }
        let numeric = (lp - lm) / (f64::from(plus) - f64::from(minus));
        let g = f64::from(analytic[i]);
        let rel = (g - numeric).abs() / g.abs().max(numeric.abs()).max(floor);
        // NaN (`0 / 0` where the perturbation rounded away, or a zero floor with both
        // gradients 0) or infinity: this parameter could not be checked, which fails the
        // check. `>` ignores NaN, so it is made `+inf`; the first such parameter stays.
        let rel = if rel.is_finite() {
            rel
        } else if g == numeric {
            0.0
        } else {
            f64::INFINITY
        };
        if report.worst_index.is_none() || rel > report.worst_rel_error {
            report.worst_rel_error = rel;
            report.worst_index = Some(i);
            report.analytic = g;
            report.numeric = numeric;
        }
        report.checked += 1;
    }
    Ok(report)
}

/// Checks [`Mlp::gradients`] on a batch against central differences of the model's loss,
/// evaluated in `f64` (by the crate's f64 reference implementation of the same network), so
/// that `step = 1e-5` resolves gradients to about `1e-9` of their size, and the remaining
/// difference is the `f32` rounding of the analytic gradient (about `1e-6` relative). Returns
/// the report; the model is not changed. A test-time helper: it allocates its flat
/// parameter, gradient and workspace buffers on the heap (feature `std`).
///
/// # Errors
/// As [`Mlp::gradients`] for the batch, and as [`check_gradients`].
///
/// # Examples
/// ```
/// use fusedprop::{Mlp, gradcheck::check_mlp};
/// let model = Mlp::<4, 8, 3>::new(11);
/// let x = [[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, -0.5, 0.25]];
/// let report = check_mlp(&model, &x, &[2, 0], 1e-5, 1e-4)?;
/// assert_eq!(report.checked, Mlp::<4, 8, 3>::PARAMS);
/// assert!(report.passed(1e-3), "{report:?}");
/// # Ok::<(), fusedprop::Error>(())
/// ```
pub fn check_mlp<const I: usize, const H: usize, const O: usize>(
    model: &Mlp<I, H, O>,
    x: &[[f32; I]],
    labels: &[u32],
    step: f32,
    floor: f64,
) -> Result<GradCheck, Error> {
    // Zeroed in place on the heap: `Box::new(Workspace::ZERO)` goes through the stack in
    // debug builds and overflows it for 784-256-10.
    let mut ws = Workspace::<I, H, O>::new_boxed();
    let mut grads = Gradients::<I, H, O>::new_boxed();
    model.gradients(x, labels, &mut grads, &mut ws)?;
    let mut analytic = vec![0.0f32; Mlp::<I, H, O>::PARAMS];
    grads.write_flat(&mut analytic)?;
    let mut params = vec![0.0f32; Mlp::<I, H, O>::PARAMS];
    model.write_params(&mut params)?;
    let mut reference = MlpParams::from_mlp_boxed(model);
    check_gradients(&mut params, &analytic, step, floor, |p| {
        for (i, &v) in p.iter().enumerate() {
            reference.set(i, f64::from(v));
        }
        reference.loss(x, labels)
    })
}

/// [`check_gradients`] for a [`Network`](crate::Network) of any depth, activation and head:
/// its analytic gradients ([`Network::gradients`](crate::Network::gradients)) against central
/// differences of its loss computed in `f64` from the layers' and the head's `f64`
/// definitions ([`Activation::eval_f64`](crate::Activation::eval_f64)), in
/// [`Network::write_params`](crate::Network::write_params) order.
///
/// Allocates the workspace, the gradients and the parameter vectors on the heap (it is a
/// development tool).
///
/// # Errors
/// As [`Network::gradients`](crate::Network::gradients) for the batch, and as
/// [`check_gradients`].
///
/// # Examples
/// ```
/// use fusedprop::{chain, gradcheck::check_network, Dense, Network, SoftmaxCrossEntropy, Tanh};
/// let net = Network::<chain![Dense<4, 8, Tanh>, Dense<8, 5, Tanh>, Dense<5, 3>], SoftmaxCrossEntropy>::new(11);
/// let x = [[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, -0.5, 0.25]];
/// let report = check_network(&net, &x, &[2, 0], 1e-5, 1e-4)?;
/// assert_eq!(report.checked, 40 + 45 + 18);
/// assert!(report.passed(1e-3), "{report:?}");
/// # Ok::<(), fusedprop::Error>(())
/// ```
pub fn check_network<L: crate::Layer, H: crate::Head<L::Out>>(
    net: &crate::Network<L, H>,
    x: &[crate::network::InRow<L>],
    y: &[crate::network::Target<L, H>],
    step: f32,
    floor: f64,
) -> Result<GradCheck, Error> {
    use crate::head::sealed::HeadKernel;
    let mut ws = std::boxed::Box::new(crate::NetWorkspace::<L>::ZERO);
    let mut grads = std::boxed::Box::new(crate::NetGradients::<L>::ZERO);
    net.gradients(x, y, &mut grads, &mut ws)?;
    let mut analytic = vec![0.0f32; L::PARAMS];
    grads.write_flat(&mut analytic)?;
    let mut params = vec![0.0f32; L::PARAMS];
    net.write_params(&mut params)?;
    check_gradients(&mut params, &analytic, step, floor, |p| {
        let mut total = 0.0;
        for (row, t) in x.iter().zip(y) {
            let mut a: std::vec::Vec<f64> = row.as_ref().iter().map(|&v| f64::from(v)).collect();
            let mut at = 0;
            net.visit_layers(|info, act| {
                let (w, rest) = p[at..].split_at(info.inputs * info.outputs);
                let b = &rest[..info.outputs];
                at += info.params;
                a = (0..info.outputs)
                    .map(|j| {
                        let row = &w[j * info.inputs..(j + 1) * info.inputs];
                        let z = row
                            .iter()
                            .zip(&a)
                            .fold(f64::from(b[j]), |s, (&w, &v)| s + f64::from(w) * v);
                        act.eval(z)
                    })
                    .collect();
            });
            total += <H as HeadKernel<L::Out>>::loss_f64(&a, t);
        }
        total / x.len() as f64
    })
}
