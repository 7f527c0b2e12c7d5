//! The heads' documented target checks, on a network small enough to build in seconds (for
//! the mutation run, .cargo/mutants.toml): mean squared error refuses a target that is not
//! finite, binary cross-entropy also one outside `[0, 1]`, each naming the first bad row,
//! before any work.

use fusedprop::{BinaryCrossEntropy, Dense, Error, MeanSquaredError, Network, SoftmaxCrossEntropy};

fn rows() -> Vec<[f32; 3]> {
    (0..6).map(|i| [i as f32 * 0.1, 0.5, -0.25]).collect()
}

#[test]
fn mean_squared_error_refuses_targets_that_are_not_finite() {
    let net = Network::<Dense<3, 2>, MeanSquaredError>::new(1);
    let x = rows();
    let mut t = vec![[0.5f32, 2.5]; 6];
    assert!(net.loss(&x, &t).unwrap().is_finite());
    for (i, v) in [(4, f32::NAN), (0, f32::INFINITY), (5, f32::NEG_INFINITY)] {
        let mut bad = t.clone();
        bad[i][1] = v;
        assert_eq!(
            net.loss(&x, &bad),
            Err(Error::NonFinite {
                what: "target",
                index: Some(i)
            })
        );
    }
    // Any finite value is a target of mean squared error; the first bad row is named.
    t[1] = [-1e15, 1e15];
    assert!(net.loss(&x, &t).is_ok());
    t[2][0] = f32::NAN;
    t[3][1] = f32::NAN;
    assert_eq!(
        net.loss(&x, &t),
        Err(Error::NonFinite {
            what: "target",
            index: Some(2)
        })
    );
}

#[test]
fn binary_cross_entropy_refuses_targets_outside_the_unit_interval() {
    let net = Network::<Dense<3, 2>, BinaryCrossEntropy>::new(1);
    let x = rows();
    let t = vec![[0.0f32, 1.0]; 6];
    assert!(net.loss(&x, &t).unwrap().is_finite());
    for (i, v) in [(3, 1.5f32), (0, -0.25), (5, 1.000_001)] {
        let mut bad = t.clone();
        bad[i][0] = v;
        assert_eq!(
            net.loss(&x, &bad),
            Err(Error::TargetOutOfRange { index: i })
        );
    }
    let mut bad = t.clone();
    bad[2][1] = f32::NAN;
    assert_eq!(
        net.loss(&x, &bad),
        Err(Error::NonFinite {
            what: "target",
            index: Some(2)
        })
    );
    // Out of range in one place and not finite in another, in the same row: not finite.
    bad[2][0] = 7.0;
    assert_eq!(
        net.loss(&x, &bad),
        Err(Error::NonFinite {
            what: "target",
            index: Some(2)
        })
    );
}

/// The reported loss is Keras's: the mean over samples *and outputs*, here of two outputs
/// (with one output the two means are the same), against the outputs `Network::outputs`
/// gives.
#[test]
fn losses_are_means_over_samples_and_outputs() {
    let x = rows();
    let t = vec![
        [0.25f32, 1.0],
        [1.0, 0.0],
        [0.0, 0.5],
        [0.5, 0.5],
        [1.0, 1.0],
        [0.0, 0.0],
    ];
    let mse = Network::<Dense<3, 2>, MeanSquaredError>::new(4);
    let mut z = vec![[0.0f32; 2]; 6];
    mse.outputs(&x, &mut z).unwrap();
    let mut want = 0.0f64;
    for (zr, tr) in z.iter().zip(&t) {
        for (&v, &y) in zr.iter().zip(tr) {
            want += (f64::from(v) - f64::from(y)).powi(2);
        }
    }
    want /= 12.0;
    let got = f64::from(mse.loss(&x, &t).unwrap());
    assert!(
        (got - want).abs() <= 1e-5 * want,
        "mse {got} against {want}"
    );

    let bce = Network::<Dense<3, 2>, BinaryCrossEntropy>::new(4);
    bce.outputs(&x, &mut z).unwrap();
    let mut want = 0.0f64;
    for (zr, tr) in z.iter().zip(&t) {
        for (&v, &y) in zr.iter().zip(tr) {
            // `outputs` gives the logits: -t ln σ(z) - (1 - t) ln(1 - σ(z)).
            let p = 1.0 / (1.0 + (-f64::from(v)).exp());
            let y = f64::from(y);
            want -= y * p.ln() + (1.0 - y) * (1.0 - p).ln();
        }
    }
    want /= 12.0;
    let got = f64::from(bce.loss(&x, &t).unwrap());
    assert!(
        (got - want).abs() <= 1e-5 * want,
        "bce {got} against {want}"
    );
}

/// Inputs for the classification checks: a spread of signs, so that a trained network does
/// not give every sample the same class.
fn inputs() -> Vec<[f32; 3]> {
    (0..8)
        .map(|i| {
            let s = i as f32;
            [(s * 0.7).sin() * 2.0, (s * 1.3).cos() * 2.0, s * 0.25 - 1.0]
        })
        .collect()
}

/// One epoch of `fit` on `x`, `y` (with a fixed seed, so every call trains the same network)
/// and `validation` as the validation data; the trained network and the epoch's
/// `val_accuracy`.
fn fit_once<H: fusedprop::Head<fusedprop::Dim<O>> + fusedprop::optim::ConstZero, const O: usize>(
    x: &[[f32; 3]],
    y: &[fusedprop::network::Target<Dense<3, O>, H>],
    validation: (&[[f32; 3]], &[fusedprop::network::Target<Dense<3, O>, H>]),
) -> (Network<Dense<3, O>, H>, Option<f32>) {
    use core::ops::ControlFlow;
    use fusedprop::rng::SplitMix64;
    use fusedprop::{FitConfig, FitData, FitWorkspace, OptimizerState, Sgd};
    let mut net = Network::<Dense<3, O>, H>::new(9);
    let (mut state, mut ws) = (OptimizerState::new(), FitWorkspace::<_, H, 1>::new());
    let (mut order, mut rng) = (vec![0; x.len()], SplitMix64::new(3));
    let data = FitData::new(x, y, &mut order)
        .rng(&mut rng)
        .validation(validation.0, validation.1);
    let mut val_accuracy = Some(-1.0);
    net.fit(
        data,
        &Sgd::new(0.1).unwrap(),
        &mut state,
        &mut ws,
        &FitConfig::new(4, 1),
        |log| {
            val_accuracy = log.val_accuracy;
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    (net, val_accuracy)
}

/// `val_accuracy` counts a validation sample as right when its predicted class is the class
/// its target names: the label for softmax cross-entropy. Each sample is validated alone
/// against every label, so the accuracy is 1 exactly for the predicted class.
#[test]
fn validation_accuracy_compares_the_prediction_with_the_label() {
    let x = inputs();
    let y: Vec<u32> = (0..x.len() as u32).map(|i| i % 3).collect();
    let mut seen = [false; 3];
    for i in 0..x.len() {
        for label in 0..3u32 {
            let (net, acc) = fit_once::<SoftmaxCrossEntropy, 3>(&x, &y, (&x[i..=i], &[label]));
            let predicted = net.predict_one(&x[i]).unwrap();
            seen[predicted as usize] = true;
            let want = if predicted == label { 1.0 } else { 0.0 };
            assert_eq!(acc, Some(want), "sample {i}, label {label}");
        }
    }
    assert!(seen.iter().filter(|&&s| s).count() >= 2, "{seen:?}");
}

/// For one-output binary cross-entropy the class a target names is `t > 0.5` (so 0.5
/// itself is class 0).
#[test]
fn validation_accuracy_of_binary_cross_entropy_reads_targets_above_one_half_as_class_one() {
    let x = inputs();
    let y: Vec<[f32; 1]> = (0..x.len()).map(|i| [(i % 2) as f32]).collect();
    for i in 0..x.len() {
        for t in [0.0f32, 0.3, 0.5, 0.500_001, 0.8, 1.0] {
            let (net, acc) = fit_once::<BinaryCrossEntropy, 1>(&x, &y, (&x[i..=i], &[[t]]));
            let predicted = net.predict_one(&x[i]).unwrap();
            let want = if predicted == u32::from(t > 0.5) {
                1.0
            } else {
                0.0
            };
            assert_eq!(acc, Some(want), "sample {i}, target {t}");
        }
    }
}

/// Heads that do not classify have no accuracy: multi-output binary cross-entropy and mean
/// squared error report `val_accuracy: None`.
#[test]
fn heads_that_do_not_classify_have_no_validation_accuracy() {
    let x = inputs();
    let y: Vec<[f32; 2]> = (0..x.len()).map(|i| [(i % 2) as f32, 0.0]).collect();
    let (_, acc) = fit_once::<BinaryCrossEntropy, 2>(&x, &y, (&x, &y));
    assert_eq!(acc, None);
    let (_, acc) = fit_once::<MeanSquaredError, 2>(&x, &y, (&x, &y));
    assert_eq!(acc, None);
    let y: Vec<[f32; 1]> = y.iter().map(|r| [r[0]]).collect();
    let (_, acc) = fit_once::<MeanSquaredError, 1>(&x, &y, (&x, &y));
    assert_eq!(acc, None);
}

/// One-output binary cross-entropy predicts class 1 where `p > 0.5`, that is a logit above
/// 0: a logit of exactly 0 (the zero network) is class 0, in `predict`, `predict_one` and
/// `accuracy`; otherwise the class is the logit's sign.
#[test]
fn binary_cross_entropy_predicts_class_one_for_a_positive_logit() {
    let x = inputs();
    let zero = Network::<Dense<3, 1>, BinaryCrossEntropy>::ZERO;
    let mut c = vec![7u32; x.len()];
    zero.predict(&x, &mut c).unwrap();
    assert!(c.iter().all(|&c| c == 0), "{c:?}");
    assert!(x.iter().all(|r| zero.predict_one(r).unwrap() == 0));
    assert_eq!(zero.accuracy(&x, &vec![0; x.len()]).unwrap(), 1.0);

    let net = Network::<Dense<3, 1>, BinaryCrossEntropy>::new(2);
    let mut z = vec![[0.0f32; 1]; x.len()];
    net.outputs(&x, &mut z).unwrap();
    net.predict(&x, &mut c).unwrap();
    let want: Vec<u32> = z.iter().map(|z| u32::from(z[0] > 0.0)).collect();
    assert!(want.contains(&0) && want.contains(&1), "{z:?}");
    assert_eq!(c, want);
    for (r, &w) in x.iter().zip(&want) {
        assert_eq!(net.predict_one(r).unwrap(), w);
    }
    // Five right, three wrong.
    let labels: Vec<u32> = (0..x.len())
        .map(|i| if i < 5 { want[i] } else { 1 - want[i] })
        .collect();
    assert_eq!(net.accuracy(&x, &labels).unwrap(), 5.0 / 8.0);
}

/// `train_step_packed` is bit for bit `train_step` on the same rows and labels: the labels
/// come from the packed batch (softmax cross-entropy's targets are its labels).
#[test]
fn a_packed_batch_trains_as_its_rows_and_labels() {
    use fusedprop::{NetWorkspace, OptimizerState, PackedBatch, Sgd};
    let x = inputs();
    let y: Vec<u32> = (0..x.len() as u32).map(|i| (i * 2 + 1) % 3).collect();
    let batch = PackedBatch::<3, 1>::from_rows(&x, &y).unwrap();
    let mut a = Network::<Dense<3, 3>, SoftmaxCrossEntropy>::new(5);
    let mut b = a.clone();
    let (mut sa, mut sb) = (OptimizerState::new(), OptimizerState::new());
    let mut ws = NetWorkspace::ZERO;
    let sgd = Sgd::new(0.5).unwrap();
    for _ in 0..2 {
        let la = a.train_step_packed(&batch, &sgd, &mut sa, &mut ws).unwrap();
        let lb = b.train_step(&x, &y, &sgd, &mut sb, &mut ws).unwrap();
        assert_eq!(la.to_bits(), lb.to_bits());
        assert!(a == b);
    }
}
