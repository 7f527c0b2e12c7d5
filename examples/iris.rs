//! The reference program: the Keras backpropagation tutorial on Iris, in fusedprop.
//!
//! Dense(4 -> 32, ReLU) -> Dense(32 -> 3, softmax), sparse categorical cross-entropy, plain
//! SGD with learning rate 0.01, 1000 full-batch epochs on the 120 training rows (raw
//! features, the tutorial's exact 80/20 split), the loss printed every 100 epochs.
//!
//! ```text
//! cargo run --release --example iris [-- --epochs N --lr LR --seed S]
//! cargo run --release --example iris -- --batch-size 16 --shuffle --validation-split 0.2 \
//!     [--patience P] [--plot loss.svg]
//! ```
//!
//! With no flags it is the tutorial's program (full batch, `Mlp`, the packed-batch path).
//! Any of `--batch-size`, `--shuffle`, `--validation-split`, `--patience` or `--plot` trains
//! the same network as a `Network` through `Network::fit`, as Keras's `model.fit` would:
//! mini-batches (in order, or shuffled every epoch from the seed), the last
//! `--validation-split` of the training rows held out and evaluated every epoch (Keras takes
//! them before shuffling), early stopping on the validation loss (patience 20 by default
//! when there is validation data, restoring the best weights), Keras-like epoch lines, and
//! with `--plot` the training and validation loss curves drawn into an SVG file.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/data.rs"]
mod data;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::ops::ControlFlow;

use fusedprop::{
    Dense, EarlyStopping, FitConfig, FitData, FitWorkspace, Mlp, Monitor, Network, OptimizerState,
    PackedBatch, Relu, SIMD_LEVEL, Sgd, SoftmaxCrossEntropy, Workspace, chain,
};

struct Args {
    epochs: usize,
    lr: f32,
    seed: u64,
    batch_size: Option<usize>,
    shuffle: bool,
    validation_split: f32,
    patience: Option<usize>,
    min_delta: f32,
    plot: Option<String>,
}

impl Args {
    /// Whether any of the `fit` flags was given.
    fn wants_fit(&self) -> bool {
        self.batch_size.is_some()
            || self.shuffle
            || self.validation_split > 0.0
            || self.patience.is_some()
            || self.plot.is_some()
    }
}

const USAGE: &str = "usage: iris [--epochs N] [--lr LR] [--seed S] [--batch-size B] [--shuffle] \
[--validation-split F] [--patience P] [--min-delta D] [--plot FILE.svg]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        epochs: 1000,
        lr: 0.01,
        seed: 7,
        batch_size: None,
        shuffle: false,
        validation_split: 0.0,
        patience: None,
        min_delta: 1e-4,
        plot: None,
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
            "--batch-size" => {
                let b = value()?.parse().map_err(|e| format!("--batch-size: {e}"))?;
                args.batch_size = Some(b);
            }
            "--shuffle" => args.shuffle = true,
            "--validation-split" => {
                args.validation_split = value()?
                    .parse()
                    .map_err(|e| format!("--validation-split: {e}"))?;
            }
            "--patience" => {
                let p = value()?.parse().map_err(|e| format!("--patience: {e}"))?;
                args.patience = Some(p);
            }
            "--min-delta" => {
                args.min_delta = value()?.parse().map_err(|e| format!("--min-delta: {e}"))?;
            }
            "--plot" => args.plot = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    if args.batch_size == Some(0) || args.batch_size.is_some_and(|b| b > BATCH_CAPACITY) {
        return Err(format!("--batch-size must be in 1..={BATCH_CAPACITY}"));
    }
    if !(0.0..1.0).contains(&args.validation_split) {
        return Err("--validation-split must be in [0, 1)".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    cli::exit(run())
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let (train_x, train_y, test_x, test_y) = data::iris_split()?;
    if args.wants_fit() {
        return run_fit(&args, &train_x, &train_y, &test_x, &test_y);
    }
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

/// The largest batch `--batch-size` takes: the `FitWorkspace` below holds 8 blocks of 16.
const BATCH_CAPACITY: usize = 128;

type Layers = chain![Dense<4, 32, Relu>, Dense<32, 3>];

/// The `model.fit` way: `Network::fit` with mini-batches, validation and early stopping.
fn run_fit(
    args: &Args,
    train_x: &[[f32; 4]],
    train_y: &[u32],
    test_x: &[[f32; 4]],
    test_y: &[u32],
) -> Result<(), String> {
    // Keras's validation_split: the last rows, taken before any shuffling.
    let n_val = (train_x.len() as f32 * args.validation_split) as usize;
    let n_fit = train_x.len() - n_val;
    let (fx, vx) = train_x.split_at(n_fit);
    let (fy, vy) = train_y.split_at(n_fit);
    let batch = args.batch_size.unwrap_or(32);

    let mut net = Network::<Layers, SoftmaxCrossEntropy>::new(args.seed);
    let mut best = net.clone();
    let sgd = Sgd::new(args.lr).map_err(|e| e.to_string())?;
    let mut state = OptimizerState::new();
    let mut ws = Box::new(FitWorkspace::<Layers, SoftmaxCrossEntropy, 8>::ZERO);
    let mut order = vec![0; n_fit];
    let mut config = FitConfig::new(batch, args.epochs);
    if args.shuffle {
        config = config.shuffle(args.seed);
    }
    // Early stopping on the validation loss when there is validation data (patience 20 unless
    // given), on the training loss when only --patience asks for it.
    let patience = args.patience.or((n_val > 0).then_some(20));
    if let Some(p) = patience {
        let monitor = if n_val > 0 {
            Monitor::ValLoss
        } else {
            Monitor::Loss
        };
        config = config.early_stopping(
            EarlyStopping::new(monitor)
                .patience(p)
                .min_delta(args.min_delta)
                .restore_best_weights(true),
        );
    }
    println!("{net}");
    println!(
        "Training on {n_fit} samples, validating on {n_val}, testing on {}; SGD lr {}, batch {batch}{}, up to {} epochs, seed {}{}",
        test_x.len(),
        args.lr,
        if args.shuffle { ", shuffled" } else { "" },
        args.epochs,
        args.seed,
        patience.map_or(String::new(), |p| format!(
            ", early stopping (patience {p})"
        )),
    );

    let steps_per_epoch = config.batches_per_epoch(n_fit);
    let report_every = (args.epochs / 10).max(1);
    let mut curve: Vec<(usize, f32, Option<f32>)> = Vec::new();
    let mut data = FitData::new(fx, fy, &mut order).best(&mut best);
    if n_val > 0 {
        data = data.validation(vx, vy);
    }
    let start = Instant::now();
    let mut epoch_start = Instant::now();
    let summary = net
        .fit(data, &sgd, &mut state, &mut ws, &config, |log| {
            curve.push((log.epoch + 1, log.loss, log.val_loss));
            let e = log.epoch + 1;
            if e % report_every == 0 || e == 1 {
                let us = epoch_start.elapsed().as_secs_f64() * 1e6;
                let mut line = format!(
                    "Epoch {e}/{}\n{steps_per_epoch}/{steps_per_epoch} - {us:.0}us/epoch - loss: {:.4}",
                    log.epochs, log.loss
                );
                if let (Some(l), Some(a)) = (log.val_loss, log.val_accuracy) {
                    line += &format!(" - val_loss: {l:.4} - val_accuracy: {a:.4}");
                }
                println!("{line}");
            }
            epoch_start = Instant::now();
            ControlFlow::Continue(())
        })
        .map_err(|e| e.to_string())?;
    let trained = start.elapsed();
    if summary.stop == fusedprop::Stop::EarlyStopping {
        println!(
            "Epoch {}: early stopping (no improvement for {} epochs)",
            summary.epochs,
            patience.unwrap_or(0)
        );
    }
    if summary.restored
        && let (Some(b), Some(v)) = (summary.best_epoch, summary.best)
    {
        println!(
            "Restoring model weights from the end of the best epoch: {} (monitored value {v:.4})",
            b + 1
        );
    }
    let accuracy = net.accuracy(test_x, test_y).map_err(|e| e.to_string())?;
    println!("Test accuracy: {accuracy:.4}");
    println!(
        "Training time: {:.3} ms for {} epochs ({} steps)",
        trained.as_secs_f64() * 1e3,
        summary.epochs,
        state.steps()
    );
    if let Some(path) = &args.plot {
        let restored = summary
            .best_epoch
            .filter(|_| summary.restored)
            .map(|b| b + 1);
        plot_losses(path, &curve, restored).map_err(|e| format!("{path}: {e}"))?;
        println!("Loss curves written to {path}");
    }
    Ok(())
}

/// The training and validation loss per epoch, as two lines in an SVG file, and the epoch
/// whose weights early stopping restored, as a vertical line.
fn plot_losses(
    path: &str,
    curve: &[(usize, f32, Option<f32>)],
    restored: Option<usize>,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let last = curve.last().map_or(1, |c| c.0).max(2);
    let top = curve
        .iter()
        .flat_map(|c| [c.1, c.2.unwrap_or(0.0)])
        .fold(0.0f32, f32::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("Iris: loss per epoch", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(1..last, 0f32..top.max(1e-3))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            curve.iter().map(|c| (c.0, c.1)),
            BLUE.stroke_width(2),
        ))?
        .label("training loss")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    if curve.iter().any(|c| c.2.is_some()) {
        chart
            .draw_series(LineSeries::new(
                curve.iter().filter_map(|c| c.2.map(|v| (c.0, v))),
                RED.stroke_width(2),
            ))?
            .label("validation loss")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    if let Some(b) = restored {
        let green = RGBColor(0, 140, 60);
        chart
            .draw_series(LineSeries::new([(b, 0.0), (b, top)], green.stroke_width(1)))?
            .label(format!("best epoch {b} (weights restored)"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], green.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
