//! Zero heap allocations, proven: a counting global allocator counts the allocations made by
//! the *current thread* while a thread-local flag is set, so the test harness's own threads
//! (output capture, other tests running in parallel) cannot disturb the count. Once a model,
//! a workspace, gradients and the data exist, inference, loss, gradients and a serial training
//! step (single-tile and multi-tile batches, and the error paths) allocate nothing; so do
//! `Network::train_step` (Adam, SGD), `predict`, `predict_one` and `loss`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use fusedprop::{
    Accumulate, Adam, Dense, DenseGrads, Gradients, LeakyRelu, Mlp, NetWorkspace, Network,
    OptimizerState, Relu, Sgd, SoftmaxCrossEntropy, Tanh, Workspace, chain, log_softmax,
    log_softmax_backward, relu, relu_backward, softmax, softmax_backward,
    softmax_cross_entropy_backward, sparse_categorical_cross_entropy,
};

struct Counting;

thread_local! {
    // `const` initializers with no destructor: reading them never allocates, so the
    // allocator may use them without recursion.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator can run while this thread's locals are being torn down.
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every method forwards to `System` unchanged; the counting touches only
// thread-local `Cell`s, which neither allocate nor unwind.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: as `alloc`; `ptr` and `layout` come from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns what it returned and how many allocations this thread made meanwhile.
fn count<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    let out = std::hint::black_box(f());
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATIONS.with(Cell::get))
}

#[track_caller]
fn assert_no_alloc<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let (out, n) = count(f);
    assert_eq!(n, 0, "{what} allocated {n} times");
    out
}

#[test]
fn the_counter_counts() {
    let (v, n) = count(|| vec![1u8; 10]);
    assert_eq!(v.len(), 10);
    assert_eq!(n, 1, "the counting allocator must see a Vec allocation");
    // Outside `count`, nothing is counted.
    let v = vec![2u8; 10];
    assert_eq!(ALLOCATIONS.with(Cell::get), 1);
    drop(v);
}

/// Iris-like data: `n` samples, 4 features, 3 classes.
fn data(n: usize) -> (Vec<[f32; 4]>, Vec<u32>) {
    let x = (0..n)
        .map(|s| {
            let f = s as f32;
            [
                5.0 + (f * 0.37).sin(),
                3.0 + (f * 0.11).cos(),
                1.5 + (s % 3) as f32 * 2.0,
                0.2 + (s % 3) as f32 * 0.9,
            ]
        })
        .collect();
    let y = (0..n).map(|s| (s % 3) as u32).collect();
    (x, y)
}

#[test]
fn model_functions_do_not_allocate() {
    let mut model = Mlp::<4, 32, 3>::new(7);
    let mut ws = Box::new(Workspace::<4, 32, 3>::new());
    let mut grads = Box::new(Gradients::<4, 32, 3>::ZERO);
    let sgd = Sgd::new(0.01).expect("valid");
    // 120 samples: one tile, the Iris training set; 300: three tiles, the last partial.
    for n in [1, 17, 120, 300] {
        let (x, y) = data(n);
        let mut proba = vec![[0.0f32; 3]; n];
        let mut classes = vec![0u32; n];
        let mut params = vec![0.0f32; Mlp::<4, 32, 3>::PARAMS];

        assert_no_alloc("predict", || model.predict(&x, &mut classes)).expect("ok");
        assert_no_alloc("predict_proba", || model.predict_proba(&x, &mut proba)).expect("ok");
        assert_no_alloc("predict_one", || model.predict_one(&x[0])).expect("ok");
        assert_no_alloc("loss", || model.loss(&x, &y)).expect("ok");
        assert_no_alloc("accuracy", || model.accuracy(&x, &y)).expect("ok");
        assert_no_alloc("gradients", || model.gradients(&x, &y, &mut grads, &mut ws)).expect("ok");
        for _ in 0..3 {
            assert_no_alloc("train_step", || model.train_step(&x, &y, &sgd, &mut ws)).expect("ok");
        }
        assert_no_alloc("write_params", || model.write_params(&mut params)).expect("ok");
        assert_no_alloc("read_params", || model.read_params(&params)).expect("ok");
        assert_no_alloc("Gradients::write_flat", || grads.write_flat(&mut params)).expect("ok");
    }
}

#[test]
fn error_paths_do_not_allocate() {
    let mut model = Mlp::<4, 32, 3>::new(7);
    let mut ws = Box::new(Workspace::<4, 32, 3>::new());
    let sgd = Sgd::new(0.01).expect("valid");
    let (mut x, mut y) = data(200);
    y[150] = 3;
    assert_no_alloc("train_step, label out of range", || {
        model.train_step(&x, &y, &sgd, &mut ws)
    })
    .expect_err("label 3");
    y[150] = 0;
    x[170][2] = f32::NAN;
    assert_no_alloc("train_step, NaN input", || {
        model.train_step(&x, &y, &sgd, &mut ws)
    })
    .expect_err("NaN");
    assert_no_alloc("loss, empty batch", || model.loss(&[], &[])).expect_err("empty");
    assert_no_alloc("Sgd::new(NaN)", || Sgd::new(f32::NAN)).expect_err("NaN");
    let e = assert_no_alloc("read_params, short", || model.read_params(&[0.0; 3]));
    assert!(e.is_err());
}

#[test]
fn kernels_do_not_allocate() {
    let layer = Dense::<4, 32>::from_weights([[0.25; 4]; 32], [0.1; 32]).expect("finite");
    let mut layer2 = Dense::<32, 3>::from_weights([[-0.05; 32]; 3], [0.0; 3]).expect("finite");
    let (x, y) = data(40);
    let mut h = vec![[0.0f32; 32]; 40];
    let mut a = vec![[0.0f32; 32]; 40];
    let mut z = vec![[0.0f32; 3]; 40];
    let mut p = vec![[0.0f32; 3]; 40];
    let mut dz = vec![[0.0f32; 3]; 40];
    let mut da = vec![[0.0f32; 32]; 40];
    let mut dh = vec![[0.0f32; 32]; 40];
    let mut g1 = Box::new(DenseGrads::<4, 32>::ZERO);
    let mut g2 = Box::new(DenseGrads::<32, 3>::ZERO);
    let sgd = Sgd::new(0.1).expect("valid");
    assert_no_alloc("kernels", || -> Result<(), fusedprop::Error> {
        let mut one = [0.0f32; 32];
        layer.forward(&x[0], &mut one);
        layer.forward_batch(&x, &mut h)?;
        relu(&h, &mut a)?;
        layer2.forward_batch(&a, &mut z)?;
        softmax(&z, &mut p)?;
        softmax_backward(&p, &z, &mut dz)?;
        log_softmax(&z, &mut p)?;
        log_softmax_backward(&p, &z, &mut dz)?;
        sparse_categorical_cross_entropy(&z, &y)?;
        softmax_cross_entropy_backward(&z, &y, &mut dz)?;
        layer2.backward(&a, &dz, &mut g2, Accumulate::Overwrite, Some(&mut da))?;
        relu_backward(&a, &da, &mut dh)?;
        layer.backward(&x, &dh, &mut g1, Accumulate::Add, None)?;
        layer2.backward_sgd(&a, &dz, Some(&mut da), &sgd, &mut g2)?;
        Ok(())
    })
    .expect("kernels succeed");
}

#[test]
fn network_train_step_and_predict_do_not_allocate() {
    type L = chain![Dense<4, 16, Tanh>, Dense<16, 8, LeakyRelu>, Dense<8, 3>];
    let mut net = Network::<L, SoftmaxCrossEntropy>::from_layers(
        fusedprop::Chain(
            Dense::ZERO,
            fusedprop::Chain(Dense::zero_with(LeakyRelu::new_const(0.2)), Dense::ZERO),
        ),
        SoftmaxCrossEntropy,
    );
    net.init_glorot(7);
    let adam = Adam::new(0.01).expect("valid");
    let mut state = Box::new(OptimizerState::<L, Adam>::new());
    let mut ws = Box::new(NetWorkspace::<L>::new());
    for n in [1, 17, 120, 300] {
        let (x, y) = data(n);
        let mut classes = vec![0u32; n];
        for _ in 0..3 {
            assert_no_alloc("Network::train_step (Adam)", || {
                net.train_step(&x, &y, &adam, &mut state, &mut ws)
            })
            .expect("ok");
        }
        assert_no_alloc("Network::predict", || net.predict(&x, &mut classes)).expect("ok");
        assert_no_alloc("Network::predict_one", || net.predict_one(&x[0])).expect("ok");
        assert_no_alloc("Network::loss", || net.loss(&x, &y)).expect("ok");
    }
    // A refused step allocates nothing either.
    let (mut x, y) = data(200);
    x[150][0] = f32::NAN;
    assert_no_alloc("Network::train_step, NaN input", || {
        net.train_step(&x, &y, &adam, &mut state, &mut ws)
    })
    .expect_err("NaN");
    // The ReLU network of `Mlp`'s shape, with plain SGD.
    type M = chain![Dense<4, 32, Relu>, Dense<32, 3>];
    let mut mlp_like = Network::<M, SoftmaxCrossEntropy>::new(7);
    let sgd = Sgd::new(0.01).expect("valid");
    let mut st = OptimizerState::<M, Sgd>::new();
    let mut ws = Box::new(NetWorkspace::<M>::new());
    let (x, y) = data(300);
    assert_no_alloc("Network::train_step (SGD)", || {
        mlp_like.train_step(&x, &y, &sgd, &mut st, &mut ws)
    })
    .expect("ok");
}

/// `Network::fit` allocates nothing: shuffled mini-batches (a seed and a caller's generator),
/// validation, a schedule, early stopping with restore-best, both callbacks, and a run that
/// ends in an error.
#[test]
fn fit_does_not_allocate() {
    use core::ops::ControlFlow;
    use fusedprop::rng::SplitMix64;
    use fusedprop::{BatchLog, EarlyStopping, FitConfig, FitData, FitWorkspace, Monitor, Schedule};
    type L = chain![Dense<4, 16, Tanh>, Dense<16, 3>];
    let (x, y) = data(300);
    let (vx, vy) = data(40);
    let mut net = Network::<L, SoftmaxCrossEntropy>::new(3);
    let mut best = Box::new(net.clone());
    let adam = Adam::new(0.01).expect("valid");
    let mut state = Box::new(OptimizerState::<L, Adam>::new());
    let mut ws = Box::new(FitWorkspace::<L, SoftmaxCrossEntropy, 4>::ZERO);
    let mut order = vec![0usize; x.len()];
    let mut history = [0.0f32; 20];
    let mut steps = 0usize;
    let es = EarlyStopping::new(Monitor::ValAccuracy)
        .patience(3)
        .restore_best_weights(true);
    let config = FitConfig::new(50, 20)
        .shuffle(5)
        .schedule(Schedule::Cosine {
            decay_steps: 60,
            alpha: 0.1,
        })
        .early_stopping(es);
    let mut rng = SplitMix64::new(1);
    let s = assert_no_alloc("Network::fit", || {
        let mut on_batch = |_: &BatchLog| steps += 1;
        let data = FitData::new(&x, &y, &mut order)
            .validation(&vx, &vy)
            .best(&mut best)
            .on_batch(&mut on_batch);
        net.fit(data, &adam, &mut state, &mut ws, &config, |l| {
            history[l.epoch] = l.loss;
            ControlFlow::Continue(())
        })
    })
    .expect("ok");
    assert!(s.epochs >= 1 && steps > 0);
    assert_no_alloc("Network::fit with a caller's generator", || {
        let data = FitData::new(&x, &y, &mut order).rng(&mut rng);
        net.fit(
            data,
            &adam,
            &mut state,
            &mut ws,
            &FitConfig::new(64, 2),
            |_| ControlFlow::Continue(()),
        )
    })
    .expect("ok");
    assert_no_alloc("Network::fit, bad batch size", || {
        let data = FitData::new(&x, &y, &mut order);
        net.fit(
            data,
            &adam,
            &mut state,
            &mut ws,
            &FitConfig::new(65, 2),
            |_| ControlFlow::Continue(()),
        )
    })
    .expect_err("over the capacity");
}
