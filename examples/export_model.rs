//! Train on the desktop, write the model as Rust source: the first step of deploying to a
//! microcontroller (README, "Deploy to a microcontroller").
//!
//! Trains Dense(4 -> 16, tanh) -> Dense(16 -> 8, relu) -> Dense(8 -> 3) on the Iris training
//! rows (Adam, learning rate 0.01, 300 full-batch steps), prints its test accuracy, and writes
//! it as `pub static MODEL: Network<...> = ...;` to the file given (default
//! `target/iris_model.rs`), which a `no_std` firmware `include!`s. With `--from FILE` it
//! reads a PyTorch `state_dict` of the same `nn.Sequential` instead of training (feature
//! `safetensors`).
//!
//! ```text
//! cargo run --release --example export_model [-- OUT.rs] [--from model.safetensors]
//! ```

#[path = "support/cli.rs"]
mod cli;
#[path = "support/data.rs"]
mod data;

use std::process::ExitCode;

use fusedprop::{
    Adam, Dense, NetWorkspace, Network, OptimizerState, Relu, SoftmaxCrossEntropy, Tanh, chain,
};

type Iris =
    Network<chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>], SoftmaxCrossEntropy>;

fn main() -> ExitCode {
    cli::exit(run())
}

fn run() -> Result<(), String> {
    let mut out = String::from("target/iris_model.rs");
    let mut from = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--from" => from = Some(args.next().ok_or("--from needs a file")?),
            "-h" | "--help" => {
                return Err("usage: export_model [OUT.rs] [--from model.safetensors]".into());
            }
            _ => out = a,
        }
    }
    let (train_x, train_y, test_x, test_y) = data::iris_split()?;
    let net = match from {
        Some(path) => load(&path)?,
        None => {
            let mut net = Iris::new(7);
            let adam = Adam::new(0.01).map_err(|e| e.to_string())?;
            let (mut state, mut ws) = (OptimizerState::new(), NetWorkspace::new());
            for step in 1..=300 {
                let loss = net
                    .train_step(&train_x, &train_y, &adam, &mut state, &mut ws)
                    .map_err(|e| format!("step {step}: {e}"))?;
                if step % 100 == 0 {
                    println!("Step {step}/300, Loss: {loss:.4}");
                }
            }
            net
        }
    };
    let accuracy = net.accuracy(&test_x, &test_y).map_err(|e| e.to_string())?;
    println!("Test accuracy: {accuracy:.4}");
    let src = net.to_rust_source("MODEL").map_err(|e| e.to_string())?;
    std::fs::write(&out, &src).map_err(|e| format!("{out}: {e}"))?;
    println!(
        "Wrote {out}: {} bytes of Rust source, {} parameters ({} bytes of f32 in flash)",
        src.len(),
        Iris::PARAMS,
        4 * Iris::PARAMS
    );
    Ok(())
}

#[cfg(feature = "safetensors")]
fn load(path: &str) -> Result<Iris, String> {
    let mut net = Iris::ZERO;
    net.load_safetensors(path, fusedprop::safetensors::Format::TORCH)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(net)
}

#[cfg(not(feature = "safetensors"))]
fn load(path: &str) -> Result<Iris, String> {
    Err(format!(
        "{path}: reading safetensors needs the feature: cargo run --release --features safetensors --example export_model"
    ))
}
