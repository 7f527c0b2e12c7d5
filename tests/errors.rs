//! Every error path of the public API: a clear `Error`, never a panic, and a refused
//! training step leaves every weight bit for bit as it was.

use fusedprop::{
    Accumulate, Dense, DenseGrads, Error, Gradients, Mlp, Sgd, Workspace, log_softmax, relu,
    relu_backward, softmax, softmax_cross_entropy_backward, sparse_categorical_cross_entropy,
};

type Model = Mlp<4, 8, 3>;

fn bits(m: &Model) -> Vec<u32> {
    let mut p = vec![0.0; Model::PARAMS];
    m.write_params(&mut p).unwrap();
    p.iter().map(|v| v.to_bits()).collect()
}

fn batch(n: usize) -> (Vec<[f32; 4]>, Vec<u32>) {
    let x = (0..n)
        .map(|i| {
            let f = i as f32;
            [f.sin(), f.cos(), 0.1 * f, 1.0]
        })
        .collect();
    let y = (0..n).map(|i| (i % 3) as u32).collect();
    (x, y)
}

/// Runs `train_step` and asserts it fails with `expected` and leaves the model unchanged.
fn refused(model: &mut Model, x: &[[f32; 4]], y: &[u32], lr: f32, expected: Error) {
    let before = bits(model);
    let mut ws = Workspace::new();
    let sgd = Sgd::new(lr).unwrap();
    let err = model.train_step(x, y, &sgd, &mut ws).unwrap_err();
    assert_eq!(err, expected);
    assert_eq!(
        bits(model),
        before,
        "a refused step changed the weights ({err})"
    );
    assert!(!err.to_string().is_empty());
}

#[test]
fn empty_batch() {
    let mut m = Model::new(1);
    refused(&mut m, &[], &[], 0.1, Error::EmptyBatch);
    assert_eq!(m.loss(&[], &[]), Err(Error::EmptyBatch));
    assert_eq!(m.accuracy(&[], &[]), Err(Error::EmptyBatch));
    let mut g = Gradients::ZERO;
    let mut ws = Workspace::new();
    assert_eq!(
        m.gradients(&[], &[], &mut g, &mut ws),
        Err(Error::EmptyBatch)
    );
    assert_eq!(
        sparse_categorical_cross_entropy::<3>(&[], &[]),
        Err(Error::EmptyBatch)
    );
}

#[test]
fn inputs_and_labels_of_different_lengths() {
    let mut m = Model::new(1);
    let (x, y) = batch(10);
    let e = Error::LengthMismatch {
        what: "labels",
        expected: 10,
        found: 9,
    };
    refused(&mut m, &x, &y[..9], 0.1, e);
    assert_eq!(m.loss(&x, &y[..9]), Err(e));
    assert!(e.to_string().contains("9 labels for 10 samples"), "{e}");
    let mut out = [0u32; 3];
    assert!(matches!(
        m.predict(&x, &mut out),
        Err(Error::LengthMismatch { .. })
    ));
}

#[test]
fn label_out_of_range_names_the_sample() {
    let mut m = Model::new(1);
    let (x, mut y) = batch(40);
    y[37] = 3;
    let e = Error::LabelOutOfRange {
        index: 37,
        label: 3,
        classes: 3,
    };
    refused(&mut m, &x, &y, 0.1, e);
    assert!(e.to_string().contains("sample 37"), "{e}");
    y[37] = u32::MAX;
    assert!(matches!(
        m.loss(&x, &y),
        Err(Error::LabelOutOfRange { index: 37, .. })
    ));
}

#[test]
fn invalid_learning_rates() {
    for lr in [0.0, -0.1, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0] {
        let e = Sgd::new(lr).unwrap_err();
        assert!(matches!(e, Error::InvalidLearningRate(_)), "{lr}");
        assert!(e.to_string().contains("learning rate"));
    }
}

#[test]
fn non_finite_input_is_refused_in_every_tile() {
    for (n, bad) in [(10, 3), (120, 119), (300, 0), (300, 200), (300, 299)] {
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut m = Model::new(2);
            let (mut x, y) = batch(n);
            x[bad][1] = v;
            let e = Error::NonFinite {
                what: "input",
                index: Some(bad),
            };
            refused(&mut m, &x, &y, 0.1, e);
            assert_eq!(m.loss(&x, &y), Err(e));
            let mut p = vec![[0.0; 3]; n];
            assert_eq!(m.predict_proba(&x, &mut p), Err(e));
        }
    }
}

#[test]
fn overflow_is_refused() {
    // 1e38 inputs and a class the model gets wrong: the forward pass is finite, but the
    // hidden-layer gradient bound (N * max|dL/dz| * max|x|) is past what an update may safely
    // reach. (With the right class the softmax is saturated, every dL/dz is exactly 0, and the
    // step is rightly taken: it changes nothing.)
    let mut m = Model::new(1);
    let x = vec![[1e38f32, -1e38, 1e38, 1e38]; 20];
    let y = vec![0u32; 20];
    refused(&mut m, &x, &y, 0.1, Error::UpdateOverflow);
    let y = vec![1u32; 20];
    // All-one hidden weights and 3e38 inputs: the hidden layer overflows to infinity and the
    // first sample's loss is NaN.
    let mut m = Model::from_weights([[1.0; 4]; 8], [0.0; 8], [[0.5; 8]; 3], [0.0; 3]).unwrap();
    let x = vec![[3e38f32; 4]; 20];
    let e = Error::NonFinite {
        what: "loss",
        index: Some(0),
    };
    refused(&mut m, &x, &y, 0.1, e);
    assert_eq!(m.loss(&x, &y), Err(e));
}

#[test]
fn huge_learning_rate_is_refused_before_overflow() {
    let mut m = Model::new(4);
    let (x, y) = batch(50);
    let before = bits(&m);
    let sgd = Sgd::new(f32::MAX).unwrap();
    let mut ws = Workspace::new();
    let err = m.train_step(&x, &y, &sgd, &mut ws).unwrap_err();
    assert_eq!(err, Error::UpdateOverflow);
    assert_eq!(bits(&m), before);
}

#[test]
fn weights_must_be_finite() {
    let mut w1 = [[0.1f32; 4]; 8];
    w1[2][3] = f32::NAN;
    let e = Model::from_weights(w1, [0.0; 8], [[0.1; 8]; 3], [0.0; 3]).unwrap_err();
    assert_eq!(
        e,
        Error::NonFinite {
            what: "weight",
            index: Some(2 * 4 + 3)
        }
    );
    let e = Model::from_weights(
        [[0.1; 4]; 8],
        [0.0; 8],
        [[0.1; 8]; 3],
        [0.0, f32::INFINITY, 0.0],
    )
    .unwrap_err();
    assert_eq!(
        e,
        Error::NonFinite {
            what: "weight",
            index: Some(40 + 24 + 1)
        }
    );
    let mut m = Model::new(5);
    let before = bits(&m);
    let mut p = vec![0.5; Model::PARAMS];
    p[7] = f32::NAN;
    assert!(m.read_params(&p).is_err());
    assert!(m.read_params(&p[1..]).is_err());
    assert_eq!(bits(&m), before);
}

#[test]
fn kernels_reject_mismatched_lengths() {
    let x = [[1.0f32, 2.0]; 5];
    let mut y4 = [[0.0f32; 2]; 4];
    let mismatch = |r: Result<(), Error>| assert!(matches!(r, Err(Error::LengthMismatch { .. })));
    mismatch(relu(&x, &mut y4));
    mismatch(softmax(&x, &mut y4));
    mismatch(log_softmax(&x, &mut y4));
    mismatch(relu_backward(&x, &x[..4], &mut y4));
    let layer = Dense::<2, 2>::ZERO;
    mismatch(layer.forward_batch(&x, &mut y4));
    let mut g = DenseGrads::ZERO;
    mismatch(layer.backward(&x, &y4, &mut g, Accumulate::Overwrite, None));
    assert_eq!(
        layer.backward(&[], &[], &mut g, Accumulate::Add, None),
        Err(Error::EmptyBatch)
    );
    let mut d = [[0.0f32; 2]; 4];
    assert!(softmax_cross_entropy_backward(&x, &[0; 5], &mut d).is_err());
    assert!(matches!(
        sparse_categorical_cross_entropy(&x, &[0, 1, 2, 0, 1]),
        Err(Error::LabelOutOfRange {
            index: 2,
            label: 2,
            classes: 2
        })
    ));
    assert!(matches!(
        sparse_categorical_cross_entropy(&[[f32::NAN, 0.0]], &[0]),
        Err(Error::NonFinite {
            what: "logit",
            index: Some(0)
        })
    ));
}

#[test]
fn dense_sgd_refuses_without_touching_the_layer() {
    let mut layer = Dense::<2, 3>::from_weights([[0.5, -0.5]; 3], [0.1; 3]).unwrap();
    let before = layer.clone();
    let mut scratch = DenseGrads::ZERO;
    let sgd = Sgd::new(0.1).unwrap();
    let x = [[1.0, f32::NAN]; 4];
    let dy = [[0.1; 3]; 4];
    assert!(
        layer
            .backward_sgd(&x, &dy, None, &sgd, &mut scratch)
            .is_err()
    );
    assert_eq!(layer, before);
    let x = [[1.0, 2.0]; 4];
    let dy = [[f32::MAX; 3]; 4];
    assert!(
        layer
            .backward_sgd(&x, &dy, None, &sgd, &mut scratch)
            .is_err()
    );
    assert_eq!(layer, before);
}

/// Issue 9, item 7: messages say what happened. A wrong parameter count is not "for 67
/// samples"; errors of calls that take no step do not say "the step was refused"; a step
/// refused by its gradient bound does not say "non-finite".
#[test]
fn messages_say_what_happened() {
    let mut m = Model::new(1);
    assert_eq!(Model::PARAMS, 67);
    let e = m.read_params(&[0.0; 5]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("5 parameters") && msg.contains("67 parameters"),
        "{msg}"
    );
    assert!(!msg.contains("samples"), "{msg}");
    let e = m.read_params(&[f32::NAN; 67]).unwrap_err();
    assert!(!e.to_string().contains("step"), "{e}");
    let e = Model::from_weights([[f32::INFINITY; 4]; 8], [0.0; 8], [[0.0; 8]; 3], [0.0; 3])
        .unwrap_err();
    assert!(!e.to_string().contains("step"), "{e}");
    let e = m.predict(&[[f32::NAN; 4]], &mut [0]).unwrap_err();
    assert!(!e.to_string().contains("step"), "{e}");
    let e = m.predict_one(&[f32::NAN; 4]).unwrap_err();
    assert!(!e.to_string().contains("step"), "{e}");
    let mut proba = [[0.0; 3]];
    let e = m.predict_proba(&[[f32::NAN; 4]], &mut proba).unwrap_err();
    assert!(!e.to_string().contains("step"), "{e}");

    // Inputs of 1e38 and a wrong class: everything is finite, but the bound on the update is
    // not.
    let x = [[1e38f32, -1e38, 1e38, 1e38]];
    refused(&mut m, &x, &[0], 0.01, Error::UpdateOverflow);
    let msg = Error::UpdateOverflow.to_string();
    assert!(msg.contains("gradient bound would overflow"), "{msg}");
    assert!(!msg.contains("non-finite"), "{msg}");
}

/// Issue 9, item 7: the loss module said the loss is finite for any finite logits, but
/// `[[3e38, -3e38]]` with label 1 (exact loss 6e38) gave `Ok(inf)`. It is now an error naming
/// the sample, as `Mlp::loss` gives, and the fused gradient writes nothing on it.
#[test]
fn a_loss_that_overflows_f32_is_an_error() {
    let e = Error::NonFinite {
        what: "loss",
        index: Some(1),
    };
    let z = [[0.0, 0.0], [3e38, -3e38], [1.0, 2.0]];
    assert_eq!(sparse_categorical_cross_entropy(&z, &[0, 1, 1]), Err(e));
    let mut d = [[7.0f32; 2]; 3];
    assert_eq!(
        softmax_cross_entropy_backward(&z, &[0, 1, 1], &mut d),
        Err(e)
    );
    assert_eq!(d, [[7.0; 2]; 3], "dlogits written on error");
    // Each sample finite, the sum not.
    let z = vec![[2e38f32, 0.0]; 40];
    let e = Error::NonFinite {
        what: "loss",
        index: None,
    };
    assert_eq!(sparse_categorical_cross_entropy(&z, &[1; 40]), Err(e));
    let mut d = vec![[7.0f32; 2]; 40];
    assert_eq!(softmax_cross_entropy_backward(&z, &[1; 40], &mut d), Err(e));
    assert!(
        d.iter().flatten().all(|&v| v == 7.0),
        "dlogits written on error"
    );
    // The same label with the logits a little closer: finite, and the same from both.
    let z = [[1e30f32, -1e30]];
    let l = sparse_categorical_cross_entropy(&z, &[1]).unwrap();
    assert_eq!(l, 2e30);
    let mut d = [[0.0f32; 2]];
    assert_eq!(softmax_cross_entropy_backward(&z, &[1], &mut d), Ok(l));
}
