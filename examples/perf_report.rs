//! Prints a markdown table of training throughput: time per step (median), samples/s,
//! GFLOP/s, the fraction of the FMA peak measured in the same run, 1 and 2 threads, and the
//! speed-up over the naive `f32` reference of `benches/common`. Runs in well under a minute.
//!
//! ```text
//! cargo run --release --example perf_report --features rayon
//! cargo run --release --example perf_report -- --headline          # the README's four figures
//! cargo run --release --example perf_report -- --headline --quick  # the same in ~2 s (CI)
//! ```
//! Without `rayon` the 2-thread columns read "n/a". After the full table the report prints the
//! headline figures (the Iris program, digits and MNIST-shaped steps on one thread,
//! `predict_one`), the ones `benches/three_builds.sh` compares across builds; `--headline`
//! prints only those, `--quick` takes one round of fewer samples instead of three.

#[path = "../benches/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{naive, rows};
use fusedprop::{Mlp, PackedBatch, SIMD_LEVEL, Sgd, Workspace};

/// Command-line options.
#[derive(Clone, Copy)]
struct Opts {
    /// Only the headline figures, not the full table.
    headline: bool,
    /// One round of fewer samples (CI), instead of three rounds.
    quick: bool,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        headline: false,
        quick: false,
    };
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--headline" => o.headline = true,
            "--quick" => o.quick = true,
            _ => {
                eprintln!("usage: perf_report [--headline] [--quick]");
                std::process::exit(2);
            }
        }
    }
    o
}

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

/// The headline figures: what a user sees first, compared across builds by
/// `benches/three_builds.sh` and shown at the top of the README.
struct Headline {
    /// Seconds for the Iris program's 1000 epochs (4-32-3, 120 samples, `PackedBatch`).
    iris_1000: f64,
    /// The same 1000 epochs of the naive scalar reference.
    iris_1000_naive: f64,
    /// Seconds per 1-thread step of digits 64-128-10, batch 1797.
    digits: f64,
    /// Seconds per 1-thread step of 784-256-10, batch 256.
    mnist: f64,
    /// Seconds per `predict_one` of 4-32-3.
    predict_one: f64,
}

/// Median seconds of the Iris program's training loop: 1000 epochs from the same initial
/// weights, `reps` times.
fn iris_program(reps: usize) -> (f64, f64) {
    let x = rows::<4>(120, 20);
    let y = common::labels(120, 3, 21);
    let batch = PackedBatch::<4, 8>::from_rows(&x, &y).expect("120 finite rows");
    let sgd = Sgd::new(0.01).expect("valid learning rate");
    let init = Mlp::<4, 32, 3>::new(7);
    let mut ws = Workspace::new();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let mut model = init.clone();
            let t = Instant::now();
            for _ in 0..1000 {
                black_box(
                    model
                        .train_step_packed(black_box(&batch), &sgd, &mut ws)
                        .ok(),
                );
            }
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    let mut naive_model = naive::Mlp::from(&init);
    let (naive_epoch, _) = median_secs(
        || {
            black_box(naive_model.train_step(black_box(&x), &y, 0.01));
        },
        5,
        2e-3,
    );
    (v[v.len() / 2], naive_epoch * 1000.0)
}

/// Median seconds per `predict_one` of a 4-32-3 model, over 64 inputs in turn.
fn predict_one_secs(samples: usize) -> f64 {
    let x = rows::<4>(64, 30);
    let model = Mlp::<4, 32, 3>::new(7);
    let mut i = 0;
    median_secs(
        || {
            black_box(model.predict_one(black_box(&x[i & 63])).ok());
            i += 1;
        },
        samples,
        2e-3,
    )
    .0
}

fn step_secs<const I: usize, const H: usize, const O: usize>(n: usize, samples: usize) -> f64 {
    let x = rows::<I>(n, 10);
    let y = common::labels(n, O, 11);
    let sgd = Sgd::new(1e-3).expect("valid learning rate");
    let mut model: Box<Mlp<I, H, O>> = Box::new(Mlp::ZERO);
    model.init_glorot(7);
    let mut ws: Box<Workspace<I, H, O>> = Box::new(Workspace::ZERO);
    median_secs(
        || {
            black_box(model.train_step(black_box(&x), &y, &sgd, &mut ws).ok());
        },
        samples,
        2e-3,
    )
    .0
}

fn headline(opts: Opts) -> Headline {
    let (rounds, samples) = if opts.quick { (1, 7) } else { (3, 11) };
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let all: Vec<Headline> = (0..rounds)
        .map(|_| {
            let (iris_1000, iris_1000_naive) = iris_program(samples);
            Headline {
                iris_1000,
                iris_1000_naive,
                digits: step_secs::<64, 128, 10>(1797, samples),
                mnist: step_secs::<784, 256, 10>(256, samples),
                predict_one: predict_one_secs(samples),
            }
        })
        .collect();
    Headline {
        iris_1000: med(all.iter().map(|h| h.iris_1000).collect()),
        iris_1000_naive: med(all.iter().map(|h| h.iris_1000_naive).collect()),
        digits: med(all.iter().map(|h| h.digits).collect()),
        mnist: med(all.iter().map(|h| h.mnist).collect()),
        predict_one: med(all.iter().map(|h| h.predict_one).collect()),
    }
}

/// The headline table. `benches/three_builds.sh` reads its rows: keep the first column's
/// names and the `| name | value | unit | ... |` shape.
fn print_headline(h: &Headline, peak1: f64) {
    let digits = common::mlp_step_flop(64, 128, 10, 1797) as f64 / h.digits / 1e9;
    let mnist = common::mlp_step_flop(784, 256, 10, 256) as f64 / h.mnist / 1e9;
    println!("| headline | value | unit | % of this run's peak |");
    println!("|---|---:|---|---:|");
    println!(
        "| Iris program, 1000 epochs | {:.2} | ms | |",
        h.iris_1000 * 1e3
    );
    println!(
        "| Iris program, naive scalar loop | {:.2} | ms | |",
        h.iris_1000_naive * 1e3
    );
    println!(
        "| 784-256-10, batch 256, 1 thread | {mnist:.1} | GFLOP/s | {:.0}% |",
        100.0 * mnist / peak1
    );
    println!(
        "| digits 64-128-10, batch 1797, 1 thread | {digits:.1} | GFLOP/s | {:.0}% |",
        100.0 * digits / peak1
    );
    println!("| predict_one 4-32-3 | {:.1} | ns | |", h.predict_one * 1e9);
}

/// One network workload: `Network` beside what it is compared with in the same round.
struct NetRow {
    name: String,
    flop: u64,
    /// Median seconds per step on 1 thread, and on 2 (`train_step_par`).
    t1: f64,
    t2: Option<f64>,
    /// What it is compared with, and its median seconds in the same round.
    against: Option<(String, f64)>,
}

/// `Network` training steps of layers `$l` on a batch of `$n`, with optimizer `$opt`:
/// median seconds per step on 1 thread and (with `rayon`) on 2, with `$c` slots in the
/// `NetParWorkspace` (4 by default; 8 for the digits-sized batch, as its `Mlp` row: 15 tiles
/// in two rounds instead of four).
macro_rules! net_step {
    ($l:ty, $i:literal, $o:literal, $n:expr, $opt:expr, $samples:expr) => {{ net_step!($l, $i, $o, $n, $opt, $samples, 4) }};
    ($l:ty, $i:literal, $o:literal, $n:expr, $opt:expr, $samples:expr, $c:literal) => {{
        let x = rows::<$i>($n, 10);
        let y = common::labels($n, $o, 11);
        let opt = $opt;
        let mut net: Box<fusedprop::Network<$l, fusedprop::SoftmaxCrossEntropy>> =
            Box::new(fusedprop::Network::ZERO);
        net.init_glorot(7);
        let flop = net.step_flop($n);
        let mut ws: Box<fusedprop::NetWorkspace<$l>> = Box::new(fusedprop::NetWorkspace::ZERO);
        let mut st = Box::new(fusedprop::OptimizerState::ZERO);
        let (t1, _) = median_secs(
            || {
                black_box(
                    net.train_step(black_box(&x), &y, &opt, &mut st, &mut ws)
                        .ok(),
                );
            },
            $samples,
            2e-3,
        );
        #[cfg(feature = "rayon")]
        let t2 = {
            let mut pws: Box<fusedprop::NetParWorkspace<$l, $c>> =
                Box::new(fusedprop::NetParWorkspace::ZERO);
            let (n, s) = (&mut net, &mut st);
            two_threads(|| {
                black_box(n.train_step_par(black_box(&x), &y, &opt, s, &mut pws).ok());
            })
            .map(|t| t.0)
        };
        #[cfg(not(feature = "rayon"))]
        let t2: Option<f64> = None;
        (flop, t1, t2)
    }};
}

/// The generic `Network` beside the two-layer `Mlp` and beside itself with another optimizer,
/// and deeper networks, in one round.
fn network_rows(samples: usize) -> Vec<NetRow> {
    use fusedprop::{Adam, Dense, Relu, chain};
    type Mnist = chain![Dense<784, 256, Relu>, Dense<256, 10>];
    type Deep = chain![Dense<784, 256, Relu>, Dense<256, 128, Relu>, Dense<128, 10>];
    type Digits = chain![Dense<64, 128, Relu>, Dense<128, 64, Relu>, Dense<64, 10>];
    type Iris = chain![Dense<4, 32, Relu>, Dense<32, 3>];
    let sgd = Sgd::new(1e-3).expect("valid learning rate");
    let adam = Adam::new(1e-3).expect("valid learning rate");
    let mlp_mnist = step_secs::<784, 256, 10>(256, samples);
    let (f, mnist_sgd, m2) = net_step!(Mnist, 784, 10, 256, sgd, samples);
    let (_, mnist_adam, _) = net_step!(Mnist, 784, 10, 256, adam, samples);
    let (fd, deep, d2) = net_step!(Deep, 784, 10, 256, sgd, samples);
    let (fg, dig, g2) = net_step!(Digits, 64, 10, 1797, sgd, samples, 8);
    let mlp_iris = step_secs::<4, 32, 3>(120, samples * 3);
    let (fi, iris, _) = net_step!(Iris, 4, 3, 120, sgd, samples * 3);
    vec![
        NetRow {
            name: "784-256-10 ReLU, SGD (Network)".into(),
            flop: f,
            t1: mnist_sgd,
            t2: m2,
            against: Some(("Mlp<784, 256, 10>".into(), mlp_mnist)),
        },
        NetRow {
            name: "784-256-10 ReLU, Adam (Network)".into(),
            flop: f,
            t1: mnist_adam,
            t2: None,
            against: Some(("the same network with SGD".into(), mnist_sgd)),
        },
        NetRow {
            name: "784-256-128-10 ReLU, SGD".into(),
            flop: fd,
            t1: deep,
            t2: d2,
            against: None,
        },
        NetRow {
            name: "64-128-64-10 ReLU, SGD, batch 1797".into(),
            flop: fg,
            t1: dig,
            t2: g2,
            against: None,
        },
        NetRow {
            name: "4-32-3 ReLU, SGD, rows, batch 120 (Network)".into(),
            flop: fi,
            t1: iris,
            t2: None,
            against: Some(("Mlp<4, 32, 3>".into(), mlp_iris)),
        },
    ]
}

/// Median seconds per `predict_one` of a 4-16-8-3 tanh/relu network, over 64 inputs in turn.
fn net_predict_one_secs(samples: usize) -> f64 {
    use fusedprop::{Dense, Relu, SoftmaxCrossEntropy, Tanh, chain};
    let x = rows::<4>(64, 30);
    let net = fusedprop::Network::<
        chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>],
        SoftmaxCrossEntropy,
    >::new(7);
    let mut i = 0;
    median_secs(
        || {
            black_box(net.predict_one(black_box(&x[i & 63])).ok());
            i += 1;
        },
        samples,
        2e-3,
    )
    .0
}

fn print_network_table(rounds: usize, samples: usize, peak1: f64, peak2: f64) {
    let all: Vec<Vec<NetRow>> = (0..rounds).map(|_| network_rows(samples)).collect();
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("## Networks of any depth (`Network`)");
    println!();
    println!(
        "| workload | time/step 1T | GFLOP/s 1T | % peak 1T | GFLOP/s 2T | % peak 2T | against (same round) | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---:|");
    for i in 0..all[0].len() {
        let r = &all[0][i];
        let t1 = med(all.iter().map(|a| a[i].t1).collect());
        let g1 = r.flop as f64 / t1 / 1e9;
        let (g2, p2) = match r.t2 {
            Some(_) => {
                let t2 = med(all.iter().filter_map(|a| a[i].t2).collect());
                let g2 = r.flop as f64 / t2 / 1e9;
                (format!("{g2:.1}"), format!("{:.0}%", 100.0 * g2 / peak2))
            }
            None => ("n/a".into(), "n/a".into()),
        };
        let (against, ratio) = match &r.against {
            Some((what, _)) => {
                let ta = med(all
                    .iter()
                    .filter_map(|a| a[i].against.as_ref().map(|x| x.1))
                    .collect());
                (
                    format!("{what}: {}", fmt_time(ta)),
                    format!("{:.3}", t1 / ta),
                )
            }
            None => ("".into(), "".into()),
        };
        println!(
            "| {} | {} | {g1:.1} | {:.0}% | {g2} | {p2} | {against} | {ratio} |",
            r.name,
            fmt_time(t1),
            100.0 * g1 / peak1
        );
    }
    let p1: Vec<f64> = (0..rounds).map(|_| net_predict_one_secs(samples)).collect();
    let pm: Vec<f64> = (0..rounds).map(|_| predict_one_secs(samples)).collect();
    println!();
    println!(
        "`predict_one` of a 4-16-8-3 tanh/relu `Network`: {:.1} ns (the `Mlp<4, 32, 3>` latency path in the same run: {:.1} ns). Ratio = network time / comparison time (below 1: faster).",
        med(p1) * 1e9,
        med(pm) * 1e9
    );
}

fn fmt_time(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.2} us", s * 1e6)
    } else {
        format!("{:.3} ms", s * 1e3)
    }
}

fn main() {
    let opts = parse_opts();
    let start = Instant::now();
    let (best1, peak1) = common::fma_peak_gflops(200_000, 15);
    if opts.headline {
        println!("# fusedprop headline figures");
        println!();
        println!(
            "SIMD level: `{SIMD_LEVEL}`; FMA peak of this build measured in this run: {peak1:.1} ({best1:.1}) GFLOP/s on 1 thread (median of 15, best in brackets); {}.",
            if opts.quick {
                "one round (--quick)"
            } else {
                "medians of three rounds"
            }
        );
        if let Some(hint) = fusedprop::simd_hint() {
            println!();
            println!("> {hint}");
        }
        println!();
        print_headline(&headline(opts), peak1);
        println!();
        println!("Report took {:.1} s.", start.elapsed().as_secs_f64());
        return;
    }
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
    let rounds: Vec<Vec<Row>> = (0..if opts.quick { 1 } else { 3 })
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
    print_network_table(
        if opts.quick { 1 } else { 3 },
        if opts.quick { 5 } else { 11 },
        peak1,
        peak2,
    );
    println!();
    print_headline(&headline(opts), peak1);
    println!();
    println!(
        "FLOP per sample for I-H-O: 2(IH+HO) forward + 2(IH+HO) weight gradients + 2HO input gradient. 2T = `train_step_par` on a 2-thread rayon pool (serial below `PAR_MIN_FLOP`). \"best\" is the fastest timed group over all rounds: on a machine shared with other work, steps of a millisecond or more are often preempted, which inflates medians. Report took {:.1} s.",
        start.elapsed().as_secs_f64()
    );
}
