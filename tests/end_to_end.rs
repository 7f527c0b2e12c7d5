//! The reference program end to end, from Glorot initialization: for seeds 0 to 9 the loss
//! falls between epoch 100 and epoch 1000, and the median test accuracy is at least 0.93.

#[path = "../examples/support/data.rs"]
mod data;

use fusedprop::{Mlp, Sgd, Workspace};

#[test]
fn iris_learns_from_every_seed() {
    let (train_x, train_y, test_x, test_y) = data::iris_split().unwrap();
    assert_eq!((train_x.len(), test_x.len()), (120, 30));
    let sgd = Sgd::new(0.01).unwrap();
    let mut accuracies = Vec::new();
    for seed in 0..10 {
        let mut model = Mlp::<4, 32, 3>::new(seed);
        let mut ws = Workspace::new();
        let mut at_100 = f32::NAN;
        let mut at_1000 = f32::NAN;
        for epoch in 1..=1000 {
            let loss = model.train_step(&train_x, &train_y, &sgd, &mut ws).unwrap();
            if epoch == 100 {
                at_100 = loss;
            }
            if epoch == 1000 {
                at_1000 = loss;
            }
        }
        assert!(
            at_1000 < at_100,
            "seed {seed}: loss {at_1000} at epoch 1000 is not below {at_100} at epoch 100"
        );
        accuracies.push(model.accuracy(&test_x, &test_y).unwrap());
    }
    accuracies.sort_by(f32::total_cmp);
    let median = (accuracies[4] + accuracies[5]) / 2.0;
    assert!(
        median >= 0.93,
        "median test accuracy {median} over seeds 0..10: {accuracies:?}"
    );
}

#[test]
fn glorot_initialization_is_reproducible_and_in_range() {
    let a = Mlp::<4, 32, 3>::new(3);
    let b = Mlp::<4, 32, 3>::new(3);
    let c = Mlp::<4, 32, 3>::new(4);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let l1 = (6.0f32 / 36.0).sqrt();
    let l2 = (6.0f32 / 35.0).sqrt();
    assert!(a.hidden().weights().iter().flatten().all(|w| w.abs() <= l1));
    assert!(a.output().weights().iter().flatten().all(|w| w.abs() <= l2));
    assert!(
        a.hidden()
            .bias()
            .iter()
            .chain(a.output().bias())
            .all(|b| *b == 0.0)
    );
    // The weights fill the range, not a corner of it.
    let max = a
        .hidden()
        .weights()
        .iter()
        .flatten()
        .fold(0.0f32, |m, w| m.max(w.abs()));
    assert!(max > 0.8 * l1);
    let mut in_place = Mlp::<4, 32, 3>::ZERO;
    in_place.init_glorot(3);
    assert_eq!(in_place, a);
}

#[test]
fn summary_matches_keras() {
    let s = Mlp::<4, 32, 3>::ZERO.to_string();
    assert!(s.contains("(None, 32)") && s.contains("160"), "{s}");
    assert!(s.contains("(None, 3)") && s.contains("99"), "{s}");
    assert!(s.contains("Total params: 259"), "{s}");
    assert_eq!(Mlp::<4, 32, 3>::PARAMS, 259);
}

#[test]
fn keras_layout_round_trips() {
    let m = Mlp::<4, 32, 3>::new(1);
    let back = Mlp::from_keras(
        &m.hidden().keras_kernel(),
        *m.hidden().bias(),
        &m.output().keras_kernel(),
        *m.output().bias(),
    )
    .unwrap();
    assert_eq!(m, back);
    let mut flat = vec![0.0; Mlp::<4, 32, 3>::PARAMS];
    m.write_params(&mut flat).unwrap();
    let mut z = Mlp::<4, 32, 3>::ZERO;
    z.read_params(&flat).unwrap();
    assert_eq!(m, z);
    // Keras kernel [in][out] is our [out][in] transposed.
    assert_eq!(m.hidden().keras_kernel()[2][5], m.hidden().weights()[5][2]);
}
