//! The reference program: the Keras backpropagation tutorial on Iris, in fusedprop.
//!
//! Dense(4 -> 32, ReLU) -> Dense(32 -> 3, softmax), sparse categorical cross-entropy, plain
//! SGD with learning rate 0.01, 1000 full-batch epochs on the 120 training rows (raw
//! features, the tutorial's exact 80/20 split), the loss printed every 100 epochs.
//!
//! ```text
//! cargo run --release --example iris [-- --epochs N --lr LR --seed S]
//! ```

#[path = "support/data.rs"]
mod data;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use fusedprop::{Mlp, PackedBatch, SIMD_LEVEL, Sgd, Workspace};

struct Args {
    epochs: usize,
    lr: f32,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        epochs: 1000,
        lr: 0.01,
        seed: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--epochs" => {
                args.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?;
            }
            "--lr" => args.lr = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: iris [--epochs N] [--lr LR] [--seed S]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let (train_x, train_y, test_x, test_y) = data::iris_split()?;
    let sgd = Sgd::new(args.lr).map_err(|e| e.to_string())?;

    let mut model = Mlp::<4, 32, 3>::new(args.seed);
    let mut ws = Workspace::new();
    // The full batch never changes: transpose it into lanes and validate it once
    // (8 blocks of 16 samples hold the 120 training rows).
    let batch = PackedBatch::<4, 8>::from_rows(&train_x, &train_y).map_err(|e| e.to_string())?;
    println!("{model}");
    println!(
        "Training on {} samples, testing on {}; SGD lr {}, {} full-batch epochs, seed {}",
        train_x.len(),
        test_x.len(),
        args.lr,
        args.epochs,
        args.seed
    );

    // Time the training steps only: printing happens between timed stretches.
    let report_every = 100.min(args.epochs);
    let mut trained = Duration::ZERO;
    let mut epoch = 0;
    while epoch < args.epochs {
        let stretch = report_every.min(args.epochs - epoch);
        let start = Instant::now();
        let mut loss = 0.0;
        for _ in 0..stretch {
            loss = model
                .train_step_packed(&batch, &sgd, &mut ws)
                .map_err(|e| format!("epoch {}: {e}", epoch + 1))?;
            epoch += 1;
        }
        trained += start.elapsed();
        // `loss` is the loss of the last epoch of the stretch, computed before its update,
        // as Keras reports it.
        println!("Epoch {epoch}/{}, Loss: {loss:.4}", args.epochs);
    }

    let accuracy = model
        .accuracy(&test_x, &test_y)
        .map_err(|e| e.to_string())?;
    println!("Test accuracy: {accuracy:.4}");
    let per_epoch = trained.as_secs_f64() / args.epochs as f64;
    println!(
        "Training time: {:.3} ms for {} epochs ({:.2} us an epoch; TensorFlow eager: about 5.6 ms an epoch)",
        trained.as_secs_f64() * 1e3,
        args.epochs,
        per_epoch * 1e6
    );
    println!("SIMD level: {SIMD_LEVEL}");
    if let Some(hint) = fusedprop::simd_hint() {
        println!("{hint}");
    }
    Ok(())
}
