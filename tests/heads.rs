//! The heads' documented target checks, on a network small enough to build in seconds (for
//! the mutation run, .cargo/mutants.toml): mean squared error refuses a target that is not
//! finite, binary cross-entropy also one outside `[0, 1]`, each naming the first bad row,
//! before any work.

use fusedprop::{BinaryCrossEntropy, Dense, Error, MeanSquaredError, Network};

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
