//! `predict_one` (the single-sample latency path) agrees with `predict` (the batch kernels)
//! on random samples for shapes on and off the lane width, and refuses non-finite inputs.

use fusedprop::{Error, Mlp, rng::SplitMix64};

fn agree<const I: usize, const H: usize, const O: usize>(seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let m: Box<Mlp<I, H, O>> = Box::new(Mlp::new(seed));
    let x: Vec<[f32; I]> = (0..200)
        .map(|_| std::array::from_fn(|_| rng.uniform(3.0)))
        .collect();
    let mut batch = vec![0u32; x.len()];
    m.predict(&x, &mut batch).unwrap();
    for (xs, &b) in x.iter().zip(&batch) {
        assert_eq!(m.predict_one(xs).unwrap(), b, "{I}-{H}-{O}");
    }
}

#[test]
fn predict_one_agrees_with_predict() {
    agree::<4, 32, 3>(1);
    agree::<64, 128, 10>(2);
    agree::<33, 17, 5>(3);
    agree::<1, 1, 2>(4);
    agree::<17, 40, 16>(5);
    // Rows of four inputs (the hidden layer's shuffle path), one and three groups of 16.
    agree::<4, 16, 2>(6);
    agree::<4, 48, 7>(7);
    // The output layer on that path too (no ReLU).
    agree::<9, 4, 16>(8);
}

#[test]
fn predict_one_refuses_non_finite() {
    let m = Mlp::<4, 8, 3>::new(1);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert_eq!(
            m.predict_one(&[0.0, bad, 1.0, 2.0]),
            Err(Error::NonFinite {
                what: "input",
                index: Some(0)
            })
        );
    }
    assert!(m.predict_one(&[f32::MAX, -f32::MAX, 0.0, 1e-45]).is_ok());
}
