//! A trained model baked into the program as a `static` (read-only memory: flash on a
//! microcontroller), predicting one sample at a time with no allocation and no loading.
//!
//! `tests/generated/iris_tanh_relu.rs` is the output of `Network::to_rust_source` for
//! PyTorch's Iris network (4-16-8-3, tanh and relu); `cargo run --example export_model`
//! writes such a file for a network trained here. The same `include!` works in a `no_std`
//! firmware (README, "Deploy to a microcontroller").
//!
//! ```text
//! cargo run --release --example static_model
//! ```

#[path = "support/data.rs"]
mod data;

use std::process::ExitCode;

// `pub static MODEL: ::fusedprop::Network<...> = ::fusedprop::Network::from_layers(...);`
include!("../tests/generated/iris_tanh_relu.rs");

fn main() -> ExitCode {
    let (_, _, test_x, test_y) = match data::iris_split() {
        Ok(split) => split,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut correct = 0;
    for (x, &y) in test_x.iter().zip(&test_y) {
        match MODEL.predict_one(x) {
            Ok(class) => correct += usize::from(class == y),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let bytes = core::mem::size_of_val(&MODEL);
    println!(
        "static MODEL: {bytes} bytes in read-only memory ({} f32 parameters)",
        bytes / 4
    );
    println!(
        "Test accuracy: {:.4} ({correct}/{})",
        correct as f64 / test_x.len() as f64,
        test_x.len()
    );
    ExitCode::SUCCESS
}
