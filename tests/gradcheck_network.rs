//! `gradcheck::check_network` on networks of every activation and head: the analytic
//! gradients of `Network::gradients` (f32) agree with central differences of the f64 loss
//! to the f32 accuracy the checker's docs state (relative 1e-3 above a floor of 1e-4).
#![cfg(feature = "std")]

use fusedprop::gradcheck::check_network;
use fusedprop::rng::SplitMix64;
use fusedprop::{
    BinaryCrossEntropy, Chain, Dense, Gelu, LeakyRelu, MeanSquaredError, Network, Sigmoid, Silu,
    SoftmaxCrossEntropy, Tanh, chain,
};

fn rows<const I: usize>(n: usize, seed: u64) -> Vec<[f32; I]> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| core::array::from_fn(|_| rng.uniform(1.5)))
        .collect()
}

#[test]
fn every_activation_and_head_passes_the_checker() {
    let x = rows::<5>(21, 1);

    let net = Network::<
        chain![Dense<5, 9, Tanh>, Dense<9, 4, Gelu>, Dense<4, 3>],
        SoftmaxCrossEntropy,
    >::new(3);
    let y: Vec<u32> = (0..21).map(|i| (i % 3) as u32).collect();
    let r = check_network(&net, &x, &y, 1e-5, 1e-4).unwrap();
    assert!(r.passed(1e-3), "tanh/gelu/CE: {r:?}");

    let net = Network::<
        chain![Dense<5, 8, Sigmoid>, Dense<8, 6, Silu>, Dense<6, 2>],
        MeanSquaredError,
    >::new(4);
    let t = rows::<2>(21, 2);
    let r = check_network(&net, &x, &t, 1e-5, 1e-4).unwrap();
    assert!(r.passed(1e-3), "sigmoid/silu/MSE: {r:?}");

    let mut net =
        Network::<Chain<Dense<5, 7, LeakyRelu>, Dense<7, 2>>, BinaryCrossEntropy>::from_layers(
            Chain(Dense::zero_with(LeakyRelu::new_const(0.2)), Dense::ZERO),
            BinaryCrossEntropy,
        );
    net.init_glorot(5);
    let t: Vec<[f32; 2]> = (0..21).map(|i| [(i % 2) as f32, 0.25]).collect();
    let r = check_network(&net, &x, &t, 1e-5, 1e-4).unwrap();
    assert!(r.passed(1e-3), "leaky/BCE: {r:?}");
}

#[test]
fn a_wrong_gradient_fails_the_checker() {
    // The checker is not vacuous: a network whose loss disagrees with its gradients (here,
    // the gradients of another network) fails.
    let x = rows::<5>(10, 3);
    let y: Vec<u32> = (0..10).map(|i| (i % 3) as u32).collect();
    type L = chain![Dense<5, 6, Tanh>, Dense<6, 3>];
    let a = Network::<L, SoftmaxCrossEntropy>::new(1);
    let r = check_network(&a, &x, &y, 1e-5, 1e-4).unwrap();
    assert!(r.passed(1e-3));
    let mut grads = fusedprop::NetGradients::<L>::ZERO;
    let mut ws = fusedprop::NetWorkspace::<L>::ZERO;
    let b = Network::<L, SoftmaxCrossEntropy>::new(2);
    b.gradients(&x, &y, &mut grads, &mut ws).unwrap();
    let mut g = vec![0.0; 57];
    grads.write_flat(&mut g).unwrap();
    let mut p = vec![0.0; 57];
    a.write_params(&mut p).unwrap();
    let r = fusedprop::gradcheck::check_gradients(&mut p, &g, 1e-5, 1e-4, |q| {
        let mut n = a.clone();
        let q32: Vec<f32> = q.to_vec();
        n.read_params(&q32).unwrap();
        f64::from(n.loss(&x, &y).unwrap())
    })
    .unwrap();
    assert!(!r.passed(1e-2), "{r:?}");
}
