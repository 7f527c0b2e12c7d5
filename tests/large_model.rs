//! Large models without a stack overflow: a 784-256-10 model (203,530 parameters, 814 KB),
//! its workspace (1.5 MB) and its gradients are created, trained and dropped inside a thread
//! with a 2 MiB stack, in debug and in release builds (CI runs both).
//!
//! Measured on this crate (debug build, 2 MiB thread): `Box::new(Mlp::<784, 256, 10>::ZERO)`,
//! `Box::<Mlp<..>>::default()` and `Box::new(Workspace::ZERO)` all overflow the stack, because
//! without optimization the value is copied several times on the stack on its way into the
//! box; in release builds they are written in place. The ways that work in both are tested
//! here: the std helpers `new_boxed` and `static`s initialized with `ZERO`.

use std::sync::Mutex;
use std::thread;

use fusedprop::{Gradients, Mlp, Sgd, Workspace};

const I: usize = 784;
const H: usize = 256;
const O: usize = 10;
const STACK: usize = 2 * 1024 * 1024;

/// Runs `f` on a thread with a 2 MiB stack and returns its result; a stack overflow aborts
/// the whole test binary, which fails the test run.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the small-stack thread panicked")
}

/// A synthetic batch: `n` samples of MNIST's shape, pixel values in [0, 1], labels 0..10.
fn batch(n: usize) -> (Vec<[f32; I]>, Vec<u32>) {
    let mut x = vec![[0.0f32; I]; n];
    for (s, row) in x.iter_mut().enumerate() {
        for (k, v) in row.iter_mut().enumerate() {
            *v = ((s * 31 + k * 7) % 256) as f32 / 255.0;
        }
    }
    let y = (0..n).map(|s| (s % O) as u32).collect();
    (x, y)
}

fn params(m: &Mlp<I, H, O>) -> Vec<f32> {
    let mut p = vec![0.0; Mlp::<I, H, O>::PARAMS];
    m.write_params(&mut p).expect("PARAMS values");
    p
}

#[test]
fn sizes_are_what_the_docs_say() {
    assert_eq!(Mlp::<I, H, O>::PARAMS, 203_530);
    assert_eq!(size_of::<Mlp<I, H, O>>(), 4 * 203_530);
    let ws = size_of::<Workspace<I, H, O>>();
    assert!(ws > 1_400_000 && ws < 1_600_000, "workspace is {ws} bytes");
}

#[test]
fn boxed_model_trains_on_a_2_mib_stack() {
    let (loss, before, after) = on_small_stack(|| {
        let mut model = Mlp::<I, H, O>::new_boxed(7);
        let mut ws = Workspace::<I, H, O>::new_boxed();
        let mut grads = Gradients::<I, H, O>::new_boxed();
        // 300 samples: three tiles of 128, the last one partial.
        let (x, y) = batch(300);
        let sgd = Sgd::new(0.01).expect("valid learning rate");
        let before = model.loss(&x, &y).expect("loss");
        let g_loss = model
            .gradients(&x, &y, &mut grads, &mut ws)
            .expect("gradients");
        let loss = model.train_step(&x, &y, &sgd, &mut ws).expect("step");
        assert_eq!(loss, before);
        assert_eq!(loss, g_loss);
        for _ in 0..3 {
            model.train_step(&x, &y, &sgd, &mut ws).expect("step");
        }
        let after = model.loss(&x, &y).expect("loss");
        let mut classes = vec![0u32; x.len()];
        model.predict(&x, &mut classes).expect("predict");
        assert!(classes.iter().all(|&c| (c as usize) < O));
        assert!(params(&model).iter().all(|v| v.is_finite()));
        (loss, before, after)
        // model, ws and grads are dropped here, on the small stack.
    });
    assert!(loss.is_finite() && before.is_finite());
    assert!(
        after < before,
        "four steps did not lower the loss: {before} -> {after}"
    );
}

#[test]
fn new_boxed_equals_init_glorot() {
    let boxed = on_small_stack(|| Mlp::<I, H, O>::new_boxed(42));
    let mut reference = Mlp::<I, H, O>::new_boxed(0);
    reference.init_glorot(42);
    assert_eq!(params(&boxed), params(&reference));
    assert!(params(&boxed).iter().any(|&v| v != 0.0));
}

static MODEL: Mutex<Mlp<I, H, O>> = Mutex::new(Mlp::ZERO);
static WS: Mutex<Workspace<I, H, O>> = Mutex::new(Workspace::ZERO);

#[test]
fn static_model_trains_on_a_2_mib_stack() {
    let (first, last) = on_small_stack(|| {
        let mut model = MODEL.lock().expect("lock");
        let mut ws = WS.lock().expect("lock");
        model.init_glorot(3);
        let (x, y) = batch(64);
        let sgd = Sgd::new(0.01).expect("valid learning rate");
        let first = model.train_step(&x, &y, &sgd, &mut ws).expect("step");
        let mut last = first;
        for _ in 0..5 {
            last = model.train_step(&x, &y, &sgd, &mut ws).expect("step");
        }
        (first, last)
    });
    assert!(first.is_finite() && last < first, "{first} -> {last}");
}
