//! `Network::fit` on arbitrary data, batch sizes, epochs, orders, schedules (valid or not),
//! early-stopping settings, validation data and permutation buffers.
//!
//! Invariants:
//! - no panic;
//! - an error found before the first step (`epoch == None`) leaves the weights and the
//!   optimizer state bit for bit unchanged;
//! - an error during training leaves the weights and the optimizer state bit for bit as they
//!   were after the last step `fit` reported (before the first step, if none was);
//! - `Ok` leaves finite weights, at most the epochs asked for, and a permutation of the
//!   training samples in the order buffer.
#![no_main]

use std::ops::ControlFlow;

use arbitrary::Unstructured;
use fusedprop::{
    Adam, BatchLog, Dense, EarlyStopping, FitConfig, FitData, FitWorkspace, Head, Layer,
    MeanSquaredError, Monitor, Network, OptimizerState, Relu, Schedule, Sgd, SoftmaxCrossEntropy,
    Tanh, chain, network::Target,
};
use fusedprop_fuzz::*;
use libfuzzer_sys::fuzz_target;

type Clf = chain![Dense<3, 8, Tanh>, Dense<8, 3>];
type Reg = chain![Dense<2, 8, Relu>, Dense<8, 1>];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = if u.arbitrary::<bool>().unwrap_or(false) {
        let net = Network::<Reg, MeanSquaredError>::new(u.arbitrary().unwrap_or(0));
        run(&mut u, net, |u, n| batch::<1>(u, n, any_f32))
    } else {
        let net = Network::<Clf, SoftmaxCrossEntropy>::new(u.arbitrary().unwrap_or(0));
        run(&mut u, net, |u, n| labels(u, n, 3))
    };
});

fn params<L: Layer, H: Head<L::Out>>(net: &Network<L, H>) -> Vec<u32> {
    let mut p = vec![0.0; L::PARAMS];
    net.write_params(&mut p).expect("PARAMS values");
    bits(&p)
}

fn schedule(u: &mut Unstructured) -> arbitrary::Result<Schedule> {
    Ok(match u.arbitrary::<u8>()? % 4 {
        0 => Schedule::Constant,
        1 => Schedule::Step {
            every_epochs: usize::from(u.arbitrary::<u8>()?) % 4,
            factor: learning_rate(u)?,
        },
        2 => Schedule::Exponential {
            decay_steps: u64::from(u.arbitrary::<u8>()?) % 8,
            decay_rate: learning_rate(u)? * 4.0,
            staircase: u.arbitrary()?,
        },
        _ => Schedule::Cosine {
            decay_steps: u64::from(u.arbitrary::<u8>()?) % 16,
            alpha: f32::from(u.arbitrary::<i8>()?) / 64.0,
        },
    })
}

fn run<L: Layer, H: Head<L::Out>>(
    u: &mut Unstructured,
    net: Network<L, H>,
    targets: fn(&mut Unstructured, usize) -> arbitrary::Result<Vec<Target<L, H>>>,
) -> arbitrary::Result<()> {
    let n = usize::from(u.arbitrary::<u8>()?) % 100;
    let x = rows_of::<L>(u, n)?;
    let ny = maybe_mismatch(u, n)?;
    let y = targets(u, ny)?;
    let nv = usize::from(u.arbitrary::<u8>()?) % 20;
    let vx = rows_of::<L>(u, nv)?;
    let vy = targets(u, nv)?;
    let lr = learning_rate(u)?;
    if u.arbitrary::<bool>()? {
        match Sgd::new(lr) {
            Ok(opt) => fit_with(u, net, &x, &y, &vx, &vy, &opt),
            Err(_) => Ok(()),
        }
    } else {
        match Adam::new(lr) {
            Ok(opt) => fit_with(u, net, &x, &y, &vx, &vy, &opt),
            Err(_) => Ok(()),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fit_with<L: Layer, H: Head<L::Out>, P: fusedprop::Optimizer>(
    u: &mut Unstructured,
    mut net: Network<L, H>,
    x: &[fusedprop::network::InRow<L>],
    y: &[Target<L, H>],
    vx: &[fusedprop::network::InRow<L>],
    vy: &[Target<L, H>],
    opt: &P,
) -> arbitrary::Result<()> {
    let batch_size = usize::from(u.arbitrary::<u8>()?) % 40;
    let epochs = usize::from(u.arbitrary::<u8>()?) % 4;
    let mut config = FitConfig::new(batch_size, epochs)
        .drop_last(u.arbitrary()?)
        .schedule(schedule(u)?);
    let shuffle = if u.arbitrary()? {
        fusedprop::Shuffle::Seed(u.arbitrary()?)
    } else {
        fusedprop::Shuffle::None
    };
    config = config.order(shuffle);
    if u.arbitrary()? {
        let monitor = match u.arbitrary::<u8>()? % 3 {
            0 => Monitor::Loss,
            1 => Monitor::ValLoss,
            _ => Monitor::ValAccuracy,
        };
        config = config.early_stopping(
            EarlyStopping::new(monitor)
                .patience(usize::from(u.arbitrary::<u8>()?) % 3)
                .min_delta(f32::from(u.arbitrary::<i8>()?) / 128.0)
                .restore_best_weights(u.arbitrary()?),
        );
    }
    let with_val = u.arbitrary::<bool>()?;
    let with_best = u.arbitrary::<bool>()?;
    let order_len = maybe_mismatch(u, x.len())?;

    let start = net.clone();
    let mut best = net.clone();
    let mut state = OptimizerState::<L, P>::new();
    // Two blocks: batches of up to 32 (a larger batch size must be refused).
    let mut ws = Box::new(FitWorkspace::<L, H, 2>::ZERO);
    let mut order = vec![0usize; order_len];
    let mut logs: Vec<BatchLog> = Vec::new();
    let mut rec = |b: &BatchLog| logs.push(*b);
    let mut data = FitData::new(x, y, &mut order).on_batch(&mut rec);
    if with_val {
        data = data.validation(vx, vy);
    }
    if with_best {
        data = data.best(&mut best);
    }
    let result = net.fit(data, opt, &mut state, &mut ws, &config, |_| {
        ControlFlow::Continue(())
    });
    assert_eq!(state.steps(), logs.len() as u64);
    let restored = match result {
        Ok(s) => {
            assert!(s.epochs <= epochs);
            assert!(net.check_weights().is_ok(), "fit left a non-finite weight");
            if s.epochs > 0 {
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert!(sorted.iter().enumerate().all(|(i, &v)| i == v));
            }
            s.restored
        }
        Err(e) => {
            if e.epoch.is_none() {
                assert!(logs.is_empty());
                assert_eq!(params(&net), params(&start), "{e}: changed the network");
                return Ok(());
            }
            false
        }
    };
    if restored {
        return Ok(());
    }
    // Replay the reported steps by hand: train_step on the slices of each epoch's order with
    // the reported learning rates gives the same weights bit for bit (so a refused step
    // changed nothing).
    let mut twin = start;
    let mut st = OptimizerState::<L, P>::new();
    let mut nws = fusedprop::NetWorkspace::<L>::new();
    let mut perm = vec![0usize; x.len()];
    let mut epoch_done = usize::MAX;
    for b in &logs {
        if b.epoch != epoch_done {
            fusedprop::fit::epoch_order(&mut perm, shuffle, b.epoch, None);
            epoch_done = b.epoch;
        }
        let bs = config.batch_size();
        let idx = &perm[b.batch * bs..(b.batch * bs + b.size)];
        let bx: Vec<_> = idx.iter().map(|&i| x[i]).collect();
        let by: Vec<_> = idx.iter().map(|&i| y[i]).collect();
        let o = opt
            .with_learning_rate(b.learning_rate)
            .expect("a rate fit used");
        let l = twin
            .train_step(&bx, &by, &o, &mut st, &mut nws)
            .expect("a step fit took");
        assert_eq!(l.to_bits(), b.loss.to_bits());
    }
    assert_eq!(params(&twin), params(&net), "fit differs from its steps");
    Ok(())
}
