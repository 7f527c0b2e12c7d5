//! Large values built on the heap from a thread whose stack is far smaller than the value
//! (256 KiB against 814 KB for a 784-256-10 model), in debug builds too: `cargo test` runs
//! this file unoptimized. A stack overflow aborts the test binary, so these cannot pass by
//! accident. Issue 9, items 1 and 2: `new_boxed` used to build the value on a helper
//! thread but reserved a whole `T` in its own frame on the caller's stack, and
//! `check_mlp` boxed `Workspace::ZERO` (and an `f64` copy of the model) through the stack.
//! Now both allocate zeroed memory in place (`bytemuck::zeroed_box`).
//! `ParWorkspace::new_boxed` is covered in `tests/parallel.rs` (feature `rayon`).
#![cfg(feature = "std")]

use std::thread;

use fusedprop::gradcheck::check_mlp;
use fusedprop::{Error, Gradients, Mlp, Workspace};

/// 256 KiB: far less than one 784-256-10 model (814 KB).
const STACK: usize = 256 * 1024;

/// Runs `f` on a thread with a 256 KiB stack and returns its result.
fn on_256_kib_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the small-stack thread panicked")
}

#[test]
fn new_boxed_784_1024_10_on_a_256_kib_stack() {
    let nonzero = on_256_kib_stack(|| {
        let m = Mlp::<784, 1024, 10>::new_boxed(1);
        m.hidden().weights().iter().flatten().any(|&w| w != 0.0)
    });
    assert!(nonzero);
}

#[test]
fn workspace_and_gradients_new_boxed_on_a_256_kib_stack() {
    on_256_kib_stack(|| {
        let ws = Workspace::<784, 256, 10>::new_boxed();
        let g = Gradients::<784, 256, 10>::new_boxed();
        assert!(g.hidden.w.iter().flatten().all(|&v| v == 0.0));
        drop(ws);
    });
}

/// `check_mlp` for 784-256-10 on a thread with Rust's default 2 MiB stack (the stack of
/// every test thread): the old `Box::new(Workspace::ZERO)` overflowed it in debug builds.
/// Not 256 KiB: the analytic gradient alone (`Mlp::gradients`) needs about 1.2 MB of stack
/// in a debug build, because the register-tile kernels are `#[inline(always)]` into one
/// frame there.
///
/// A full check of 203,530 parameters evaluates the `f64` loss twice per parameter, minutes
/// in a debug build; a step of 0 makes the check refuse after everything `check_mlp`
/// builds on the heap (workspace, gradients, the analytic gradient, the `f64` copy of the
/// model) has been built and used, which is what overflowed.
#[test]
fn check_mlp_784_256_10_on_a_2_mib_stack() {
    let err = thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let model = Mlp::<784, 256, 10>::new_boxed(3);
            let x = vec![[0.25f32; 784]; 2];
            check_mlp(&*model, &x, &[1, 7], 0.0, 1e-4)
        })
        .expect("spawn")
        .join()
        .expect("the check panicked")
        .expect_err("a step of 0 is refused");
    assert!(
        matches!(err, Error::InvalidArgument { what: "step", .. }),
        "{err:?}"
    );
}
