//! The NaN and infinity policy of the crate docs ("Numerics"), case by case:
//! - ReLU keeps NaN; `relu(+inf) = +inf`, `relu(-inf) = 0`;
//! - softmax (and log-softmax) of a row containing NaN is NaN in every entry; a row with
//!   `+inf` is NaN; `-inf` entries get probability 0 while one entry is finite;
//! - the loss kernels refuse non-finite logits, and the model functions refuse non-finite
//!   inputs, with `Error::NonFinite` naming the sample;
//! - a training step whose loss is not finite, or whose gradient could overflow, is refused
//!   and leaves every weight bit for bit unchanged (single tile and multi-tile batches, the
//!   model and the per-layer fused step).

use fusedprop::{Accumulate, Dense, DenseGrads, Error, Gradients, Mlp, Sgd, Workspace};

const BAD: [f32; 3] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];

fn params<const I: usize, const H: usize, const O: usize>(m: &Mlp<I, H, O>) -> Vec<u32> {
    let mut p = vec![0.0; Mlp::<I, H, O>::PARAMS];
    m.write_params(&mut p).unwrap();
    p.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn relu_keeps_nan_and_maps_infinities() {
    // Sixteen-plus rows so that the NaN sits in every lane position of a block and in a tail.
    for n in [1, 5, 16, 17, 33] {
        let mut x = vec![[1.0f32, -1.0, 0.0, -0.0]; n];
        let at = n - 1;
        x[at] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN];
        let mut y = vec![[7.0f32; 4]; n];
        fusedprop::relu(&x, &mut y).unwrap();
        assert!(y[at][0].is_nan(), "relu(NaN) must be NaN");
        assert_eq!(y[at][1], f32::INFINITY);
        assert_eq!(y[at][2].to_bits(), 0.0f32.to_bits());
        assert!(y[at][3].is_nan(), "relu(-NaN) must be NaN");
        for row in &y[..at] {
            assert_eq!(
                row.map(f32::to_bits),
                [1.0f32, 0.0, 0.0, 0.0].map(f32::to_bits)
            );
        }
    }
}

#[test]
fn relu_backward_of_nan_output_is_zero() {
    // The mask is `y > 0`, false for NaN: the backward pass does not make new NaNs, the
    // forward already carried the NaN to the loss, which the model refuses.
    let mut dx = [[9.0f32; 3]];
    fusedprop::relu_backward(
        &[[f32::NAN, f32::INFINITY, 0.0]],
        &[[1.0, 2.0, 3.0]],
        &mut dx,
    )
    .unwrap();
    assert_eq!(dx, [[0.0, 2.0, 0.0]]);
}

#[test]
fn softmax_of_a_row_with_nan_is_nan_everywhere() {
    for pos in 0..5 {
        let mut z = [[1.0f32, -2.0, 3.0, 0.5, 1e30]; 18];
        z[17][pos] = f32::NAN;
        z[3][pos] = f32::NAN;
        let mut p = [[0.0f32; 5]; 18];
        fusedprop::softmax(&z, &mut p).unwrap();
        let mut l = [[0.0f32; 5]; 18];
        fusedprop::log_softmax(&z, &mut l).unwrap();
        for s in 0..18 {
            let bad = s == 3 || s == 17;
            assert_eq!(
                p[s].iter().all(|v| v.is_nan()),
                bad,
                "softmax row {s}, NaN at {pos}"
            );
            assert_eq!(l[s].iter().all(|v| v.is_nan()), bad, "log_softmax row {s}");
            assert_eq!(p[s].iter().all(|v| v.is_finite()), !bad, "row {s}");
        }
    }
}

#[test]
fn softmax_infinities() {
    let z = [
        [f32::INFINITY, 0.0, 1.0],
        [f32::NEG_INFINITY, 0.0, 0.0],
        [f32::NEG_INFINITY, f32::NEG_INFINITY, 5.0],
    ];
    let mut p = [[0.0f32; 3]; 3];
    fusedprop::softmax(&z, &mut p).unwrap();
    assert!(
        p[0].iter().all(|v| v.is_nan()),
        "+inf gives NaN (inf - inf)"
    );
    assert_eq!(p[1], [0.0, 0.5, 0.5]);
    assert_eq!(p[2], [0.0, 0.0, 1.0]);
    let mut l = [[0.0f32; 3]; 3];
    fusedprop::log_softmax(&z, &mut l).unwrap();
    assert_eq!(l[2], [f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0]);
}

#[test]
fn loss_kernels_refuse_non_finite_logits() {
    for bad in BAD {
        let mut z = [[0.5f32, 1.0]; 20];
        z[18][1] = bad;
        let y = [0u32; 20];
        let e = fusedprop::sparse_categorical_cross_entropy(&z, &y).unwrap_err();
        assert_eq!(
            e,
            Error::NonFinite {
                what: "logit",
                index: Some(18)
            }
        );
        let mut d = [[7.0f32; 2]; 20];
        let e2 = fusedprop::softmax_cross_entropy_backward(&z, &y, &mut d).unwrap_err();
        assert_eq!(e2, e);
        assert_eq!(d, [[7.0; 2]; 20], "dlogits is not written on error");
    }
}

/// Every model function that takes data refuses a non-finite input and names the sample,
/// in the first block, a later block, and a later tile.
#[test]
fn model_functions_refuse_non_finite_inputs() {
    let model = Mlp::<3, 5, 2>::new(3);
    for bad in BAD {
        for (n, at) in [(1, 0), (20, 17), (300, 140), (300, 299)] {
            let mut x = vec![[0.25f32, -0.5, 1.0]; n];
            x[at][at % 3] = bad;
            let y = vec![1u32; n];
            let want = Error::NonFinite {
                what: "input",
                index: Some(at),
            };
            let mut proba = vec![[0.0; 2]; n];
            assert_eq!(model.predict_proba(&x, &mut proba), Err(want));
            let mut classes = vec![0; n];
            assert_eq!(model.predict(&x, &mut classes), Err(want));
            assert_eq!(model.predict_one(&x[at]).unwrap_err().to_string(), {
                let e = Error::NonFinite {
                    what: "input",
                    index: Some(0),
                };
                e.to_string()
            });
            assert_eq!(model.loss(&x, &y), Err(want));
            assert_eq!(model.accuracy(&x, &y), Err(want));
            let mut ws = Workspace::new();
            let mut g = Gradients::ZERO;
            assert_eq!(model.gradients(&x, &y, &mut g, &mut ws), Err(want));
            let mut m = model.clone();
            let sgd = Sgd::new(0.1).unwrap();
            assert_eq!(m.train_step(&x, &y, &sgd, &mut ws), Err(want));
            assert_eq!(params(&m), params(&model), "refused step changed a weight");
        }
    }
}

/// Finite inputs whose loss is not finite (the hidden layer overflows to infinity): the
/// step is refused, in the last tile or an earlier one, and no weight changes.
#[test]
fn train_step_with_non_finite_loss_is_refused() {
    let w1 = [[1e30f32; 2]; 3];
    let w2 = [[1.0f32, -1.0, 1.0], [-1.0, 1.0, -1.0]];
    let model = Mlp::from_weights(w1, [0.0; 3], w2, [0.0; 2]).unwrap();
    for (n, at) in [(1, 0), (40, 33), (300, 5), (300, 290)] {
        let mut x = vec![[1e-30f32, 0.0]; n];
        x[at] = [1e10, 1e10];
        let y = vec![0u32; n];
        let mut m = model.clone();
        let mut ws = Workspace::new();
        let e = m
            .train_step(&x, &y, &Sgd::new(0.1).unwrap(), &mut ws)
            .unwrap_err();
        assert_eq!(
            e,
            Error::NonFinite {
                what: "loss",
                index: Some(at)
            }
        );
        assert_eq!(
            params(&m),
            params(&model),
            "refused step changed a weight (n = {n})"
        );
        let mut g = Gradients::ZERO;
        assert_eq!(model.gradients(&x, &y, &mut g, &mut ws), Err(e));
        assert_eq!(model.loss(&x, &y), Err(e));
    }
}

/// Finite loss but a gradient that could overflow `f32` (huge output weights and a huge
/// learning rate): refused, weights unchanged.
#[test]
fn train_step_with_overflowing_gradient_is_refused() {
    let w2 = [[3e37f32, -3e37, 3e37], [-3e37, 3e37, -3e37]];
    let model = Mlp::from_weights([[1e-3f32; 2]; 3], [0.0; 3], w2, [0.0; 2]).unwrap();
    for n in [3, 200] {
        let x = vec![[1e3f32, -1e3]; n];
        let y: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
        assert!(
            model.loss(&x, &y).unwrap().is_finite(),
            "the loss itself is finite"
        );
        let mut m = model.clone();
        let mut ws = Workspace::new();
        let e = m
            .train_step(&x, &y, &Sgd::new(1e3).unwrap(), &mut ws)
            .unwrap_err();
        assert_eq!(e, Error::UpdateOverflow);
        assert_eq!(params(&m), params(&model));
    }
}

/// A step that is allowed stays finite: the refusal bound is not just "refuse everything".
#[test]
fn train_step_near_the_bound_is_accepted_and_finite() {
    let model = Mlp::from_weights([[1e3f32; 2]; 3], [0.0; 3], [[1e3; 3]; 2], [0.0; 2]).unwrap();
    let x = [[1e3f32, 1e3]];
    let mut m = model.clone();
    let mut ws = Workspace::new();
    m.train_step(&x, &[0], &Sgd::new(1.0).unwrap(), &mut ws)
        .unwrap();
    assert_ne!(params(&m), params(&model));
    let mut p = vec![0.0; Mlp::<2, 3, 2>::PARAMS];
    m.write_params(&mut p).unwrap();
    assert!(p.iter().all(|v| v.is_finite()));
}

#[test]
fn dense_backward_sgd_refuses_and_leaves_the_layer() {
    let layer = Dense::<2, 2>::from_weights([[1.0, 2.0], [3.0, 4.0]], [0.5, -0.5]).unwrap();
    let sgd = Sgd::new(0.1).unwrap();
    for bad in BAD {
        for n in [1, 17] {
            let x = vec![[1.0f32, 2.0]; n];
            let dy = vec![[0.1f32, 0.2]; n];
            let (mut bx, mut bdy) = (x.clone(), dy.clone());
            bx[n - 1][1] = bad;
            bdy[n - 1][0] = bad;
            let mut l = layer.clone();
            let mut dx = vec![[7.0f32; 2]; n];
            let e = l
                .backward_sgd(&bx, &dy, Some(&mut dx), &sgd, &mut DenseGrads::default())
                .unwrap_err();
            assert_eq!(
                e,
                Error::NonFinite {
                    what: "input",
                    index: Some(n - 1)
                }
            );
            let e = l
                .backward_sgd(&x, &bdy, Some(&mut dx), &sgd, &mut DenseGrads::default())
                .unwrap_err();
            assert_eq!(
                e,
                Error::NonFinite {
                    what: "output gradient",
                    index: Some(n - 1)
                }
            );
            assert_eq!(l, layer);
            assert_eq!(dx, vec![[7.0; 2]; n], "dx is not written on error");
        }
    }
    // A finite gradient too large to apply.
    let mut l = layer.clone();
    let e = l
        .backward_sgd(
            &[[1e30f32, 1e30]],
            &[[1e30f32, 1e30]],
            None,
            &sgd,
            &mut DenseGrads::default(),
        )
        .unwrap_err();
    assert_eq!(e, Error::UpdateOverflow);
    assert_eq!(l, layer);
}

#[test]
fn dense_backward_passes_nan_through() {
    // The plain backward is a kernel, not a training step: it computes, and NaN shows.
    let layer = Dense::<2, 1>::from_weights([[1.0, 2.0]], [0.0]).unwrap();
    let mut g = DenseGrads::ZERO;
    let mut dx = [[0.0f32; 2]];
    layer
        .backward(
            &[[f32::NAN, 1.0]],
            &[[1.0]],
            &mut g,
            Accumulate::Overwrite,
            Some(&mut dx),
        )
        .unwrap();
    assert!(g.w[0][0].is_nan());
    assert_eq!(g.w[0][1], 1.0);
    assert_eq!(dx, [[1.0, 2.0]]);
}

#[test]
fn non_finite_parameters_are_refused() {
    for bad in BAD {
        let e = Dense::<2, 2>::from_weights([[0.0, 0.0], [0.0, bad]], [0.0; 2]).unwrap_err();
        assert_eq!(
            e,
            Error::NonFinite {
                what: "weight",
                index: Some(3)
            }
        );
        let e = Mlp::<2, 2, 2>::from_weights([[0.0; 2]; 2], [0.0; 2], [[0.0; 2]; 2], [0.0, bad])
            .unwrap_err();
        assert_eq!(
            e,
            Error::NonFinite {
                what: "weight",
                index: Some(11)
            }
        );
        let mut m = Mlp::<2, 2, 2>::new(1);
        let before = params(&m);
        let mut p = vec![0.5; 12];
        p[7] = bad;
        assert_eq!(
            m.read_params(&p),
            Err(Error::NonFinite {
                what: "weight",
                index: Some(7)
            })
        );
        assert_eq!(params(&m), before);
        assert!(Sgd::new(bad).is_err());
    }
    assert!(Sgd::new(0.0).is_err() && Sgd::new(-0.1).is_err() && Sgd::new(-0.0).is_err());
}

/// The refusal bound of the fused steps, at its documented margin: an update is applied only
/// if `|w| + lr * (bound on |g|)` stays below `f32::MAX / 16`. Just inside is accepted and
/// stays finite; just outside is refused although this particular update would have been
/// finite (the bound is deliberately conservative, and the margin is part of the contract).
#[test]
fn dense_refusal_margin() {
    let sgd = Sgd::new(1e-3).unwrap();
    let layer = Dense::<2, 1>::from_weights([[1.0, 1.0]], [0.0]).unwrap();
    let refused = Err(Error::UpdateOverflow);
    // |dW| <= sum_s max_j |dy_sj| * max(1, max |x|) = 1e19 * 1e19 = 1e38 > f32::MAX / 16.
    let mut l = layer.clone();
    let r = l.backward_sgd(
        &[[1e19, 0.0]],
        &[[1e19]],
        None,
        &sgd,
        &mut DenseGrads::default(),
    );
    assert_eq!(r, refused);
    assert_eq!(l, layer);
    // 1e18 * 1e18 = 1e36 < f32::MAX / 16: accepted, finite.
    let mut l = layer.clone();
    l.backward_sgd(
        &[[1e18, 0.0]],
        &[[1e18]],
        None,
        &sgd,
        &mut DenseGrads::default(),
    )
    .unwrap();
    assert_eq!(l.weights()[0][0], 1.0 - 1e-3 * 1e36);
    assert_eq!(l.weights()[0][1], 1.0);
    assert_eq!(l.bias()[0], -1e-3 * 1e18);
    // The bound sums over samples: 20 samples of 2e17 * 1e19 sum to 4e37 > f32::MAX / 16,
    // though each sample alone (2e36) is far inside.
    let mut l = layer.clone();
    let x = vec![[1e19f32, 0.0]; 20];
    let dy = vec![[2e17f32]; 20];
    assert_eq!(
        l.backward_sgd(&x, &dy, None, &sgd, &mut DenseGrads::default()),
        refused
    );
    // Weights already beyond the margin: any step is refused, even a tiny one.
    let big = Dense::<2, 1>::from_weights([[3e37, 0.0]], [0.0]).unwrap();
    let mut l = big.clone();
    let r = l.backward_sgd(
        &[[1.0, 1.0]],
        &[[1e-3]],
        None,
        &sgd,
        &mut DenseGrads::default(),
    );
    assert_eq!(r, refused);
    assert_eq!(l, big);
    // Inputs below 1 do not shrink the bound below sum |dy| (the bias gradient).
    let mut l = layer.clone();
    let r = l.backward_sgd(
        &[[1e-30, 0.0]],
        &[[3e37]],
        None,
        &Sgd::new(1.0).unwrap(),
        &mut DenseGrads::default(),
    );
    assert_eq!(r, refused);
}

#[test]
fn mlp_refusal_margin() {
    let sgd = Sgd::new(1e-3).unwrap();
    let refused = Err(Error::UpdateOverflow);
    // Output layer: |dW2| <= max a. a = 1e19 * 1e19 = 1e38 is refused, 1e36 accepted.
    for (x, ok) in [(1e19f32, false), (1e18, true)] {
        let model =
            Mlp::<1, 1, 2>::from_weights([[x]], [0.0], [[1e-30], [-1e-30]], [0.0; 2]).unwrap();
        let mut m = model.clone();
        let r = m.train_step(&[[x]], &[1], &sgd, &mut Workspace::new());
        if ok {
            assert!(r.unwrap().is_finite());
            assert_ne!(params(&m), params(&model));
            let mut p = vec![0.0; 6];
            m.write_params(&mut p).unwrap();
            assert!(p.iter().all(|v| v.is_finite()));
        } else {
            assert_eq!(r.map(|_| ()), refused.map(|_: ()| ()));
            assert_eq!(params(&m), params(&model));
        }
    }
    // Hidden layer: |dW1| <= O max(1, max|W2|) max(1, max|x|) = 2 * 1.5e18 * 1e19 = 3e37,
    // refused; with max|W2| = 5e17 it is 1e37, accepted.
    for (w2, ok) in [(1.5e18f32, false), (5e17, true)] {
        let model =
            Mlp::<1, 1, 2>::from_weights([[1e-30]], [0.0], [[w2], [-w2]], [0.0; 2]).unwrap();
        let mut m = model.clone();
        let r = m.train_step(&[[1e19]], &[1], &sgd, &mut Workspace::new());
        assert_eq!(r.is_ok(), ok, "max|W2| = {w2}: {r:?}");
        assert_eq!(params(&m) == params(&model), !ok);
    }
    // Weights beyond the margin refuse even a small step (hidden, then output layer).
    for (w1, w2) in [(3e37f32, 1.0f32), (1.0, 3e37)] {
        let model = Mlp::<1, 1, 2>::from_weights([[w1]], [0.0], [[w2], [0.0]], [0.0; 2]).unwrap();
        let mut m = model.clone();
        let r = m.train_step(&[[-1.0]], &[0], &sgd, &mut Workspace::new());
        assert_eq!(r.map(|_| ()), refused.map(|_: ()| ()), "w1 {w1}, w2 {w2}");
        assert_eq!(params(&m), params(&model));
    }
}
