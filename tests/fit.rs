//! `Network::fit`: every sample once per epoch, permutations that depend only on the seed and
//! the epoch, batches that are exactly `train_step`s on the permutation's slices, early
//! stopping that restores exactly the best epoch's weights, schedules against their closed
//! forms, and a refused step that stops `fit` with the model as it was before that step.

use core::ops::ControlFlow;

use fusedprop::fit::epoch_order;
use fusedprop::rng::SplitMix64;
use fusedprop::{
    Adam, BatchLog, Dense, EarlyStopping, EpochLog, Error, FitConfig, FitData, FitWorkspace,
    MeanSquaredError, Monitor, NetWorkspace, Network, Optimizer, OptimizerState, Schedule, Sgd,
    Shuffle, SoftmaxCrossEntropy, Stop, Tanh, chain,
};
use proptest::prelude::*;

type Clf = chain![Dense<4, 16, Tanh>, Dense<16, 3>];
type Reg = chain![Dense<2, 8, Tanh>, Dense<8, 1>];

/// A small three-class set: `n` samples of 4 features from a seed, the class from the first
/// two features.
fn blobs(n: usize, seed: u64) -> (Vec<[f32; 4]>, Vec<u32>) {
    let mut r = SplitMix64::new(seed);
    let mut x = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row = [
            r.uniform(2.0),
            r.uniform(2.0),
            r.uniform(1.0),
            r.uniform(1.0),
        ];
        y.push(if row[0] + row[1] > 0.5 {
            0
        } else if row[0] > row[1] {
            1
        } else {
            2
        });
        x.push(row);
    }
    (x, y)
}

fn go(_: &EpochLog) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every epoch's order is a permutation of `0..n`, and it depends only on the seed and
    /// the epoch (not on what the buffer held before).
    #[test]
    fn order_is_a_permutation_of_seed_and_epoch(n in 0usize..300, seed: u64, epoch in 0usize..1000, junk: usize) {
        let mut a = vec![junk; n];
        epoch_order(&mut a, Shuffle::Seed(seed), epoch, None);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        let mut b: Vec<usize> = (0..n).rev().collect();
        epoch_order(&mut b, Shuffle::Seed(seed), epoch, None);
        prop_assert_eq!(&a, &b);
        if n >= 12 {
            // Another epoch or seed gives another permutation (1 / 12! makes a clash
            // negligible).
            let mut c = vec![0; n];
            epoch_order(&mut c, Shuffle::Seed(seed), epoch + 1, None);
            prop_assert_ne!(&a, &c);
            epoch_order(&mut c, Shuffle::Seed(seed ^ 1), epoch, None);
            prop_assert_ne!(&a, &c);
        }
    }

    /// Each epoch's batches cover every sample exactly once (all but the `n % batch`
    /// remainder with `drop_last`), with Keras's sizes.
    #[test]
    fn every_sample_once_per_epoch(n in 1usize..200, batch in 1usize..=48, drop_last: bool, seed: u64) {
        let (x, y) = blobs(n, 1);
        prop_assume!(!(drop_last && batch > n));
        let mut net = Network::<Clf, SoftmaxCrossEntropy>::new(3);
        let (mut state, mut ws) = (OptimizerState::new(), Box::new(FitWorkspace::<Clf, _, 3>::ZERO));
        let mut order = vec![0; n];
        let mut sizes = Vec::new();
        let mut rec = |b: &BatchLog| sizes.push((b.epoch, b.size));
        let config = FitConfig::new(batch, 3).shuffle(seed).drop_last(drop_last);
        let data = FitData::new(&x, &y, &mut order).on_batch(&mut rec);
        net.fit(data, &Sgd::new(0.01).unwrap(), &mut state, &mut ws, &config, go).unwrap();
        for epoch in 0..3 {
            let s: Vec<usize> = sizes.iter().filter(|(e, _)| *e == epoch).map(|(_, s)| *s).collect();
            let full = n / batch;
            prop_assert!(s[..full].iter().all(|&k| k == batch));
            if drop_last || n % batch == 0 {
                prop_assert_eq!(s.len(), full);
            } else {
                prop_assert_eq!(s.len(), full + 1);
                prop_assert_eq!(s[full], n % batch);
            }
        }
        // The last epoch's order, which `fit` left in the buffer, is a permutation.
        let mut sorted = order.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
    }

    /// The schedules against their closed forms, computed here in `f64` with `std`.
    #[test]
    fn schedules_match_their_closed_forms(lr in 1e-4f32..1.0, step in 0u64..100_000, epoch in 0usize..500,
                                          decay_steps in 1u64..10_000, rate in 0.05f32..1.5, alpha in 0.0f32..=1.0,
                                          every in 1usize..50, staircase: bool) {
        let close = |got: f32, want: f64| {
            if want > f64::from(f32::MAX) {
                // Past f32's range the rate is infinite (and `fit` refuses it).
                return got == f32::INFINITY;
            }
            let tol = 2.0 * f64::from(f32::EPSILON) * want.abs() + 1e-30;
            (f64::from(got) - want).abs() <= tol
        };
        let lr0 = f64::from(lr);
        prop_assert_eq!(Schedule::Constant.learning_rate(lr, step, epoch), lr);
        let p = step as f64 / decay_steps as f64;
        let p = if staircase { p.floor() } else { p };
        let want = lr0 * f64::from(rate).powf(p);
        let got = Schedule::Exponential { decay_steps, decay_rate: rate, staircase }.learning_rate(lr, step, epoch);
        prop_assert!(close(got, want), "exponential {} vs {}", got, want);
        let s = step.min(decay_steps) as f64 / decay_steps as f64;
        let a = f64::from(alpha);
        let want = lr0 * ((1.0 - a) * 0.5 * (1.0 + (std::f64::consts::PI * s).cos()) + a);
        let got = Schedule::Cosine { decay_steps, alpha }.learning_rate(lr, step, epoch);
        prop_assert!(close(got, want), "cosine {} vs {}", got, want);
        let want = lr0 * f64::from(rate).powi((epoch / every) as i32);
        let got = Schedule::Step { every_epochs: every, factor: rate }.learning_rate(lr, step, epoch);
        prop_assert!(close(got, want), "step {} vs {}", got, want);
    }
}

/// `fit`'s steps are `train_step` on the slices of `epoch_order`'s permutation, with the
/// schedule's rate: bit for bit the same losses, weights and optimizer state.
#[test]
fn fit_is_train_step_on_the_permutation() {
    let (x, y) = blobs(150, 2);
    let mut net = Network::<Clf, SoftmaxCrossEntropy>::new(5);
    let mut twin = net.clone();
    let adam = Adam::new(0.01).unwrap();
    let sched = Schedule::Exponential {
        decay_steps: 7,
        decay_rate: 0.9,
        staircase: false,
    };
    let config = FitConfig::new(20, 6).shuffle(99).schedule(sched);
    let (mut state, mut ws) = (
        OptimizerState::new(),
        Box::new(FitWorkspace::<Clf, _, 2>::ZERO),
    );
    let mut order = vec![0; x.len()];
    let mut logs = Vec::new();
    let mut rec = |b: &BatchLog| logs.push(*b);
    let data = FitData::new(&x, &y, &mut order).on_batch(&mut rec);
    net.fit(data, &adam, &mut state, &mut ws, &config, go)
        .unwrap();

    let (mut st, mut nws) = (OptimizerState::new(), NetWorkspace::new());
    let mut perm = vec![0; x.len()];
    let mut k = 0;
    for epoch in 0..6 {
        epoch_order(&mut perm, Shuffle::Seed(99), epoch, None);
        for (b, idx) in perm.chunks(20).enumerate() {
            let bx: Vec<[f32; 4]> = idx.iter().map(|&i| x[i]).collect();
            let by: Vec<u32> = idx.iter().map(|&i| y[i]).collect();
            let lr = sched.learning_rate(0.01, st.steps(), epoch);
            let l = twin
                .train_step(
                    &bx,
                    &by,
                    &adam.with_learning_rate(lr).unwrap(),
                    &mut st,
                    &mut nws,
                )
                .unwrap();
            assert_eq!(
                (logs[k].epoch, logs[k].batch, logs[k].learning_rate),
                (epoch, b, lr)
            );
            assert_eq!(
                l.to_bits(),
                logs[k].loss.to_bits(),
                "epoch {epoch} batch {b}"
            );
            k += 1;
        }
    }
    assert_eq!(k, logs.len());
    assert!(net == twin);
    assert!(state == st);
}

/// The same seed gives the same weights bit for bit; another seed, other weights. A caller's
/// generator shuffles too.
#[test]
fn shuffled_training_is_deterministic() {
    let (x, y) = blobs(100, 3);
    let train = |shuffle: Shuffle, rng: Option<&mut SplitMix64>| {
        let mut net = Network::<Clf, SoftmaxCrossEntropy>::new(5);
        let (mut state, mut ws) = (
            OptimizerState::new(),
            Box::new(FitWorkspace::<Clf, _, 1>::ZERO),
        );
        let mut order = vec![0; x.len()];
        let mut data = FitData::new(&x, &y, &mut order);
        if let Some(r) = rng {
            data = data.rng(r);
        }
        let config = FitConfig::new(16, 5).order(shuffle);
        net.fit(
            data,
            &Sgd::new(0.1).unwrap(),
            &mut state,
            &mut ws,
            &config,
            go,
        )
        .unwrap();
        net
    };
    let a = train(Shuffle::Seed(1), None);
    assert!(a == train(Shuffle::Seed(1), None));
    assert!(a != train(Shuffle::Seed(2), None));
    assert!(a != train(Shuffle::None, None));
    let c = train(Shuffle::None, Some(&mut SplitMix64::new(8)));
    assert!(c == train(Shuffle::None, Some(&mut SplitMix64::new(8))));
    assert!(c != train(Shuffle::None, None));
}

/// Early stopping with `restore_best_weights` leaves exactly the weights of the best epoch:
/// those of a second run stopped after that epoch.
#[test]
fn early_stopping_restores_the_best_epoch() {
    let (x, y) = blobs(160, 4);
    let (tx, ty) = (&x[..120], &y[..120]);
    let (vx, vy) = (&x[120..], &y[120..]);
    // A learning rate high enough that the validation loss stops improving.
    let adam = Adam::new(0.08).unwrap();
    let mk = || Network::<Clf, SoftmaxCrossEntropy>::new(11);
    let mut net = mk();
    let mut best = mk();
    let es = EarlyStopping::new(Monitor::ValLoss)
        .patience(5)
        .restore_best_weights(true);
    let config = FitConfig::new(16, 300).shuffle(3).early_stopping(es);
    let (mut state, mut ws) = (
        OptimizerState::new(),
        Box::new(FitWorkspace::<Clf, _, 1>::ZERO),
    );
    let mut order = vec![0; tx.len()];
    let mut val = Vec::new();
    let data = FitData::new(tx, ty, &mut order)
        .validation(vx, vy)
        .best(&mut best);
    let s = net
        .fit(data, &adam, &mut state, &mut ws, &config, |l| {
            val.push(l.val_loss.unwrap());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(s.stop, Stop::EarlyStopping, "{s:?}");
    assert!(s.restored);
    let b = s.best_epoch.unwrap();
    assert_eq!(s.epochs, b + 1 + 5, "stopped after patience epochs");
    let min = val.iter().copied().fold(f32::INFINITY, f32::min);
    assert_eq!(s.best, Some(min));
    assert_eq!(val[b], min);

    // Train again for exactly b + 1 epochs: the same weights, bit for bit.
    let mut again = mk();
    let (mut st2, mut ws2) = (
        OptimizerState::new(),
        Box::new(FitWorkspace::<Clf, _, 1>::ZERO),
    );
    let config = FitConfig::new(16, b + 1).shuffle(3);
    let data = FitData::new(tx, ty, &mut order).validation(vx, vy);
    again
        .fit(data, &adam, &mut st2, &mut ws2, &config, go)
        .unwrap();
    assert!(net == again, "restored weights are not those of epoch {b}");
    assert_eq!(net.loss(vx, vy).unwrap().to_bits(), min.to_bits());
}

/// The callback's figures: `loss` is Keras's size-weighted mean of the batch losses,
/// `val_loss` and `val_accuracy` are `loss` and `accuracy` of the validation data; `Break`
/// stops.
#[test]
fn epoch_figures_and_callback_stop() {
    let (x, y) = blobs(90, 5);
    let (vx, vy) = (&x[60..], &y[60..]);
    let mut net = Network::<Clf, SoftmaxCrossEntropy>::new(2);
    let (mut state, mut ws) = (
        OptimizerState::new(),
        Box::new(FitWorkspace::<Clf, _, 2>::ZERO),
    );
    let mut order = vec![0; 60];
    let mut batches = Vec::new();
    let mut rec = |b: &BatchLog| batches.push(*b);
    let mut last = None;
    let data = FitData::new(&x[..60], &y[..60], &mut order)
        .validation(vx, vy)
        .on_batch(&mut rec);
    let s = net
        .fit(
            data,
            &Sgd::new(0.05).unwrap(),
            &mut state,
            &mut ws,
            &FitConfig::new(25, 100),
            |l| {
                last = Some(*l);
                if l.epoch == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .unwrap();
    assert_eq!((s.epochs, s.stop), (4, Stop::Callback));
    let l = last.unwrap();
    assert_eq!(s.last, Some(l));
    let mine: Vec<&BatchLog> = batches.iter().filter(|b| b.epoch == 3).collect();
    assert_eq!(
        mine.iter().map(|b| b.size).collect::<Vec<_>>(),
        [25, 25, 10]
    );
    let mean = mine
        .iter()
        .map(|b| f64::from(b.loss) * b.size as f64)
        .sum::<f64>()
        / 60.0;
    assert_eq!(l.loss, mean as f32);
    assert_eq!(l.val_loss, Some(net.loss(vx, vy).unwrap()));
    assert_eq!(l.val_accuracy, Some(net.accuracy(vx, vy).unwrap()));
    assert_eq!(l.steps, 12);
}

/// A step refused inside `fit` (Adam's second moment would overflow on a target of 1e19 in
/// the second batch) ends `fit` with the error, its epoch and batch, and leaves the weights
/// and the optimizer state as they were after the first batch.
#[test]
fn refused_step_stops_fit_and_changes_nothing() {
    let mut r = SplitMix64::new(6);
    let x: Vec<[f32; 2]> = (0..48).map(|_| [r.uniform(1.0), r.uniform(1.0)]).collect();
    let mut t: Vec<[f32; 1]> = x.iter().map(|v| [v[0] - v[1]]).collect();
    t[20] = [1e19];
    let mut net = Network::<Reg, MeanSquaredError>::new(1);
    let mut expect = net.clone();
    let adam = Adam::new(0.01).unwrap();
    let (mut state, mut ws) = (
        OptimizerState::new(),
        Box::new(FitWorkspace::<Reg, _, 1>::ZERO),
    );
    let mut order = vec![0; 48];
    let data = FitData::new(&x, &t, &mut order);
    let err = net
        .fit(
            data,
            &adam,
            &mut state,
            &mut ws,
            &FitConfig::new(16, 10),
            go,
        )
        .unwrap_err();
    assert_eq!((err.epoch, err.batch), (Some(0), Some(1)), "{err}");
    assert_eq!(err.error, Error::UpdateOverflow);
    assert!(err.to_string().starts_with("epoch 1, batch 2: "));

    let (mut st, mut nws) = (OptimizerState::new(), NetWorkspace::new());
    expect
        .train_step(&x[..16], &t[..16], &adam, &mut st, &mut nws)
        .unwrap();
    assert!(net == expect);
    assert!(state == st);
    assert_eq!(state.steps(), 1);
}

/// Bad arguments and data are errors before the first step, and change nothing.
#[test]
fn bad_arguments_are_errors() {
    let (x, y) = blobs(40, 7);
    let net0 = Network::<Clf, SoftmaxCrossEntropy>::new(2);
    let sgd = Sgd::new(0.1).unwrap();
    let run = |config: FitConfig, n_order: usize, val: bool, best: bool, yy: &[u32]| {
        let mut net = net0.clone();
        let mut b = net0.clone();
        let (mut state, mut ws) = (
            OptimizerState::new(),
            Box::new(FitWorkspace::<Clf, _, 2>::ZERO),
        );
        let mut order = vec![0; n_order];
        let mut data = FitData::new(&x, yy, &mut order);
        if val {
            data = data.validation(&x[..8], &yy[..8]);
        }
        if best {
            data = data.best(&mut b);
        }
        let e = net
            .fit(data, &sgd, &mut state, &mut ws, &config, go)
            .unwrap_err();
        assert!(net == net0 && state.steps() == 0);
        assert_eq!((e.epoch, e.batch), (None, None));
        e.error
    };
    let c = FitConfig::new(16, 3);
    assert!(matches!(
        run(FitConfig::new(0, 3), 40, false, false, &y),
        Error::InvalidArgument {
            what: "batch_size",
            ..
        }
    ));
    assert!(matches!(
        run(FitConfig::new(33, 3), 40, false, false, &y),
        Error::InvalidArgument {
            what: "batch_size",
            ..
        }
    ));
    assert!(matches!(
        run(c, 39, false, false, &y),
        Error::LengthMismatch { .. }
    ));
    let es = EarlyStopping::new(Monitor::ValLoss);
    assert!(matches!(
        run(c.early_stopping(es), 40, false, false, &y),
        Error::InvalidArgument { .. }
    ));
    let es = es.restore_best_weights(true);
    assert!(matches!(
        run(c.early_stopping(es), 40, true, false, &y),
        Error::InvalidArgument {
            what: "restore_best_weights",
            ..
        }
    ));
    let bad_sched = Schedule::Cosine {
        decay_steps: 0,
        alpha: 0.0,
    };
    assert!(matches!(
        run(c.schedule(bad_sched), 40, false, false, &y),
        Error::InvalidArgument { .. }
    ));
    let mut yb = y.clone();
    yb[30] = 3;
    assert!(matches!(
        run(c, 40, false, false, &yb),
        Error::LabelOutOfRange { index: 30, .. }
    ));
}

/// Regression works through `fit` too (rows as targets), and a cosine schedule that decays to
/// zero does not stop training.
#[test]
fn regression_with_cosine_to_zero() {
    let mut r = SplitMix64::new(9);
    let x: Vec<[f32; 2]> = (0..64).map(|_| [r.uniform(1.0), r.uniform(1.0)]).collect();
    let t: Vec<[f32; 1]> = x.iter().map(|v| [v[0] * v[1]]).collect();
    let mut net = Network::<Reg, MeanSquaredError>::new(4);
    let before = net.loss(&x, &t).unwrap();
    let (mut state, mut ws) = (
        OptimizerState::new(),
        Box::new(FitWorkspace::<Reg, _, 1>::ZERO),
    );
    let mut order = vec![0; 64];
    let config = FitConfig::new(16, 40)
        .shuffle(1)
        .schedule(Schedule::Cosine {
            decay_steps: 100,
            alpha: 0.0,
        });
    let s = net
        .fit(
            FitData::new(&x, &t, &mut order).validation(&x, &t),
            &Adam::new(0.01).unwrap(),
            &mut state,
            &mut ws,
            &config,
            go,
        )
        .unwrap();
    let last = s.last.unwrap();
    assert_eq!(last.val_accuracy, None);
    assert_eq!(last.learning_rate, f32::MIN_POSITIVE);
    assert!(last.val_loss.unwrap() < before);
}
