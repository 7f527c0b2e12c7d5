//! The API around the numerics: parameter counts and orders, layouts (crate, Keras,
//! flat), Glorot initialization, formatting, and the argument errors of every entry point
//! (what they say, and that an error writes nothing). Written to kill the mutants that the
//! numeric suites cannot see (see TESTING.md).

use fusedprop::rng::SplitMix64;
use fusedprop::{Accumulate, Dense, DenseGrads, Error, Gradients, Mlp, Sgd, Workspace};

#[test]
fn parameter_counts() {
    assert_eq!(Dense::<3, 4>::PARAMS, 16);
    assert_eq!(Dense::<1, 1>::PARAMS, 2);
    assert_eq!(Dense::<33, 17>::PARAMS, 33 * 17 + 17);
    assert_eq!(Mlp::<4, 32, 3>::PARAMS, 259);
    assert_eq!(Mlp::<2, 3, 5>::PARAMS, 6 + 3 + 15 + 5);
}

#[test]
fn glorot_initialization() {
    let mut rng = SplitMix64::new(42);
    let l = Dense::<30, 20>::glorot(&mut rng);
    let limit = (6.0f64 / 50.0).sqrt();
    let w: Vec<f64> = l
        .weights()
        .iter()
        .flatten()
        .map(|&v| f64::from(v))
        .collect();
    assert!(
        w.iter().all(|v| v.abs() <= limit),
        "within the Glorot limit"
    );
    let max = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        max > 0.95 * limit,
        "fills the range: max {max}, limit {limit}"
    );
    let mean = w.iter().sum::<f64>() / w.len() as f64;
    assert!(mean.abs() < 0.05 * limit, "centred: mean {mean}");
    assert!(w.iter().any(|&v| v < 0.0) && w.iter().any(|&v| v > 0.0));
    assert_eq!(l.bias(), &[0.0; 20]);

    // In place equals by value, from the same stream; init_glorot zeroes the biases.
    let mut in_place = Dense::<30, 20>::from_weights([[1.0; 30]; 20], [3.0; 20]).unwrap();
    in_place.init_glorot(&mut SplitMix64::new(42));
    assert_eq!(in_place, l);

    // The model draws the hidden layer, then the output layer, from one stream.
    let mut rng = SplitMix64::new(7);
    let h = Dense::<4, 32>::glorot(&mut rng);
    let o = Dense::<32, 3>::glorot(&mut rng);
    let m = Mlp::<4, 32, 3>::new(7);
    assert_eq!(m, Mlp::from_layers(h.clone(), o.clone()));
    assert_eq!(m.hidden(), &h.clone().with_activation(fusedprop::Relu));
    assert_eq!(m.output(), &o);
    let mut m2 = Mlp::<4, 32, 3>::ZERO;
    m2.init_glorot(7);
    assert_eq!(m2, m);
    assert_ne!(Mlp::<4, 32, 3>::new(8), m);
    // A known value, so that the stream itself cannot change silently.
    assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
}

#[test]
fn layouts_keras_and_flat() {
    let w = [[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]; // [out][in]
    let b = [0.5f32, -0.5];
    let l = Dense::<3, 2>::from_weights(w, b).unwrap();
    let k = l.keras_kernel();
    assert_eq!(k, [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]); // [in][out]
    assert_eq!(Dense::<3, 2>::from_keras(&k, b).unwrap(), l);
    // Keras [k = 1][j = 1] is w[1][1]: index 4 in the crate's row-major order.
    let e = Dense::<3, 2>::from_keras(&[[0.0, 0.0], [0.0, f32::NAN], [0.0, 0.0]], b);
    assert_eq!(
        e,
        Err(Error::NonFinite {
            what: "weight",
            index: Some(4)
        })
    );

    let (w1, b1) = ([[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]], [7.0f32, 8.0, 9.0]);
    let (w2, b2) = ([[10.0f32, 11.0, 12.0], [13.0, 14.0, 15.0]], [16.0f32, 17.0]);
    let m = Mlp::<2, 3, 2>::from_weights(w1, b1, w2, b2).unwrap();
    let mut p = [0.0f32; 17];
    m.write_params(&mut p).unwrap();
    let want: Vec<f32> = (1..=17).map(|v| v as f32).collect();
    assert_eq!(p.to_vec(), want, "W1 row-major, b1, W2 row-major, b2");
    let keras = Mlp::<2, 3, 2>::from_keras(
        &Dense::<2, 3>::from_weights(w1, b1).unwrap().keras_kernel(),
        b1,
        &Dense::<3, 2>::from_weights(w2, b2).unwrap().keras_kernel(),
        b2,
    )
    .unwrap();
    assert_eq!(keras, m);
    let e = Mlp::<2, 3, 2>::from_keras(
        &[[0.0; 3]; 2],
        [0.0; 3],
        &[[0.0; 2]; 3],
        [0.0, f32::INFINITY],
    );
    assert_eq!(
        e,
        Err(Error::NonFinite {
            what: "weight",
            index: Some(16)
        })
    );
    let e = Mlp::<2, 3, 2>::from_weights([[f32::NAN; 2]; 3], b1, w2, b2);
    assert_eq!(
        e,
        Err(Error::NonFinite {
            what: "weight",
            index: Some(0)
        })
    );

    let mut back = Mlp::<2, 3, 2>::ZERO;
    back.read_params(&p).unwrap();
    assert_eq!(back, m);
    assert!(matches!(
        back.read_params(&p[..16]),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        m.write_params(&mut [0.0; 18]),
        Err(Error::LengthMismatch { .. })
    ));

    let g = Gradients::<2, 3, 2> {
        hidden: DenseGrads { w: w1, b: b1 },
        output: DenseGrads { w: w2, b: b2 },
    };
    let mut flat = [0.0f32; 17];
    g.write_flat(&mut flat).unwrap();
    assert_eq!(flat, p, "gradients flatten in parameter order");
    assert!(g.write_flat(&mut [0.0; 3]).is_err());
    assert_eq!(Gradients::<2, 3, 2>::default(), Gradients::ZERO);
    assert_eq!(DenseGrads::<2, 3>::default(), DenseGrads::ZERO);
    assert_eq!(Dense::<2, 3>::default(), Dense::ZERO);
    assert_eq!(Mlp::<2, 3, 2>::default(), Mlp::ZERO);
}

#[test]
fn formatting() {
    let l = Dense::<2, 1>::from_weights([[1.5, -2.0]], [0.25]).unwrap();
    let s = format!("{l:?}");
    assert!(s.contains("Dense") && s.contains("inputs: 2") && s.contains("outputs: 1"));
    assert!(
        s.contains("1.5") && s.contains("-2.0") && s.contains("0.25"),
        "{s}"
    );
    let m = Mlp::from_layers(
        Dense::<1, 2>::from_weights([[3.5], [4.5]], [0.0; 2]).unwrap(),
        Dense::<2, 2>::ZERO,
    );
    let s = format!("{m:?}");
    assert!(
        s.contains("Mlp") && s.contains("hidden") && s.contains("3.5"),
        "{s}"
    );
    let s = format!("{}", Mlp::<4, 32, 3>::ZERO);
    assert!(s.contains("Mlp<4, 32, 3>"), "{s}");
    assert!(s.contains("(None, 32)") && s.contains("(None, 3)"), "{s}");
    assert!(s.contains("160") && s.contains("99") && s.contains("Total params: 259"));
    assert!(s.contains("Trainable params: 259") && s.ends_with("Non-trainable params: 0"));
    assert_eq!(
        format!("{:?}", Workspace::<1, 2, 3>::new()),
        "Workspace<1, 2, 3>"
    );
    let _ = Workspace::<1, 2, 3>::default();

    let msgs = [
        (Error::EmptyBatch, "empty batch"),
        (
            Error::LengthMismatch {
                what: "labels",
                expected: 5,
                found: 4,
            },
            "4 labels for 5 samples",
        ),
        (
            Error::LabelOutOfRange {
                index: 7,
                label: 9,
                classes: 3,
            },
            "label 9 of sample 7",
        ),
        (
            Error::NonFinite {
                what: "input",
                index: Some(12),
            },
            "non-finite input at index 12",
        ),
        (
            Error::UpdateOverflow,
            "the gradient bound would overflow f32",
        ),
        (Error::InvalidLearningRate(-1.0), "learning rate -1"),
    ];
    for (e, want) in msgs {
        assert!(e.to_string().contains(want), "{e}");
    }
}

#[test]
fn argument_errors_write_nothing() {
    let l = Dense::<2, 2>::from_weights([[1.0, 2.0], [3.0, 4.0]], [0.0; 2]).unwrap();
    let x = [[1.0f32, 1.0]; 3];
    let mut y = [[9.0f32; 2]; 2];
    assert!(matches!(
        l.forward_batch(&x, &mut y),
        Err(Error::LengthMismatch { .. })
    ));
    let mut g = DenseGrads {
        w: [[9.0; 2]; 2],
        b: [9.0; 2],
    };
    let before = g.clone();
    assert_eq!(
        l.backward(&[], &[], &mut g, Accumulate::Overwrite, None),
        Err(Error::EmptyBatch)
    );
    assert!(
        l.backward(&x, &[[0.0; 2]; 2], &mut g, Accumulate::Add, None)
            .is_err()
    );
    let mut dx = [[0.0f32; 2]; 2];
    assert!(
        l.backward(&x, &[[0.0; 2]; 3], &mut g, Accumulate::Add, Some(&mut dx))
            .is_err()
    );
    assert_eq!(g, before);
    let sgd = Sgd::new(0.1).unwrap();
    let mut l2 = l.clone();
    let mut s = DenseGrads::default();
    assert_eq!(
        l2.backward_sgd(&[], &[], None, &sgd, &mut s),
        Err(Error::EmptyBatch)
    );
    assert!(
        l2.backward_sgd(&x, &[[0.0; 2]; 2], None, &sgd, &mut s)
            .is_err()
    );
    assert!(
        l2.backward_sgd(&x, &[[0.0; 2]; 3], Some(&mut dx), &sgd, &mut s)
            .is_err()
    );
    assert_eq!(l2, l);

    let mut out = [[0.0f32; 2]; 2];
    assert!(fusedprop::relu(&x, &mut out).is_err());
    assert!(fusedprop::softmax(&x, &mut out).is_err());
    assert!(fusedprop::log_softmax(&x, &mut out).is_err());
    assert!(fusedprop::relu_backward(&x, &x, &mut out).is_err());
    assert!(fusedprop::relu_backward(&x, &x[..2], &mut [[0.0; 2]; 3]).is_err());
    assert!(fusedprop::softmax_backward(&x, &x, &mut out).is_err());
    assert!(fusedprop::softmax_backward(&x, &x[..2], &mut [[0.0; 2]; 3]).is_err());
    assert!(fusedprop::log_softmax_backward(&x, &x, &mut out).is_err());
    assert!(fusedprop::log_softmax_backward(&x, &x[..2], &mut [[0.0; 2]; 3]).is_err());
    assert_eq!(
        fusedprop::sparse_categorical_cross_entropy::<2>(&[], &[]),
        Err(Error::EmptyBatch)
    );
    assert!(matches!(
        fusedprop::sparse_categorical_cross_entropy(&x, &[0, 1]),
        Err(Error::LengthMismatch { .. })
    ));
    assert_eq!(
        fusedprop::sparse_categorical_cross_entropy(&x, &[0, 1, 2]),
        Err(Error::LabelOutOfRange {
            index: 2,
            label: 2,
            classes: 2
        })
    );
    let mut d = [[9.0f32; 2]; 2];
    assert!(fusedprop::softmax_cross_entropy_backward(&x, &[0, 1, 1], &mut d).is_err());
    assert_eq!(d, [[9.0; 2]; 2]);

    let m = Mlp::<2, 3, 2>::new(1);
    let mut ws = Workspace::new();
    let mut grads = Gradients::ZERO;
    assert_eq!(m.loss(&[], &[]), Err(Error::EmptyBatch));
    assert_eq!(m.accuracy(&[], &[]), Err(Error::EmptyBatch));
    assert!(matches!(
        m.loss(&x, &[0]),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        m.accuracy(&x, &[0, 0, 5]),
        Err(Error::LabelOutOfRange { index: 2, .. })
    ));
    assert_eq!(
        m.gradients(&[], &[], &mut grads, &mut ws),
        Err(Error::EmptyBatch)
    );
    let mut mm = m.clone();
    assert_eq!(
        mm.train_step(&x, &[0, 3, 0], &sgd, &mut ws),
        Err(Error::LabelOutOfRange {
            index: 1,
            label: 3,
            classes: 2
        })
    );
    assert_eq!(mm, m);
    assert!(m.predict(&x, &mut [0; 2]).is_err());
    assert!(m.predict_proba(&x, &mut [[0.0; 2]; 4]).is_err());
}

#[test]
fn predictions_pick_the_first_of_equal_logits() {
    // All-zero output layer: every logit equal, the first class wins; probabilities uniform.
    let m = Mlp::from_layers(Dense::<2, 3>::ZERO, Dense::<3, 4>::ZERO);
    let x = [[1.0f32, -2.0]; 20];
    let mut c = [9u32; 20];
    m.predict(&x, &mut c).unwrap();
    assert_eq!(c, [0; 20]);
    let mut p = [[0.0f32; 4]; 20];
    m.predict_proba(&x, &mut p).unwrap();
    assert_eq!(p, [[0.25; 4]; 20]);
    // A clear winner in each position, in a second block.
    let out = Dense::<3, 4>::from_weights([[0.0; 3]; 4], [0.0; 4]).unwrap();
    for win in 0..4 {
        let mut b = [0.0f32; 4];
        b[win] = 1.0;
        b[(win + 1) % 4] = 0.5;
        let m = Mlp::from_layers(
            Dense::<2, 3>::ZERO,
            Dense::from_weights(*out.weights(), b).unwrap(),
        );
        m.predict(&x, &mut c).unwrap();
        assert_eq!(c, [win as u32; 20]);
        assert_eq!(m.predict_one(&x[0]).unwrap(), win as u32);
        let labels = [win as u32; 20];
        assert_eq!(m.accuracy(&x, &labels).unwrap(), 1.0);
        let mut other = labels;
        other[17] = ((win + 1) % 4) as u32;
        assert_eq!(m.accuracy(&x, &other).unwrap(), 19.0 / 20.0);
    }
}
