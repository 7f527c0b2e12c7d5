//! `cargo bench`: groups `kernels`, `training`, `inference`, `parallel` (feature `rayon`)
//! and `peak`. Throughputs are in FLOP (reported as "elements/s": read Gelem/s as GFLOP/s)
//! or in samples; every optimized kernel sits beside the naive `f32` reference of
//! `common::naive`. Seeds are fixed. Compare `training`/`kernels` GFLOP/s with the `peak`
//! group of the same run.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{naive, rows};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fusedprop::{Accumulate, Dense, DenseGrads, Mlp, PackedBatch, Sgd, Workspace};

const BATCH: usize = 256;

fn dense_shape<const I: usize, const O: usize>(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernels");
    // 20 samples: the naive 784->256 takes ~50 ms an iteration.
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    let mut rng = fusedprop::rng::SplitMix64::new(1);
    let layer: Box<Dense<I, O>> = Box::new(Dense::glorot(&mut rng));
    let x = rows::<I>(BATCH, 2);
    let dy = rows::<O>(BATCH, 3);
    let mut y = vec![[0.0f32; O]; BATCH];
    let mut dx = vec![[0.0f32; I]; BATCH];
    let mut grads: Box<DenseGrads<I, O>> = Box::new(DenseGrads::ZERO);
    let shape = format!("{I}->{O}");

    g.throughput(Throughput::Elements(common::dense_forward_flop(
        I, O, BATCH,
    )));
    g.bench_function(BenchmarkId::new("dense_forward", &shape), |b| {
        b.iter(|| layer.forward_batch(black_box(&x), &mut y).unwrap())
    });
    g.bench_function(BenchmarkId::new("dense_forward_naive", &shape), |b| {
        b.iter(|| naive::dense_forward(layer.weights(), layer.bias(), black_box(&x), &mut y))
    });

    g.throughput(Throughput::Elements(common::dense_backward_flop(
        I, O, BATCH,
    )));
    g.bench_function(BenchmarkId::new("dense_backward", &shape), |b| {
        b.iter(|| {
            layer
                .backward(
                    black_box(&x),
                    &dy,
                    &mut grads,
                    Accumulate::Overwrite,
                    Some(&mut dx),
                )
                .unwrap()
        })
    });
    let mut dw = Box::new([[0.0f32; I]; O]);
    let mut db = [0.0f32; O];
    g.bench_function(BenchmarkId::new("dense_backward_naive", &shape), |b| {
        b.iter(|| {
            naive::dense_backward(
                layer.weights(),
                black_box(&x),
                &dy,
                &mut dw,
                &mut db,
                Some(&mut dx),
            )
        })
    });
    g.finish();
}

fn kernels(c: &mut Criterion) {
    dense_shape::<4, 32>(c);
    dense_shape::<32, 3>(c);
    dense_shape::<64, 128>(c);
    dense_shape::<128, 10>(c);
    dense_shape::<784, 256>(c);
    dense_shape::<256, 10>(c);
    dense_shape::<33, 17>(c);

    let mut g = c.benchmark_group("kernels");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let x = rows::<128>(BATCH, 4);
    let mut y = vec![[0.0f32; 128]; BATCH];
    g.throughput(Throughput::Elements((BATCH * 128) as u64));
    g.bench_function(BenchmarkId::new("relu", "256x128"), |b| {
        b.iter(|| fusedprop::relu(black_box(&x), &mut y).unwrap())
    });
    g.bench_function(BenchmarkId::new("relu_naive", "256x128"), |b| {
        b.iter(|| naive::relu(black_box(&x), &mut y))
    });
    let z = rows::<10>(BATCH, 5);
    let labels = common::labels(BATCH, 10, 6);
    let mut dz = vec![[0.0f32; 10]; BATCH];
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new("softmax_xent", "256x10"), |b| {
        b.iter(|| fusedprop::softmax_cross_entropy_backward(black_box(&z), &labels, &mut dz))
    });
    g.bench_function(BenchmarkId::new("softmax_xent_naive", "256x10"), |b| {
        b.iter(|| naive::softmax_xent(black_box(&z), &labels, &mut dz))
    });
    g.finish();
}

fn train_bench<const I: usize, const H: usize, const O: usize>(
    c: &mut Criterion,
    name: &str,
    n: usize,
) {
    let mut g = c.benchmark_group("training");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let x = rows::<I>(n, 10);
    let y = common::labels(n, O, 11);
    let sgd = Sgd::new(1e-3).unwrap();
    let mut model: Box<Mlp<I, H, O>> = Box::new(Mlp::ZERO);
    model.init_glorot(7);
    let mut naive_model = naive::Mlp::from(&model);
    let mut ws: Box<Workspace<I, H, O>> = Box::new(Workspace::ZERO);
    g.throughput(Throughput::Elements(common::mlp_step_flop(I, H, O, n)));
    g.bench_function(BenchmarkId::new("train_step", name), |b| {
        b.iter(|| model.train_step(black_box(&x), &y, &sgd, &mut ws).unwrap())
    });
    g.bench_function(BenchmarkId::new("train_step_naive", name), |b| {
        b.iter(|| naive_model.train_step(black_box(&x), &y, 1e-3))
    });
    g.finish();
}

fn training(c: &mut Criterion) {
    // Iris-sized epoch: the packed full batch, the rows path and the naive reference.
    {
        let mut g = c.benchmark_group("training");
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        let x = rows::<4>(120, 20);
        let y = common::labels(120, 3, 21);
        let batch = PackedBatch::<4, 8>::from_rows(&x, &y).unwrap();
        let sgd = Sgd::new(1e-3).unwrap();
        let mut model = Mlp::<4, 32, 3>::new(7);
        let mut naive_model = naive::Mlp::from(&model);
        let mut ws = Workspace::new();
        g.throughput(Throughput::Elements(common::mlp_step_flop(4, 32, 3, 120)));
        g.bench_function(BenchmarkId::new("iris_epoch_packed", "4-32-3x120"), |b| {
            b.iter(|| {
                model
                    .train_step_packed(black_box(&batch), &sgd, &mut ws)
                    .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("iris_epoch_rows", "4-32-3x120"), |b| {
            b.iter(|| model.train_step(black_box(&x), &y, &sgd, &mut ws).unwrap())
        });
        g.bench_function(BenchmarkId::new("iris_epoch_naive", "4-32-3x120"), |b| {
            b.iter(|| naive_model.train_step(black_box(&x), &y, 1e-3))
        });
        g.finish();
    }
    train_bench::<64, 128, 10>(c, "64-128-10x1797", 1797);
    train_bench::<784, 256, 10>(c, "784-256-10x256", 256);
}

fn inference(c: &mut Criterion) {
    let mut g = c.benchmark_group("inference");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let iris = Mlp::<4, 32, 3>::new(7);
    let iris_naive = naive::Mlp::from(&iris);
    let x4 = rows::<4>(1024, 30);
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("predict_one", "4-32-3"), |b| {
        b.iter(|| iris.predict_one(black_box(&x4[0])).unwrap())
    });
    g.bench_function(BenchmarkId::new("predict_one_naive", "4-32-3"), |b| {
        b.iter(|| iris_naive.predict_one(black_box(&x4[0])))
    });
    let digits = Mlp::<64, 128, 10>::new(7);
    let digits_naive = naive::Mlp::from(&digits);
    let x64 = rows::<64>(1024, 31);
    g.bench_function(BenchmarkId::new("predict_one", "64-128-10"), |b| {
        b.iter(|| digits.predict_one(black_box(&x64[0])).unwrap())
    });
    g.bench_function(BenchmarkId::new("predict_one_naive", "64-128-10"), |b| {
        b.iter(|| digits_naive.predict_one(black_box(&x64[0])))
    });
    let mut out = vec![0u32; 1024];
    g.throughput(Throughput::Elements(1024));
    g.bench_function(BenchmarkId::new("predict_batch", "4-32-3x1024"), |b| {
        b.iter(|| iris.predict(black_box(&x4), &mut out).unwrap())
    });
    g.bench_function(BenchmarkId::new("predict_batch", "64-128-10x1024"), |b| {
        b.iter(|| digits.predict(black_box(&x64), &mut out).unwrap())
    });
    g.bench_function(
        BenchmarkId::new("predict_batch_naive", "64-128-10x1024"),
        |b| {
            b.iter(|| {
                for (o, x) in out.iter_mut().zip(black_box(&x64)) {
                    *o = digits_naive.predict_one(x);
                }
            })
        },
    );
    g.finish();
}

#[cfg(feature = "rayon")]
fn par_bench<const I: usize, const H: usize, const O: usize, const C: usize>(
    c: &mut Criterion,
    name: &str,
    n: usize,
) {
    use fusedprop::ParWorkspace;
    let mut g = c.benchmark_group("parallel");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    let x = rows::<I>(n, 40);
    let y = common::labels(n, O, 41);
    let sgd = Sgd::new(1e-3).unwrap();
    let mut model: Box<Mlp<I, H, O>> = Box::new(Mlp::ZERO);
    model.init_glorot(7);
    let mut ws: Box<Workspace<I, H, O>> = Box::new(Workspace::ZERO);
    let mut pws = ParWorkspace::<I, H, O, C>::new_boxed();
    let id = format!("{name}x{n}");
    g.throughput(Throughput::Elements(common::mlp_step_flop(I, H, O, n)));
    g.bench_function(BenchmarkId::new("serial", &id), |b| {
        b.iter(|| model.train_step(black_box(&x), &y, &sgd, &mut ws).unwrap())
    });
    g.bench_function(BenchmarkId::new("train_step_par", &id), |b| {
        b.iter(|| {
            model
                .train_step_par(black_box(&x), &y, &sgd, &mut pws)
                .unwrap()
        })
    });
    pws.set_min_flop(0);
    g.bench_function(BenchmarkId::new("forced_par", &id), |b| {
        b.iter(|| {
            model
                .train_step_par(black_box(&x), &y, &sgd, &mut pws)
                .unwrap()
        })
    });
    g.finish();
}

#[cfg(feature = "rayon")]
fn parallel(c: &mut Criterion) {
    // Slots per round: few for wide models (a tile is ~160 MFLOP), many for tiny ones (a
    // 4-32-3 tile is ~140 kFLOP, far less than a fork-join).
    par_bench::<784, 256, 10, 4>(c, "784-256-10", 256);
    par_bench::<784, 256, 10, 4>(c, "784-256-10", 1024);
    par_bench::<784, 256, 10, 4>(c, "784-256-10", 8192);
    par_bench::<4, 32, 3, 64>(c, "4-32-3", 120);
    par_bench::<4, 32, 3, 64>(c, "4-32-3", 65536);
}

#[cfg(not(feature = "rayon"))]
fn parallel(_: &mut Criterion) {
    eprintln!("group `parallel` needs `--features rayon`");
}

fn peak(c: &mut Criterion) {
    let mut g = c.benchmark_group("peak");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let iters = 10_000;
    g.throughput(Throughput::Elements(common::fma_chains_flop(iters)));
    g.bench_function("fma_chains", |b| {
        b.iter(|| common::fma_chains(black_box(iters)))
    });
    g.finish();
    eprintln!("SIMD level: {}", fusedprop::SIMD_LEVEL);
}

criterion_group!(benches, peak, kernels, training, inference, parallel);
criterion_main!(benches);
