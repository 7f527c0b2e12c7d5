//! The parallel step is bit for bit the serial step, for 1, 2, 3 and 8 threads, for batches
//! of several tiles with a partial last block; errors are the serial errors and leave the
//! weights unchanged.
#![cfg(feature = "rayon")]

use fusedprop::{Error, Mlp, ParWorkspace, Sgd, Workspace, rng::SplitMix64};

fn data<const I: usize>(n: usize, classes: u32, seed: u64) -> (Vec<[f32; I]>, Vec<u32>) {
    let mut rng = SplitMix64::new(seed);
    let x = (0..n)
        .map(|_| core::array::from_fn(|_| rng.uniform(2.0)))
        .collect();
    let y = (0..n)
        .map(|_| (rng.next_u64() % u64::from(classes)) as u32)
        .collect();
    (x, y)
}

fn serial<const I: usize, const H: usize, const O: usize>(
    model: &Mlp<I, H, O>,
    x: &[[f32; I]],
    y: &[u32],
    steps: usize,
) -> (Mlp<I, H, O>, Vec<u32>) {
    let mut m = model.clone();
    let mut ws = Box::new(Workspace::ZERO);
    let sgd = Sgd::new(0.05).unwrap();
    let losses = (0..steps)
        .map(|_| m.train_step(x, y, &sgd, &mut ws).unwrap().to_bits())
        .collect();
    (m, losses)
}

fn parallel<const I: usize, const H: usize, const O: usize, const C: usize>(
    model: &Mlp<I, H, O>,
    x: &[[f32; I]],
    y: &[u32],
    steps: usize,
    threads: usize,
) -> (Mlp<I, H, O>, Vec<u32>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut m = model.clone();
        // Not `Box::new(ParWorkspace::ZERO)`: in debug builds that goes through the stack
        // (over 1 MiB for the wide-input model) and overflows a rayon worker's 2 MiB.
        let mut pws = ParWorkspace::<I, H, O, C>::new_boxed();
        pws.set_min_flop(0);
        let sgd = Sgd::new(0.05).unwrap();
        let losses = (0..steps)
            .map(|_| m.train_step_par(x, y, &sgd, &mut pws).unwrap().to_bits())
            .collect();
        (m, losses)
    })
}

/// `steps` parallel steps with `C1` and with `C2` slots on 1, 2, 3 and 8 threads: the
/// serial losses and weights, bit for bit.
fn matches_serial<
    const I: usize,
    const H: usize,
    const O: usize,
    const C1: usize,
    const C2: usize,
>(
    model: &Mlp<I, H, O>,
    x: &[[f32; I]],
    y: &[u32],
    steps: usize,
) {
    let (want, want_loss) = serial(model, x, y, steps);
    for threads in [1, 2, 3, 8] {
        let (got, got_loss) = parallel::<I, H, O, C1>(model, x, y, steps, threads);
        assert_eq!(got_loss, want_loss, "{threads} threads, {C1} slots");
        assert_eq!(got, want, "{threads} threads, {C1} slots");
        let (got, got_loss) = parallel::<I, H, O, C2>(model, x, y, steps, threads);
        assert_eq!(got_loss, want_loss, "{threads} threads, {C2} slots");
        assert_eq!(got, want, "{threads} threads, {C2} slots");
    }
}

#[test]
fn parallel_is_bitwise_serial_for_1_2_3_8_threads() {
    let (x, y) = data::<9>(1000, 5, 11); // 8 tiles, last one partial (104 samples)
    matches_serial::<9, 33, 5, 3, 8>(&Mlp::new(5), &x, &y, 5);
}

/// 16 inputs or more (the weight gradients from the input rows) and parameter arrays of
/// several reduction chunks (40 x 130 = 5200 hidden weights).
#[test]
fn parallel_is_bitwise_serial_for_wide_inputs() {
    let (x, y) = data::<40>(700, 7, 15); // 6 tiles, the last one 60 samples
    matches_serial::<40, 130, 7, 4, 6>(&Mlp::new(8), &x, &y, 3);
}

#[test]
fn parallel_two_tiles_and_iris_shape() {
    let (x, y) = data::<4>(129, 3, 12);
    let model = Mlp::<4, 32, 3>::new(7);
    let (want, want_loss) = serial(&model, &x, &y, 20);
    for threads in [1, 2, 3, 8] {
        let (got, got_loss) = parallel::<4, 32, 3, 2>(&model, &x, &y, 20, threads);
        assert_eq!(got_loss, want_loss);
        assert_eq!(got, want);
    }
}

#[test]
fn parallel_errors_match_serial_and_change_nothing() {
    let (mut x, y) = data::<4>(700, 3, 13);
    x[517][2] = f32::NAN;
    let model = Mlp::<4, 16, 3>::new(1);
    let sgd = Sgd::new(0.1).unwrap();
    let mut a = model.clone();
    let serial_err = a.train_step(&x, &y, &sgd, &mut Workspace::new());
    let mut b = model.clone();
    let mut pws = Box::new(ParWorkspace::<4, 16, 3, 2>::ZERO);
    pws.set_min_flop(0);
    let par_err = b.train_step_par(&x, &y, &sgd, &mut pws);
    assert_eq!(
        par_err,
        Err(Error::NonFinite {
            what: "input",
            index: Some(517)
        })
    );
    assert_eq!(par_err, serial_err);
    assert_eq!(a, model);
    assert_eq!(b, model);
}

#[test]
fn small_batches_stay_serial() {
    let (x, y) = data::<4>(120, 3, 14);
    let mut pws = Box::new(ParWorkspace::<4, 32, 3, 2>::ZERO);
    assert_eq!(pws.min_flop(), fusedprop::PAR_MIN_FLOP);
    let model = Mlp::<4, 32, 3>::new(7);
    let (want, _) = serial(&model, &x, &y, 3);
    let mut m = model.clone();
    let sgd = Sgd::new(0.05).unwrap();
    for _ in 0..3 {
        m.train_step_par(&x, &y, &sgd, &mut pws).unwrap();
    }
    assert_eq!(m, want);
}

/// Issue 9, item 1: `new_boxed` allocates zeroed memory in place, so it works on a stack far
/// smaller than the workspace, in debug builds too (CI runs this file unoptimized). It used
/// to build the value on a helper thread but reserved a whole workspace in its own frame on
/// the caller's stack, which aborted with a stack overflow.
#[test]
fn par_workspace_new_boxed_on_a_256_kib_stack() {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            // The doc example (6.6 MB) and the recommended 64 slots of a small model (3.5 MB).
            let big = ParWorkspace::<784, 256, 10, 4>::new_boxed();
            assert_eq!(big.min_flop(), fusedprop::PAR_MIN_FLOP);
            let many = ParWorkspace::<4, 32, 3, 64>::new_boxed();
            assert_eq!(many.min_flop(), fusedprop::PAR_MIN_FLOP);
        })
        .expect("spawn")
        .join()
        .expect("the small-stack thread panicked");
}
