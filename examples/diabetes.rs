//! Regression on the diabetes data (442 patients, 10 features, the disease progression one
//! year later, divided by 100): 10-32-16-1 (sigmoid, relu, linear) with mean squared error and
//! Adam, trained through `Network::fit` like Keras's
//! `model.fit(x, y, batch_size=32, epochs=..., shuffle=True, validation_split=0.2)`, with a
//! Keras-like line per epoch; then the test set's mean squared and absolute errors, next to
//! those of always predicting the training mean.
//!
//! ```text
//! cargo run --release --example diabetes [-- --epochs N --batch-size B --lr LR --seed S]
//! ```

#[path = "support/cli.rs"]
mod cli;
#[path = "support/data.rs"]
mod data;

use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

use fusedprop::{
    Adam, Dense, EarlyStopping, FitConfig, FitData, FitWorkspace, MeanSquaredError, Monitor,
    Network, OptimizerState, Relu, Sigmoid, chain,
};

type Layers = chain![Dense<10, 32, Sigmoid>, Dense<32, 16, Relu>, Dense<16, 1>];

/// Rows 0..353 of `data/diabetes.csv` are the training set, the rest the test set
/// (`data/README.md`).
const N_TRAIN: usize = 353;

/// The learning rate unless `--lr` says otherwise.
const LR: f32 = 0.01;

fn main() -> ExitCode {
    cli::exit(run())
}

fn run() -> Result<(), String> {
    let cli::FitFlags {
        epochs,
        batch,
        lr,
        seed,
        ..
    } = cli::FitFlags {
        epochs: 300,
        batch: 32,
        lr: Some(LR),
        seed: 7,
    }
    .parse("diabetes")?;
    let lr = lr.unwrap_or(LR);
    let (x, t) = data::read_table::<10>(&data::data_dir().join("diabetes.csv"))?;
    if x.len() <= N_TRAIN {
        return Err("data/diabetes.csv: too few rows".into());
    }
    let y: Vec<[f32; 1]> = t.iter().map(|&v| [v]).collect();
    let (train_x, test_x) = x.split_at(N_TRAIN);
    let (train_y, test_y) = y.split_at(N_TRAIN);
    // Keras's validation_split=0.2: the last rows of the training data, before shuffling.
    let n_fit = N_TRAIN - N_TRAIN / 5;
    let (fx, vx) = train_x.split_at(n_fit);
    let (fy, vy) = train_y.split_at(n_fit);

    let mut net = Network::<Layers, MeanSquaredError>::new(seed);
    let mut best = net.clone();
    let opt = Adam::new(lr).map_err(|e| e.to_string())?;
    let mut state = OptimizerState::new();
    let mut ws = Box::new(FitWorkspace::<Layers, MeanSquaredError, 4>::ZERO);
    let mut order = vec![0; n_fit];
    let config = FitConfig::new(batch, epochs).shuffle(seed).early_stopping(
        EarlyStopping::new(Monitor::ValLoss)
            .patience(30)
            .restore_best_weights(true),
    );
    println!("{net}");
    println!(
        "Train on {n_fit} samples, validate on {}; Adam lr {lr}, batch {batch}",
        vx.len()
    );
    let steps = config.batches_per_epoch(n_fit);
    let mut t0 = Instant::now();
    let data = FitData::new(fx, fy, &mut order)
        .validation(vx, vy)
        .best(&mut best);
    let summary = net
        .fit(data, &opt, &mut state, &mut ws, &config, |log| {
            println!(
                "Epoch {}/{}\n{steps}/{steps} - {:.0}us - loss: {:.4} - val_loss: {:.4}",
                log.epoch + 1,
                log.epochs,
                t0.elapsed().as_secs_f64() * 1e6,
                log.loss,
                log.val_loss.unwrap_or(f32::NAN)
            );
            t0 = Instant::now();
            ControlFlow::Continue(())
        })
        .map_err(|e| e.to_string())?;
    if summary.stop == fusedprop::Stop::EarlyStopping {
        println!("Epoch {}: early stopping", summary.epochs);
    }
    if let (true, Some(b)) = (summary.restored, summary.best_epoch) {
        println!(
            "Restoring model weights from the end of the best epoch: {}.",
            b + 1
        );
    }

    let mut pred = vec![[0.0f32]; test_x.len()];
    net.predict_proba(test_x, &mut pred)
        .map_err(|e| e.to_string())?;
    let mean = train_y.iter().map(|v| f64::from(v[0])).sum::<f64>() / N_TRAIN as f64;
    let (mut mse, mut mae, mut mse0) = (0.0f64, 0.0f64, 0.0f64);
    for (p, t) in pred.iter().zip(test_y) {
        let e = f64::from(p[0]) - f64::from(t[0]);
        mse += e * e;
        mae += e.abs();
        mse0 += (mean - f64::from(t[0])).powi(2);
    }
    let n = test_x.len() as f64;
    println!(
        "Test MSE: {:.4}, MAE: {:.4} (predicting the training mean: MSE {:.4})",
        mse / n,
        mae / n,
        mse0 / n
    );
    Ok(())
}
