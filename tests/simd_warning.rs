//! The one-time warning about a slow build (issue 14): a build that lacks FMA, AVX2 or AVX-512
//! which the CPU has logs exactly one `log::warn!`, however many entry points run on however
//! many threads; a build with everything the CPU has logs nothing. CI runs this in the native
//! build (expects none) and in the portable x86-64 baseline (expects one on an FMA machine).
//!
//! One test in its own binary: the logger and the crate's once-flag are per process.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use fusedprop::{Mlp, PackedBatch, SIMD_LEVEL, Sgd, Workspace};
use log::{Level, LevelFilter, Log, Metadata, Record};

/// Counts the records that fusedprop logs, and keeps the last warning's text.
struct Capture {
    records: AtomicUsize,
    warnings: AtomicUsize,
    last: Mutex<String>,
}

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        if !record.target().starts_with("fusedprop") {
            return;
        }
        self.records.fetch_add(1, Ordering::SeqCst);
        if record.level() == Level::Warn {
            self.warnings.fetch_add(1, Ordering::SeqCst);
            *self.last.lock().unwrap() = format!("{} {}", record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture {
    records: AtomicUsize::new(0),
    warnings: AtomicUsize::new(0),
    last: Mutex::new(String::new()),
};

/// Whether this build lacks SIMD that this CPU has, decided here independently of the crate.
fn build_lacks_cpu_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (std::is_x86_feature_detected!("fma") && !cfg!(target_feature = "fma"))
            || (std::is_x86_feature_detected!("avx2") && !cfg!(target_feature = "avx2"))
            || (std::is_x86_feature_detected!("avx512f") && !cfg!(target_feature = "avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Every entry point that checks, a few times each.
fn exercise(seed: u64) {
    let x = [
        [5.1, 3.5, 1.4, 0.2],
        [6.2, 2.9, 4.3, 1.3],
        [7.7, 3.0, 6.1, 2.3],
    ];
    let y = [0, 1, 2];
    let sgd = Sgd::new(0.01).unwrap();
    let mut model = Mlp::<4, 8, 3>::new(seed);
    let mut ws = Workspace::new();
    let batch = PackedBatch::<4, 1>::from_rows(&x, &y).unwrap();
    let mut grads = fusedprop::Gradients::<4, 8, 3>::ZERO;
    let mut classes = [0u32; 3];
    let mut proba = [[0.0f32; 3]; 3];
    for _ in 0..5 {
        model.train_step(&x, &y, &sgd, &mut ws).unwrap();
        model.train_step_packed(&batch, &sgd, &mut ws).unwrap();
        model.gradients(&x, &y, &mut grads, &mut ws).unwrap();
        model.predict(&x, &mut classes).unwrap();
        model.predict_proba(&x, &mut proba).unwrap();
        model.predict_one(&x[0]).unwrap();
        model.loss(&x, &y).unwrap();
        model.accuracy(&x, &y).unwrap();
    }
}

#[test]
fn warns_exactly_once_when_the_build_lacks_simd_the_cpu_has() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(LevelFilter::Trace);

    // Threads race to be first; then more calls on this thread.
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || exercise(t));
        }
    });
    exercise(9);

    let expected = usize::from(build_lacks_cpu_simd());
    let warnings = CAPTURE.warnings.load(Ordering::SeqCst);
    println!(
        "simd_warning: SIMD_LEVEL {SIMD_LEVEL}, expected {expected} warning(s), logged {warnings}"
    );
    assert_eq!(warnings, expected, "warnings logged by fusedprop");
    assert_eq!(
        CAPTURE.records.load(Ordering::SeqCst),
        expected,
        "fusedprop logs nothing but the warning"
    );
    #[cfg(target_arch = "x86_64")]
    if !cfg!(target_feature = "fma") && std::is_x86_feature_detected!("fma") {
        // The case: the default dependent build on a CPU with FMA.
        assert_eq!(warnings, 1);
    }
    match fusedprop::simd_hint() {
        Some(hint) => {
            assert_eq!(expected, 1);
            let last = CAPTURE.last.lock().unwrap();
            assert_eq!(*last, format!("fusedprop::simd {hint}"));
            assert!(hint.contains("-C target-cpu=native"), "{hint}");
        }
        None => assert_eq!(expected, 0),
    }
}
