//! Many models at once (`fit_par::fit_each`): each result is bit for bit the model trained
//! alone, on one thread or two (local rayon pools).

use core::ops::ControlFlow;

use fusedprop::fit_par::fit_each;
use fusedprop::rng::SplitMix64;
use fusedprop::{
    Adam, Dense, EarlyStopping, FitConfig, FitData, FitSummary, FitWorkspace, Monitor, Network,
    OptimizerState, Relu, SoftmaxCrossEntropy, chain,
};

type L = chain![Dense<4, 16, Relu>, Dense<16, 3>];

struct Job {
    lr: f32,
    seed: u64,
    net: Network<L, SoftmaxCrossEntropy>,
    state: OptimizerState<L, Adam>,
    summary: Option<FitSummary>,
}

fn data() -> (Vec<[f32; 4]>, Vec<u32>) {
    let mut r = SplitMix64::new(21);
    let x: Vec<[f32; 4]> = (0..130)
        .map(|_| {
            [
                r.uniform(1.0),
                r.uniform(1.0),
                r.uniform(1.0),
                r.uniform(1.0),
            ]
        })
        .collect();
    let y = x
        .iter()
        .map(|v| u32::from(v[0] > v[1]) + u32::from(v[2] > 0.3))
        .collect();
    (x, y)
}

fn jobs() -> Vec<Job> {
    let mut v = Vec::new();
    for lr in [0.003, 0.01, 0.03] {
        for seed in 0..4 {
            v.push(Job {
                lr,
                seed,
                net: Network::new(seed),
                state: OptimizerState::new(),
                summary: None,
            });
        }
    }
    v
}

fn train(job: &mut Job, x: &[[f32; 4]], y: &[u32]) {
    let (tx, ty, vx, vy) = (&x[..100], &y[..100], &x[100..], &y[100..]);
    let mut best = job.net.clone();
    let mut ws = Box::new(FitWorkspace::<L, SoftmaxCrossEntropy, 2>::ZERO);
    let mut order = vec![0; tx.len()];
    let config = FitConfig::new(20, 40).shuffle(job.seed).early_stopping(
        EarlyStopping::new(Monitor::ValLoss)
            .patience(5)
            .restore_best_weights(true),
    );
    let data = FitData::new(tx, ty, &mut order)
        .validation(vx, vy)
        .best(&mut best);
    let adam = Adam::new(job.lr).unwrap();
    job.summary = Some(
        job.net
            .fit(data, &adam, &mut job.state, &mut ws, &config, |_| {
                ControlFlow::Continue(())
            })
            .unwrap(),
    );
}

#[test]
fn each_model_as_if_trained_alone() {
    let (x, y) = data();
    let mut alone = jobs();
    for j in alone.iter_mut() {
        train(j, &x, &y);
    }
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut par = jobs();
        pool.install(|| fit_each(&mut par, |_, j| train(j, &x, &y)));
        for (a, p) in alone.iter().zip(&par) {
            assert!(
                a.net == p.net,
                "{threads} threads: lr {} seed {}",
                a.lr,
                a.seed
            );
            assert!(a.state == p.state);
            assert_eq!(a.summary, p.summary);
        }
    }
}
