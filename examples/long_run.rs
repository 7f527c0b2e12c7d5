//! A longer run with a Keras-like progress bar per epoch (`indicatif`): the handwritten digits
//! (1797 8x8 images) with a 64-512-256-10 ReLU network and Adam (its rate
//! falling along a cosine), trained through
//! `Network::fit` in shuffled mini-batches with 20% held out for validation and early stopping.
//! Each epoch draws
//!
//! ```text
//! Epoch 3/60
//! 36/36 [==============================] 52ms - loss: 0.1043 - val_loss: 0.1290 - val_accuracy: 0.9652
//! ```
//!
//! (on a terminal; piped, only the finished lines are printed).
//!
//! ```text
//! cargo run --release --example long_run [-- --epochs N --batch-size B --seed S]
//! ```

#[path = "support/cli.rs"]
mod cli;
#[path = "support/data.rs"]
mod data;

use std::cell::RefCell;
use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

use fusedprop::rng::{SplitMix64, shuffle};
use fusedprop::{
    Adam, BatchLog, Dense, EarlyStopping, FitConfig, FitData, FitWorkspace, Monitor, Network,
    OptimizerState, Relu, Schedule, SoftmaxCrossEntropy, chain,
};
use indicatif::{ProgressBar, ProgressStyle};

type Layers = chain![Dense<64, 512, Relu>, Dense<512, 256, Relu>, Dense<256, 10>];

/// Batches per epoch (the last partial one kept).
fn config_steps(n: usize, batch: usize) -> usize {
    FitConfig::new(batch, 1).batches_per_epoch(n)
}

fn main() -> ExitCode {
    cli::exit(run())
}

fn run() -> Result<(), String> {
    let cli::FitFlags {
        epochs,
        batch,
        seed,
        ..
    } = cli::FitFlags {
        epochs: 60,
        batch: 32,
        lr: None,
        seed: 7,
    }
    .parse("long_run")?;
    let (mut x, y) = data::read_csv::<64>(&data::data_dir().join("digits.csv"))?;
    for row in &mut x {
        for v in row.iter_mut() {
            *v /= 16.0;
        }
    }
    // A seeded 80/20 split into training and test rows, then Keras's validation_split=0.2.
    let mut idx: Vec<usize> = (0..x.len()).collect();
    shuffle(&mut idx, &mut SplitMix64::new(seed));
    let n_test = x.len() / 5;
    let pick = |ids: &[usize]| -> (Vec<[f32; 64]>, Vec<u32>) {
        (
            ids.iter().map(|&i| x[i]).collect(),
            ids.iter().map(|&i| y[i]).collect(),
        )
    };
    let (test_x, test_y) = pick(&idx[..n_test]);
    let (train_x, train_y) = pick(&idx[n_test..]);
    let n_fit = train_x.len() - train_x.len() / 5;
    let (fx, vx) = train_x.split_at(n_fit);
    let (fy, vy) = train_y.split_at(n_fit);

    let mut net: Box<Network<Layers, SoftmaxCrossEntropy>> = Box::new(Network::ZERO);
    net.init_glorot(seed);
    let mut best: Box<Network<Layers, SoftmaxCrossEntropy>> = Box::new(Network::ZERO);
    let adam = Adam::new(0.001).map_err(|e| e.to_string())?;
    let mut state = Box::new(OptimizerState::ZERO);
    let mut ws = Box::new(FitWorkspace::<Layers, SoftmaxCrossEntropy, 8>::ZERO);
    let mut order = vec![0; n_fit];
    // The learning rate falls along a cosine over the whole run (Keras's CosineDecay).
    let decay_steps = (config_steps(n_fit, batch) * epochs) as u64;
    let config = FitConfig::new(batch, epochs)
        .shuffle(seed)
        .schedule(Schedule::Cosine {
            decay_steps: decay_steps.max(1),
            alpha: 0.01,
        })
        .early_stopping(
            EarlyStopping::new(Monitor::ValLoss)
                .patience(15)
                .restore_best_weights(true),
        );
    println!("{net}");
    println!(
        "Train on {n_fit} samples, validate on {}, test on {}; Adam lr 0.001 with cosine decay, batch {batch}",
        vx.len(),
        test_x.len()
    );

    let steps = config.batches_per_epoch(n_fit) as u64;
    let style = ProgressStyle::with_template("{pos}/{len} [{bar:30}] {elapsed} - {msg}")
        .map_err(|e| e.to_string())?
        .progress_chars("=> ");
    let terminal = std::io::stderr().is_terminal();
    // The bar of the current epoch, shared by the batch and epoch callbacks.
    let bar: RefCell<Option<(ProgressBar, f64, usize)>> = RefCell::new(None);
    let mut on_batch = |b: &BatchLog| {
        let mut slot = bar.borrow_mut();
        if b.batch == 0 {
            if terminal {
                println!("Epoch {}/{epochs}", b.epoch + 1);
            }
            let pb = ProgressBar::new(steps).with_style(style.clone());
            *slot = Some((pb, 0.0, 0));
        }
        if let Some((pb, total, seen)) = slot.as_mut() {
            *total += f64::from(b.loss) * b.size as f64;
            *seen += b.size;
            pb.set_message(format!("loss: {:.4}", *total / *seen as f64));
            pb.inc(1);
        }
    };
    let start = Instant::now();
    let data = FitData::new(fx, fy, &mut order)
        .validation(vx, vy)
        .best(&mut best)
        .on_batch(&mut on_batch);
    let summary = net
        .fit(data, &adam, &mut state, &mut ws, &config, |log| {
            let msg = format!(
                "loss: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
                log.loss,
                log.val_loss.unwrap_or(f32::NAN),
                log.val_accuracy.unwrap_or(f32::NAN)
            );
            if let Some((pb, _, _)) = bar.borrow_mut().take() {
                if terminal {
                    pb.finish_with_message(msg);
                    // indicatif leaves the cursor at the end of a finished bar.
                    eprintln!();
                } else {
                    pb.finish_and_clear();
                    println!(
                        "Epoch {}/{}\n{steps}/{steps} - {:.0}ms - {msg}",
                        log.epoch + 1,
                        log.epochs,
                        pb.elapsed().as_secs_f64() * 1e3
                    );
                }
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    if summary.stop == fusedprop::Stop::EarlyStopping {
        println!("Epoch {}: early stopping", summary.epochs);
    }
    if let (true, Some(b)) = (summary.restored, summary.best_epoch) {
        println!(
            "Restoring model weights from the end of the best epoch: {}.",
            b + 1
        );
    }
    let accuracy = net.accuracy(&test_x, &test_y).map_err(|e| e.to_string())?;
    println!("Test accuracy: {accuracy:.4}");
    println!(
        "Training time: {:.2} s for {} epochs ({} steps)",
        elapsed.as_secs_f64(),
        summary.epochs,
        state.steps()
    );
    Ok(())
}
