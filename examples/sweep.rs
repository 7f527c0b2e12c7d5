//! 64 Iris models at once: a sweep over 8 learning rates and 8 seeds, each model trained by
//! `Network::fit` (mini-batches of 16, shuffled, 20% of the training rows for validation,
//! early stopping), spread over rayon's threads with `fit_par::fit_each`. Prints the best
//! models and the throughput against the same 64 models trained one after another (the
//! fastest of three interleaved rounds of each), and checks that both give every model bit
//! for bit the same weights. On a quiet 2-core machine expect close to 2x; other programs
//! competing for the cores take it below that.
//!
//! ```text
//! cargo run --release --features rayon --example sweep [-- --epochs N]
//! ```

#[path = "support/cli.rs"]
mod cli;
#[path = "support/data.rs"]
mod data;

use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

use fusedprop::fit_par::fit_each;
use fusedprop::{
    Adam, Dense, EarlyStopping, FitConfig, FitData, FitSummary, FitWorkspace, Monitor, Network,
    OptimizerState, Relu, SoftmaxCrossEntropy, chain,
};

type Layers = chain![Dense<4, 32, Relu>, Dense<32, 3>];
type Net = Network<Layers, SoftmaxCrossEntropy>;

/// One model of the sweep: its hyperparameters, its own network and buffers, its result.
struct Job {
    lr: f32,
    seed: u64,
    net: Net,
    best: Net,
    state: OptimizerState<Layers, Adam>,
    ws: FitWorkspace<Layers, SoftmaxCrossEntropy, 1>,
    order: Vec<usize>,
    summary: Option<FitSummary>,
    val_accuracy: f32,
}

fn jobs(n_fit: usize) -> Vec<Job> {
    let lrs = [0.0003, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1];
    let mut v = Vec::new();
    for &lr in &lrs {
        for seed in 0..8 {
            let net = Net::new(seed);
            v.push(Job {
                lr,
                seed,
                best: net.clone(),
                net,
                state: OptimizerState::new(),
                ws: FitWorkspace::new(),
                order: vec![0; n_fit],
                summary: None,
                val_accuracy: 0.0,
            });
        }
    }
    v
}

fn main() -> ExitCode {
    cli::exit(run())
}

fn run() -> Result<(), String> {
    let mut epochs = 300;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--epochs" => {
                epochs = it
                    .next()
                    .ok_or("--epochs needs a value")?
                    .parse()
                    .map_err(|e| format!("--epochs: {e}"))?;
            }
            _ => return Err("usage: sweep [--epochs N]".into()),
        }
    }
    let (x, y, _, _) = data::iris_split()?;
    let n_fit = x.len() * 4 / 5;
    let (fx, vx) = x.split_at(n_fit);
    let (fy, vy) = y.split_at(n_fit);
    let train = |job: &mut Job| -> Result<(), String> {
        let adam = Adam::new(job.lr).map_err(|e| e.to_string())?;
        let config = FitConfig::new(16, epochs).shuffle(job.seed).early_stopping(
            EarlyStopping::new(Monitor::ValLoss)
                .patience(30)
                .min_delta(1e-4)
                .restore_best_weights(true),
        );
        let data = FitData::new(fx, fy, &mut job.order)
            .validation(vx, vy)
            .best(&mut job.best);
        let s = job
            .net
            .fit(data, &adam, &mut job.state, &mut job.ws, &config, |_| {
                ControlFlow::Continue(())
            })
            .map_err(|e| e.to_string())?;
        job.summary = Some(s);
        job.val_accuracy = job.net.accuracy(vx, vy).map_err(|e| e.to_string())?;
        Ok(())
    };

    // One after another, then all at once on rayon's threads, three rounds interleaved (the
    // fastest of each kind counts: other programs share the machine), with rayon's pool
    // started before the clock.
    rayon::broadcast(|_| ());
    let (mut t_serial, mut t_par) = (f64::INFINITY, f64::INFINITY);
    let mut serial = Vec::new();
    let mut par = Vec::new();
    for _ in 0..3 {
        serial = jobs(n_fit);
        let t0 = Instant::now();
        for job in serial.iter_mut() {
            train(job)?;
        }
        t_serial = t_serial.min(t0.elapsed().as_secs_f64());
        par = jobs(n_fit);
        let t0 = Instant::now();
        fit_each(&mut par, |_, job| {
            // An error is recorded as a missing summary and reported below.
            let _ = train(job);
        });
        t_par = t_par.min(t0.elapsed().as_secs_f64());
    }
    for (a, b) in serial.iter().zip(&par) {
        if b.summary.is_none() {
            return Err(format!("lr {} seed {}: training failed", b.lr, b.seed));
        }
        if a.net != b.net || a.summary != b.summary {
            return Err(format!(
                "lr {} seed {}: the parallel result differs from the serial one",
                a.lr, a.seed
            ));
        }
    }

    let mut ranked: Vec<&Job> = par.iter().collect();
    ranked.sort_by(|a, b| {
        let la = a.summary.and_then(|s| s.best).unwrap_or(f32::INFINITY);
        let lb = b.summary.and_then(|s| s.best).unwrap_or(f32::INFINITY);
        la.total_cmp(&lb)
    });
    println!(
        "Sweep: {} Iris models (8 learning rates x 8 seeds), Adam, batch 16, shuffled, up to {epochs} epochs, early stopping on val_loss",
        par.len()
    );
    println!("Best models by validation loss:");
    for j in ranked.iter().take(5) {
        let s = j.summary.as_ref().expect("checked");
        println!(
            "  lr {:<7} seed {}: val_loss {:.4}, val_accuracy {:.4}, best epoch {} of {}",
            j.lr,
            j.seed,
            s.best.unwrap_or(f32::NAN),
            j.val_accuracy,
            s.best_epoch.map_or(0, |e| e + 1),
            s.epochs
        );
    }
    let best = ranked[0];
    println!("Best: lr {} seed {}", best.lr, best.seed);
    let steps: u64 = par.iter().map(|j| j.state.steps()).sum();
    println!(
        "Sequential: {:.1} ms ({:.0} models/s, {:.2e} steps/s; the fastest of 3 rounds)",
        t_serial * 1e3,
        par.len() as f64 / t_serial,
        steps as f64 / t_serial
    );
    println!(
        "Parallel on {} threads: {:.1} ms ({:.0} models/s, {:.2e} steps/s): {:.2}x the sequential loop; every model bit for bit the same",
        rayon::current_num_threads(),
        t_par * 1e3,
        par.len() as f64 / t_par,
        steps as f64 / t_par,
        t_serial / t_par
    );
    Ok(())
}
