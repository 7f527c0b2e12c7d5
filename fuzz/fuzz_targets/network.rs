//! `Network` of any depth, every activation, every head and every optimizer, on arbitrary
//! weights, inputs, targets, batch lengths and hyperparameters.
//!
//! Invariants:
//! - no panic, in training, inference, `read_params` and `read_keras`;
//! - the optimizers' constructors are `Ok` exactly for valid hyperparameters;
//! - `read_params` and `read_keras` are `Ok` exactly for finite values of the right count and
//!   sizes, and on `Err` leave the network bit for bit unchanged;
//! - every `Err` of `train_step` leaves the weights *and the optimizer state* bit for bit
//!   unchanged (and the step count);
//! - an `Ok` step returns a finite loss, bit-identical to `loss` on the network before the
//!   step, and leaves only finite weights and a finite optimizer state;
//! - padded lanes of a partial block never matter: with moderate data and extreme weights, a
//!   batch of one sample is accepted by `loss` exactly when the same sample repeated sixteen
//!   times is, with the same loss;
//! - with moderate data (finite, `|v| <= 8`, targets in range, sensible hyperparameters) a
//!   step from Glorot weights is never refused.
#![no_main]

use arbitrary::Unstructured;
use fusedprop::{
    Adam, BinaryCrossEntropy, Dense, Error, Gelu, Head, Layer, LeakyRelu, MeanSquaredError,
    Momentum, NetWorkspace, Network, Optimizer, OptimizerState, Relu, Sgd, Sigmoid, Silu,
    SoftmaxCrossEntropy, Tanh, chain, network::Target,
};
use fusedprop_fuzz::*;
use libfuzzer_sys::fuzz_target;

type Deep = chain![Dense<5, 9, Tanh>, Dense<9, 17, Relu>, Dense<17, 4, Gelu>, Dense<4, 3>];
type Wide = chain![Dense<18, 8, Silu>, Dense<8, 2>];
type Reg = chain![Dense<3, 16, Sigmoid>, Dense<16, 2>];
type Leaky = chain![Dense<4, 8, LeakyRelu>, Dense<8, 1>];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.arbitrary::<u8>().unwrap_or(0) % 4 {
        0 => {
            let net = Network::<Deep, SoftmaxCrossEntropy>::new(u.arbitrary().unwrap_or(0));
            run(&mut u, net, |u, n| labels(u, n, 3))
        }
        1 => {
            let net = Network::<Wide, SoftmaxCrossEntropy>::new(u.arbitrary().unwrap_or(0));
            run(&mut u, net, |u, n| labels(u, n, 2))
        }
        2 => {
            let net = Network::<Reg, MeanSquaredError>::new(u.arbitrary().unwrap_or(0));
            run(&mut u, net, |u, n| batch::<2>(u, n, any_f32))
        }
        _ => {
            let leaky = Dense::zero_with(LeakyRelu::new_const(0.2));
            let mut net = Network::<Leaky, BinaryCrossEntropy>::from_layers(
                fusedprop::Chain(leaky, Dense::ZERO),
                BinaryCrossEntropy,
            );
            net.init_glorot(u.arbitrary().unwrap_or(0));
            run(&mut u, net, |u, n| {
                let r = batch::<1>(u, n, moderate)?;
                // Mostly valid probabilities, sometimes out of [0, 1].
                Ok(r.into_iter().map(|[v]| [v.abs() / 8.0 * 1.5]).collect())
            })
        }
    };
});

fn params<L: Layer, H: Head<L::Out>>(net: &Network<L, H>) -> Vec<u32> {
    let mut p = vec![0.0; L::PARAMS];
    net.write_params(&mut p).expect("PARAMS values");
    bits(&p)
}

fn state<L: Layer, P: Optimizer>(s: &OptimizerState<L, P>) -> Vec<u32> {
    let mut v = Vec::new();
    s.visit(|x| v.extend_from_slice(&bits(x)));
    v.push(s.steps() as u32);
    v
}

fn run<L: Layer, H: Head<L::Out>>(
    u: &mut Unstructured,
    mut net: Network<L, H>,
    targets: impl Fn(&mut Unstructured, usize) -> arbitrary::Result<Vec<Target<L, H>>>,
) -> arbitrary::Result<()> {
    // Weights: Glorot, or arbitrary (possibly non-finite), or extreme finite.
    let mode: u8 = u.arbitrary()?;
    let mut extreme = false;
    if mode % 4 != 0 {
        let generate = match mode % 4 {
            1 => any_f32,
            2 => finite_f32,
            _ => moderate,
        };
        extreme = mode % 4 == 2;
        let p: Vec<f32> = (0..L::PARAMS)
            .map(|_| generate(u))
            .collect::<arbitrary::Result<_>>()?;
        let before = params(&net);
        match net.read_params(&p) {
            Ok(()) => assert_eq!(params(&net), bits(&p), "read_params round trip"),
            Err(e) => {
                assert!(
                    matches!(e, Error::NonFinite { what: "weight", .. }),
                    "{e:?}"
                );
                assert!(p.iter().any(|v| !v.is_finite()));
                assert_eq!(params(&net), before, "read_params Err changed the network");
            }
        }
    }
    // Keras tensors of wrong sizes are refused without a change.
    if u.arbitrary::<u8>()? % 16 == 15 {
        let t: Vec<f32> = (0..usize::from(u.arbitrary::<u8>()?))
            .map(|i| i as f32)
            .collect();
        let tensors: Vec<&[f32]> = (0..2 * L::DEPTH).map(|_| &t[..]).collect();
        let before = params(&net);
        if net.read_keras(&tensors).is_err() {
            assert_eq!(params(&net), before, "read_keras Err changed the network");
        }
    }
    let n = batch_len(u)?;
    let x: Vec<_> = batch_rows::<L>(u, n)?;
    let ny = maybe_mismatch(u, n)?;
    let y = targets(u, ny)?;

    // Inference never panics; its errors are the documented ones.
    let mut out = vec![fusedprop::network::zero_output::<L>(); x.len()];
    if let Err(e) = net.predict_proba(&x, &mut out) {
        assert!(matches!(e, Error::NonFinite { .. }), "{e:?}");
    }
    let loss_before = net.loss(&x, &y);

    // Padding: one sample against the same sample sixteen times.
    if extreme && !x.is_empty() && !y.is_empty() {
        let one = net.loss(&x[..1], &y[..1]);
        let sixteen = net.loss(&vec![x[0]; 16], &vec![y[0]; 16]);
        match (one, sixteen) {
            (Ok(a), Ok(b)) => assert!(a.is_finite() && b.is_finite()),
            // The same target refused in both, or the one sample itself refused.
            (Err(a), Err(b)) if a == b => {}
            (Err(Error::NonFinite { index: Some(0), .. }), Err(_)) => {}
            (a, b) => {
                // Sixteen equal samples can overflow a sum that one does not.
                assert!(
                    a.is_ok() && matches!(b, Err(Error::NonFinite { index: None, .. })),
                    "one sample {a:?}, sixteen {b:?}"
                );
            }
        }
    }

    let opt_kind: u8 = u.arbitrary()?;
    let lr = learning_rate(u)?;
    let extra = u.arbitrary::<u8>()?;
    // Targets in range and moderate (regression targets may be any finite value, and a
    // target of 1e19 rightly overflows Adam's second moment): `loss` accepted the batch
    // with a moderate loss.
    let moderate_data = mode % 4 == 0
        && loss_before.is_ok_and(|l| l < 1e4)
        && lr.is_finite()
        && lr > 0.0
        && lr <= 1.0
        && x.iter()
            .all(|r| all_within(r.as_ref().iter().copied(), 8.0));
    match opt_kind % 4 {
        0 => match Sgd::new(lr) {
            Ok(o) => step(u, &mut net, &x, &y, &o, loss_before, moderate_data),
            Err(e) => assert!(!(lr.is_finite() && lr > 0.0), "{e:?}"),
        },
        1 => {
            let mu = f32::from(extra) / 200.0;
            match Momentum::nesterov(lr, mu) {
                Ok(o) => step(u, &mut net, &x, &y, &o, loss_before, moderate_data),
                Err(_) => assert!(!(lr.is_finite() && lr > 0.0 && mu < 1.0)),
            }
        }
        2 => match Adam::new(lr) {
            Ok(o) => step(u, &mut net, &x, &y, &o, loss_before, moderate_data),
            Err(_) => assert!(!(lr.is_finite() && lr > 0.0)),
        },
        _ => {
            let wd = f32::from(extra) / 100.0;
            match Adam::adamw(lr, wd) {
                Ok(o) => step(u, &mut net, &x, &y, &o, loss_before, moderate_data),
                Err(_) => {
                    assert!(!(lr.is_finite() && lr > 0.0 && f64::from(wd) * f64::from(lr) < 1.0))
                }
            }
        }
    }
    Ok(())
}

fn batch_rows<L: Layer>(
    u: &mut Unstructured,
    n: usize,
) -> arbitrary::Result<Vec<fusedprop::network::InRow<L>>> {
    fusedprop_fuzz::rows_of::<L>(u, n)
}

fn step<L: Layer, H: Head<L::Out>, P: Optimizer>(
    u: &mut Unstructured,
    net: &mut Network<L, H>,
    x: &[fusedprop::network::InRow<L>],
    y: &[Target<L, H>],
    opt: &P,
    loss_before: Result<f32, Error>,
    moderate_data: bool,
) {
    let mut st = OptimizerState::<L, P>::new();
    let mut ws = NetWorkspace::<L>::new();
    // A few steps, so that momentum and moments are non-zero when a step is refused.
    let steps = 1 + u.arbitrary::<u8>().unwrap_or(0) % 3;
    let mut expect = loss_before;
    for k in 0..steps {
        let (p0, s0) = (params(net), state(&st));
        match net.train_step(x, y, opt, &mut st, &mut ws) {
            Ok(l) => {
                assert!(l.is_finite());
                assert_eq!(
                    expect.map(f32::to_bits),
                    Ok(l.to_bits()),
                    "loss() != step loss"
                );
                let mut p = vec![0.0; L::PARAMS];
                net.write_params(&mut p).unwrap();
                assert!(
                    p.iter().all(|v| v.is_finite()),
                    "non-finite weight after Ok"
                );
                st.visit(|s| assert!(s.iter().all(|v| v.is_finite()), "non-finite state"));
            }
            Err(e) => {
                assert_eq!(params(net), p0, "refused step changed the weights: {e:?}");
                assert_eq!(state(&st), s0, "refused step changed the state: {e:?}");
                assert!(
                    // Only the first step: with a learning rate up to 1, later steps may
                    // rightly diverge.
                    !(moderate_data && k == 0)
                        || !matches!(e, Error::UpdateOverflow | Error::NonFinite { .. }),
                    "moderate data refused: {e:?}"
                );
                return;
            }
        }
        expect = net.loss(x, y);
    }
}
