//! Binary classification on the Wisconsin breast-cancer data (569 tumours, 30 standardized
//! features, benign or malignant): 30-16-1 (relu, then a sigmoid inside the loss) with binary
//! cross-entropy and AdamW, trained through `Network::fit` like Keras's
//! `model.fit(x, y, batch_size=32, epochs=..., shuffle=True, validation_split=0.2,
//! callbacks=[EarlyStopping(patience=10, restore_best_weights=True)])`, with a Keras-like line
//! per epoch; then the test accuracy.
//!
//! ```text
//! cargo run --release --example cancer [-- --epochs N --batch-size B --lr LR --seed S]
//! ```

#[path = "support/cli.rs"]
mod cli;
#[path = "support/data.rs"]
mod data;

use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

use fusedprop::{
    Adam, BinaryCrossEntropy, Dense, EarlyStopping, FitConfig, FitData, FitWorkspace, Monitor,
    Network, OptimizerState, Relu, chain,
};

type Layers = chain![Dense<30, 16, Relu>, Dense<16, 1>];

/// Rows 0..455 of `data/breast_cancer.csv` are the training set, the rest the test set
/// (`data/README.md`).
const N_TRAIN: usize = 455;

/// The learning rate unless `--lr` says otherwise.
const LR: f32 = 0.002;

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
        epochs: 50,
        batch: 32,
        lr: Some(LR),
        seed: 7,
    }
    .parse("cancer")?;
    let lr = lr.unwrap_or(LR);
    let (x, labels) = data::read_csv::<30>(&data::data_dir().join("breast_cancer.csv"))?;
    if x.len() <= N_TRAIN {
        return Err("data/breast_cancer.csv: too few rows".into());
    }
    let y: Vec<[f32; 1]> = labels.iter().map(|&l| [l as f32]).collect();
    let (train_x, test_x) = x.split_at(N_TRAIN);
    let (train_y, _) = y.split_at(N_TRAIN);
    let test_labels = &labels[N_TRAIN..];
    // Keras's validation_split=0.2: the last rows of the training data, before shuffling.
    let n_fit = N_TRAIN - N_TRAIN / 5;
    let (fx, vx) = train_x.split_at(n_fit);
    let (fy, vy) = train_y.split_at(n_fit);

    let mut net = Network::<Layers, BinaryCrossEntropy>::new(seed);
    let mut best = net.clone();
    let opt = Adam::adamw(lr, 0.01).map_err(|e| e.to_string())?;
    let mut state = OptimizerState::new();
    let mut ws = Box::new(FitWorkspace::<Layers, BinaryCrossEntropy, 4>::ZERO);
    let mut order = vec![0; n_fit];
    let config = FitConfig::new(batch, epochs).shuffle(seed).early_stopping(
        EarlyStopping::new(Monitor::ValLoss)
            .patience(10)
            .restore_best_weights(true),
    );
    println!("{net}");
    println!(
        "Train on {n_fit} samples, validate on {}; AdamW lr {lr}, weight decay 0.01, batch {batch}",
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
                "Epoch {}/{}\n{steps}/{steps} - {:.0}us - loss: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
                log.epoch + 1,
                log.epochs,
                t0.elapsed().as_secs_f64() * 1e6,
                log.loss,
                log.val_loss.unwrap_or(f32::NAN),
                log.val_accuracy.unwrap_or(f32::NAN)
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
    let accuracy = net
        .accuracy(test_x, test_labels)
        .map_err(|e| e.to_string())?;
    println!("Test accuracy: {accuracy:.4}");
    Ok(())
}
