//! Handwritten digits (8x8 pixels, 1797 images, 10 classes) with a 64-128-10 MLP:
//! pixels scaled to `[0, 1]`, a seeded 80/20 split, seeded shuffled mini-batch SGD.
//!
//! ```text
//! cargo run --release --example digits [-- --epochs N --batch B --lr LR --seed S]
//! ```

#[path = "support/cli.rs"]
mod cli;
#[path = "support/data.rs"]
mod data;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use fusedprop::rng::{SplitMix64, shuffle};
use fusedprop::{Mlp, PackedBatch, SIMD_LEVEL, Sgd, Workspace};

struct Args {
    epochs: usize,
    batch: usize,
    lr: f32,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        epochs: 30,
        batch: 32,
        lr: 0.1,
        seed: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--epochs" => args.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--lr" => args.lr = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: digits [--epochs N] [--batch B] [--lr LR] [--seed S]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.epochs == 0 || args.batch == 0 || args.batch > 256 {
        return Err("--epochs must be at least 1, --batch in 1..=256".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    cli::exit(run())
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let (mut x, y) = data::read_csv::<64>(&data::data_dir().join("digits.csv"))?;
    for row in &mut x {
        for v in row.iter_mut() {
            *v /= 16.0;
        }
    }
    let mut rng = SplitMix64::new(args.seed);
    let mut order: Vec<usize> = (0..x.len()).collect();
    shuffle(&mut order, &mut rng);
    let n_test = x.len() / 5;
    let (test_idx, train_idx) = order.split_at(n_test);
    let pick = |idx: &[usize]| -> (Vec<[f32; 64]>, Vec<u32>) {
        (
            idx.iter().map(|&i| x[i]).collect(),
            idx.iter().map(|&i| y[i]).collect(),
        )
    };
    let (train_x, train_y) = pick(train_idx);
    let (test_x, test_y) = pick(test_idx);

    let mut model: Box<Mlp<64, 128, 10>> = Box::new(Mlp::ZERO);
    model.init_glorot(args.seed);
    let mut ws: Box<Workspace<64, 128, 10>> = Box::new(Workspace::ZERO);
    let sgd = Sgd::new(args.lr).map_err(|e| e.to_string())?;
    println!("{model}");
    println!(
        "Training on {} samples, testing on {}; SGD lr {}, batch {}, {} epochs, seed {}",
        train_x.len(),
        test_x.len(),
        args.lr,
        args.batch,
        args.epochs,
        args.seed
    );

    let mut trained = Duration::ZERO;
    let mut perm: Vec<usize> = (0..train_x.len()).collect();
    // Each mini-batch is gathered from the permutation straight into lanes (up to 16 * 16
    // = 256 samples), in a batch reused across steps.
    let mut batch: Box<PackedBatch<64, 16>> = Box::new(PackedBatch::ZERO);
    for epoch in 1..=args.epochs {
        // A seeded reshuffle each epoch (Fisher-Yates on SplitMix64).
        shuffle(&mut perm, &mut rng);
        let start = Instant::now();
        let mut total = 0.0f64;
        for idx in perm.chunks(args.batch) {
            batch
                .fill_indices(&train_x, &train_y, idx)
                .map_err(|e| format!("epoch {epoch}: {e}"))?;
            let loss = model
                .train_step_packed(&batch, &sgd, &mut ws)
                .map_err(|e| format!("epoch {epoch}: {e}"))?;
            total += f64::from(loss) * idx.len() as f64;
        }
        trained += start.elapsed();
        println!(
            "Epoch {epoch}/{}, Loss: {:.4}",
            args.epochs,
            total / train_x.len() as f64
        );
    }
    let accuracy = model
        .accuracy(&test_x, &test_y)
        .map_err(|e| e.to_string())?;
    println!("Test accuracy: {accuracy:.4}");
    let samples = (train_x.len() * args.epochs) as f64;
    println!(
        "Training time: {:.1} ms ({:.3e} samples/s)",
        trained.as_secs_f64() * 1e3,
        samples / trained.as_secs_f64()
    );
    println!("SIMD level: {SIMD_LEVEL}");
    if let Some(hint) = fusedprop::simd_hint() {
        println!("{hint}");
    }
    Ok(())
}
