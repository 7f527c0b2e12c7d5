//! Prints a markdown table of training throughput: time per step (median), samples/s,
//! GFLOP/s, the fraction of the FMA peak measured in the same run, 1 and 2 threads, and the
//! speed-up over the naive `f32` reference of `benches/common`. Runs in well under a minute.
//!
//! ```text
//! cargo run --release --example perf_report --features rayon
//! ```
//! Without `rayon` the 2-thread columns read "n/a".

#[path = "../benches/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{naive, rows};
use fusedprop::{Mlp, PackedBatch, SIMD_LEVEL, Sgd, Workspace};

/// Median and best seconds per call of `f`: calls are grouped so that a group takes at
/// least `min_group` seconds, `samples` groups are timed.
fn median_secs(mut f: impl FnMut(), samples: usize, min_group: f64) -> (f64, f64) {
    f();
    let mut k = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..k {
            f();
        }
        if t.elapsed().as_secs_f64() >= min_group || k >= 1 << 20 {
            break;
        }
        k *= 2;
    }
    let mut v: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..k {
                f();
            }
            t.elapsed().as_secs_f64() / k as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

struct Row {
    name: String,
    n: usize,
    flop: u64,
    t1: f64,
    t1_best: f64,
    t2: Option<(f64, f64)>,
    naive: f64,
}

#[cfg(feature = "rayon")]
fn two_threads(f: impl FnMut() + Send) -> Option<(f64, f64)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .ok()?;
    let mut f = f;
    Some(pool.install(|| median_secs(&mut f, 11, 2e-3)))
}

fn workload<const I: usize, const H: usize, const O: usize, const C: usize>(
    name: &str,
    n: usize,
) -> Row {
    let x = rows::<I>(n, 10);
    let y = common::labels(n, O, 11);
    let sgd = Sgd::new(1e-3).expect("valid learning rate");
    let mut model: Box<Mlp<I, H, O>> = Box::new(Mlp::ZERO);
    model.init_glorot(7);
    let mut naive_model = naive::Mlp::from(&model);
    let mut ws: Box<Workspace<I, H, O>> = Box::new(Workspace::ZERO);
    let (t1, t1_best) = median_secs(
        || {
            black_box(model.train_step(black_box(&x), &y, &sgd, &mut ws).ok());
        },
        15,
        2e-3,
    );
    #[cfg(feature = "rayon")]
    let t2 = {
        let mut pws = fusedprop::ParWorkspace::<I, H, O, C>::new_boxed();
        let m = &mut model;
        two_threads(|| {
            black_box(m.train_step_par(black_box(&x), &y, &sgd, &mut pws).ok());
        })
    };
    #[cfg(not(feature = "rayon"))]
    let t2 = None;
    let (naive, _) = median_secs(
        || {
            black_box(naive_model.train_step(black_box(&x), &y, 1e-3));
        },
        5,
        2e-3,
    );
    Row {
        name: name.into(),
        n,
        flop: common::mlp_step_flop(I, H, O, n),
        t1,
        t1_best,
        t2,
        naive,
    }
}

fn iris_packed() -> Row {
    let x = rows::<4>(120, 20);
    let y = common::labels(120, 3, 21);
    let batch = PackedBatch::<4, 8>::from_rows(&x, &y).expect("120 finite rows");
    let sgd = Sgd::new(1e-3).expect("valid learning rate");
    let mut model = Mlp::<4, 32, 3>::new(7);
    let mut naive_model = naive::Mlp::from(&model);
    let mut ws = Workspace::new();
    let (t1, t1_best) = median_secs(
        || {
            black_box(
                model
                    .train_step_packed(black_box(&batch), &sgd, &mut ws)
                    .ok(),
            );
        },
        21,
        2e-3,
    );
    let (naive, _) = median_secs(
        || {
            black_box(naive_model.train_step(black_box(&x), &y, 1e-3));
        },
        11,
        2e-3,
    );
    Row {
        name: "Iris epoch, PackedBatch (4-32-3)".into(),
        n: 120,
        flop: common::mlp_step_flop(4, 32, 3, 120),
        t1,
        t1_best,
        t2: None,
        naive,
    }
}

fn fmt_time(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.2} us", s * 1e6)
    } else {
        format!("{:.3} ms", s * 1e3)
    }
}

fn main() {
    let start = Instant::now();
    let (best1, peak1) = common::fma_peak_gflops(200_000, 15);
    let (best2, peak2) = std::thread::scope(|s| {
        let h: Vec<_> = (0..2)
            .map(|_| s.spawn(|| common::fma_peak_gflops(200_000, 15)))
            .collect();
        h.into_iter()
            .map(|h| h.join().unwrap_or((0.0, 0.0)))
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    // Three rounds over all workloads, each workload's figures the median of its rounds: a
    // burst of load from other processes then spoils one round, not the table.
    let rounds: Vec<Vec<Row>> = (0..3)
        .map(|_| {
            vec![
                iris_packed(),
                workload::<4, 32, 3, 64>("Iris-shaped step, rows (4-32-3)", 120),
                workload::<64, 128, 10, 8>("digits full batch (64-128-10)", 1797),
                workload::<784, 256, 10, 4>("MNIST-shaped (784-256-10)", 256),
                workload::<784, 256, 10, 4>("MNIST-shaped (784-256-10)", 1024),
                workload::<4, 32, 3, 64>("Iris-shaped, large batch (4-32-3)", 65536),
            ]
        })
        .collect();
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rows: Vec<Row> = (0..rounds[0].len())
        .map(|i| Row {
            name: rounds[0][i].name.clone(),
            n: rounds[0][i].n,
            flop: rounds[0][i].flop,
            t1: med(rounds.iter().map(|r| r[i].t1).collect()),
            t1_best: rounds
                .iter()
                .map(|r| r[i].t1_best)
                .fold(f64::INFINITY, f64::min),
            t2: rounds[0][i].t2.map(|_| {
                let t2s = rounds.iter().filter_map(|r| r[i].t2);
                (
                    med(t2s.clone().map(|t| t.0).collect()),
                    t2s.map(|t| t.1).fold(f64::INFINITY, f64::min),
                )
            }),
            naive: med(rounds.iter().map(|r| r[i].naive).collect()),
        })
        .collect();
    println!("# fusedprop performance report");
    println!();
    println!(
        "SIMD level: `{SIMD_LEVEL}`; FMA peak measured in this run (median of 15, best in brackets): {peak1:.1} ({best1:.1}) GFLOP/s on 1 thread, {peak2:.1} ({best2:.1}) GFLOP/s on 2 threads. The % columns divide medians by the median peak."
    );
    if let Some(hint) = fusedprop::simd_hint() {
        println!();
        println!("> {hint}");
    }
    println!();
    println!(
        "| workload | batch | time/step 1T (median) | samples/s 1T | GFLOP/s 1T | % peak 1T | GFLOP/s 1T best | time/step 2T | GFLOP/s 2T | % peak 2T | naive time/step | speed-up vs naive |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let g1 = r.flop as f64 / r.t1 / 1e9;
        let (t2, g2, p2) = match r.t2 {
            Some((t2, best)) => {
                let g2 = r.flop as f64 / t2 / 1e9;
                (
                    fmt_time(t2),
                    format!("{g2:.1} (best {:.1})", r.flop as f64 / best / 1e9),
                    format!("{:.0}%", 100.0 * g2 / peak2),
                )
            }
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        println!(
            "| {} | {} | {} | {:.3e} | {:.1} | {:.0}% | {:.1} | {} | {} | {} | {} | {:.1}x |",
            r.name,
            r.n,
            fmt_time(r.t1),
            r.n as f64 / r.t1,
            g1,
            100.0 * g1 / peak1,
            r.flop as f64 / r.t1_best / 1e9,
            t2,
            g2,
            p2,
            fmt_time(r.naive),
            r.naive / r.t1
        );
    }
    println!();
    println!(
        "FLOP per sample for I-H-O: 2(IH+HO) forward + 2(IH+HO) weight gradients + 2HO input gradient. 2T = `train_step_par` on a 2-thread rayon pool (serial below `PAR_MIN_FLOP`). \"best\" is the fastest timed group over all rounds: on a machine shared with other work, steps of a millisecond or more are often preempted, which inflates medians. Report took {:.1} s.",
        start.elapsed().as_secs_f64()
    );
}
