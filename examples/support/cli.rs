//! What the examples share around their work: the exit status of `main`, and the flags of
//! the examples that train through `Network::fit`.
#![allow(dead_code, reason = "each example uses part of this module")]

use std::process::ExitCode;

/// `main`'s exit status for `run`'s result: success, or the error on stderr and failure.
pub fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The flags of a `fit` example: `--epochs N --batch-size B [--lr LR] --seed S`.
#[derive(Clone, Copy, Debug)]
pub struct FitFlags {
    /// Epochs to train at most.
    pub epochs: usize,
    /// Samples in a mini-batch.
    pub batch: usize,
    /// The learning rate, for examples that take `--lr` (`None`: the flag is not offered).
    pub lr: Option<f32>,
    /// The seed of the initial weights and of the shuffles.
    pub seed: u64,
}

impl FitFlags {
    /// Parses the command line of example `name` over these defaults; an unknown flag or a
    /// bad value is an error with the usage.
    pub fn parse(self, name: &str) -> Result<Self, String> {
        let mut f = self;
        let usage = if f.lr.is_some() {
            format!("usage: {name} [--epochs N] [--batch-size B] [--lr LR] [--seed S]")
        } else {
            format!("usage: {name} [--epochs N] [--batch-size B] [--seed S]")
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let v = it.next().ok_or(format!("{flag} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
            match flag.as_str() {
                "--epochs" => f.epochs = v.parse().map_err(|e| bad(&e))?,
                "--batch-size" => f.batch = v.parse().map_err(|e| bad(&e))?,
                "--lr" if f.lr.is_some() => f.lr = Some(v.parse().map_err(|e| bad(&e))?),
                "--seed" => f.seed = v.parse().map_err(|e| bad(&e))?,
                _ => return Err(usage),
            }
        }
        Ok(f)
    }
}
