//! `Network::train_step_par` is bit for bit `Network::train_step`, for every optimizer, on 1,
//! 2, 3 and 8 threads, with rounds of several tiles, a partial last block and errors.

use fusedprop::rng::SplitMix64;
use fusedprop::{
    Adam, Dense, Error, MeanSquaredError, Momentum, NetParWorkspace, NetWorkspace, Network,
    Optimizer, OptimizerState, Relu, Sgd, SoftmaxCrossEntropy, Tanh, chain,
};

type Clf = chain![Dense<9, 17, Tanh>, Dense<17, 8, Relu>, Dense<8, 3>];
// The middle layer (33 -> 32) computes its weight gradients from rows (`ROWS_IN`).
type Reg = chain![Dense<5, 33, Relu>, Dense<33, 32, Relu>, Dense<32, 2>];

fn data<const I: usize>(n: usize, seed: u64) -> Vec<[f32; I]> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| core::array::from_fn(|_| rng.uniform(2.0)))
        .collect()
}

fn params<L: fusedprop::Layer, H: fusedprop::Head<L::Out>>(n: &Network<L, H>) -> Vec<u32> {
    let mut p = vec![0.0; L::PARAMS];
    n.write_params(&mut p).unwrap();
    p.iter().map(|v| v.to_bits()).collect()
}

fn check_clf<P: Optimizer, const C: usize>(opt: P, threads: usize, n: usize) {
    let x = data::<9>(n, 1);
    let y: Vec<u32> = (0..n).map(|i| (i * 7 % 3) as u32).collect();
    let mut serial = Network::<Clf, SoftmaxCrossEntropy>::new(5);
    let mut par = serial.clone();
    let (mut s1, mut s2) = (OptimizerState::new(), OptimizerState::new());
    let mut ws = NetWorkspace::new();
    let mut pws = Box::new(NetParWorkspace::<Clf, C>::ZERO);
    pws.set_min_flop(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    for step in 0..4 {
        let a = serial.train_step(&x, &y, &opt, &mut s1, &mut ws).unwrap();
        let b = pool
            .install(|| par.train_step_par(&x, &y, &opt, &mut s2, &mut pws))
            .unwrap();
        assert_eq!(a.to_bits(), b.to_bits(), "loss, step {step}");
        assert_eq!(params(&serial), params(&par), "weights, step {step}");
        assert!(s1 == s2, "optimizer state, step {step}");
    }
}

#[test]
fn parallel_equals_serial_for_every_optimizer_and_thread_count() {
    for threads in [1, 2, 3, 8] {
        // 5 tiles in rounds of 2 (the last round one tile), and 3 tiles in one round.
        check_clf::<_, 2>(Sgd::new(0.05).unwrap(), threads, 600);
        check_clf::<_, 4>(Momentum::new(0.05, 0.9).unwrap(), threads, 300);
        check_clf::<_, 2>(Momentum::nesterov(0.05, 0.9).unwrap(), threads, 520);
        check_clf::<_, 3>(Adam::new(0.01).unwrap(), threads, 700);
        check_clf::<_, 2>(Adam::adamw(0.01, 0.1).unwrap(), threads, 257);
        check_clf::<_, 8>(Adam::pytorch(0.01).unwrap(), threads, 1000);
    }
}

#[test]
fn parallel_regression_and_refusals_match_serial() {
    let x = data::<5>(400, 3);
    let t: Vec<[f32; 2]> = data::<2>(400, 4);
    let mut serial = Network::<Reg, MeanSquaredError>::new(9);
    let mut par = serial.clone();
    let opt = Adam::new(0.01).unwrap();
    let (mut s1, mut s2) = (OptimizerState::new(), OptimizerState::new());
    let mut ws = NetWorkspace::new();
    let mut pws = Box::new(NetParWorkspace::<Reg, 2>::ZERO);
    pws.set_min_flop(0);
    for _ in 0..3 {
        let a = serial.train_step(&x, &t, &opt, &mut s1, &mut ws).unwrap();
        let b = par.train_step_par(&x, &t, &opt, &mut s2, &mut pws).unwrap();
        assert_eq!(a.to_bits(), b.to_bits());
    }
    assert_eq!(params(&serial), params(&par));
    // A non-finite input in the third tile: the same error, nothing written.
    let mut bad = x.clone();
    bad[300][2] = f32::NAN;
    let before = (params(&par), s2.clone());
    let e1 = serial
        .train_step(&bad, &t, &opt, &mut s1, &mut ws)
        .unwrap_err();
    let e2 = par
        .train_step_par(&bad, &t, &opt, &mut s2, &mut pws)
        .unwrap_err();
    assert_eq!(e1, e2);
    assert_eq!(
        e2,
        Error::NonFinite {
            what: "input",
            index: Some(300)
        }
    );
    assert_eq!(before.0, params(&par));
    assert!(before.1 == s2);
    // Huge inputs: the update bound overflows in both.
    let huge = vec![[1e37f32; 5]; 400];
    let e1 = serial.train_step(&huge, &t, &opt, &mut s1, &mut ws);
    let e2 = par.train_step_par(&huge, &t, &opt, &mut s2, &mut pws);
    assert_eq!(e1.map(f32::to_bits), e2.map(f32::to_bits));
    assert_eq!(before.0, params(&par));
    assert!(before.1 == s2);
    // And training goes on, still equal.
    let a = serial.train_step(&x, &t, &opt, &mut s1, &mut ws).unwrap();
    let b = par.train_step_par(&x, &t, &opt, &mut s2, &mut pws).unwrap();
    assert_eq!(a.to_bits(), b.to_bits());
    assert_eq!(params(&serial), params(&par));
}

/// A step whose closed-form bound overflows (huge weights above a ReLU whose input is
/// exactly 0) but whose measured `dL/dz` are small is taken, by the serial and the parallel
/// step alike, bit for bit, and it is plain SGD on the gradients.
#[test]
fn a_step_the_closed_form_bound_refuses_is_decided_on_measured_values() {
    use fusedprop::Layer;
    type L = chain![Dense<1, 1, Relu>, Dense<1, 1, Relu>, Dense<1, 2>];
    let p = [1e30, 1e30, 1e30, 0.0, 1e30, -1e30, 0.25, -0.5];
    let mut serial = Network::<L, SoftmaxCrossEntropy>::ZERO;
    serial.read_params(&p).unwrap();
    let mut par = serial.clone();
    let sgd = Sgd::new(0.1).unwrap();
    for n in [1usize, 300] {
        let x = vec![[-1.0f32]; n];
        let y: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let mut g = Box::new(fusedprop::NetGradients::<L>::ZERO);
        let mut ws = NetWorkspace::new();
        serial.gradients(&x, &y, &mut g, &mut ws).unwrap();
        let mut grads = vec![0.0f32; L::PARAMS];
        g.write_flat(&mut grads).unwrap();
        let mut before = vec![0.0f32; L::PARAMS];
        serial.write_params(&mut before).unwrap();
        let (mut s1, mut s2) = (OptimizerState::new(), OptimizerState::new());
        let mut pws = Box::new(NetParWorkspace::<L, 2>::ZERO);
        pws.set_min_flop(0);
        let a = serial.train_step(&x, &y, &sgd, &mut s1, &mut ws).unwrap();
        let b = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(|| par.train_step_par(&x, &y, &sgd, &mut s2, &mut pws))
            .unwrap();
        assert_eq!(a.to_bits(), b.to_bits(), "loss, N = {n}");
        assert_eq!(params(&serial), params(&par), "weights, N = {n}");
        let mut after = vec![0.0f32; L::PARAMS];
        serial.write_params(&mut after).unwrap();
        for i in 0..L::PARAMS {
            let want = before[i] - 0.1 * grads[i];
            assert!(
                (after[i] - want).abs() <= 1e-6 * want.abs().max(1.0),
                "parameter {i}, N = {n}: {} after the step, want {want}",
                after[i]
            );
        }
        assert!(grads[6] != 0.0, "the last biases must move");
    }
}

/// The workspace keeps the threshold it is given (`PAR_MIN_FLOP` until then) and shows it in
/// its `Debug` form.
#[test]
fn the_workspace_keeps_and_shows_its_threshold() {
    let mut pws = Box::new(NetParWorkspace::<Reg, 2>::ZERO);
    assert_eq!(pws.min_flop(), fusedprop::PAR_MIN_FLOP);
    assert_eq!(
        format!("{pws:?}"),
        format!(
            "NetParWorkspace<_, 2> {{ min_flop: {} }}",
            fusedprop::PAR_MIN_FLOP
        )
    );
    for flop in [12_345, 0, u64::MAX] {
        pws.set_min_flop(flop);
        assert_eq!(pws.min_flop(), flop);
        assert_eq!(
            format!("{pws:?}"),
            format!("NetParWorkspace<_, 2> {{ min_flop: {flop} }}")
        );
    }
    assert_eq!(
        NetParWorkspace::<Reg, 3>::default().min_flop(),
        fusedprop::PAR_MIN_FLOP
    );
}
