//! Shared by the benches and `examples/perf_report.rs`: seeded input builders, FLOP counts,
//! the FMA peak probe, and a naive `f32` reference (plain scalar loops over rows, written to
//! be obviously right, not fast) that every report shows beside the optimized kernels.
#![allow(dead_code, reason = "each bench or example uses part of this module")]

use std::hint::black_box;
use std::time::Instant;

use fusedprop::rng::SplitMix64;

/// `n` rows of `N` features uniform in `[-1, 1)`, from `seed`.
pub fn rows<const N: usize>(n: usize, seed: u64) -> Vec<[f32; N]> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| std::array::from_fn(|_| rng.uniform(1.0)))
        .collect()
}

/// `n` labels in `0..classes`, from `seed`.
pub fn labels(n: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| (rng.next_u64() % classes as u64) as u32)
        .collect()
}

/// FLOP of a dense layer's forward pass over `n` samples: a multiply-add per weight.
pub fn dense_forward_flop(i: usize, o: usize, n: usize) -> u64 {
    (2 * i * o * n) as u64
}

/// FLOP of a dense layer's backward pass with the input gradient: weight gradient and
/// input gradient, a multiply-add per weight each.
pub fn dense_backward_flop(i: usize, o: usize, n: usize) -> u64 {
    (4 * i * o * n) as u64
}

/// FLOP of one training step of an `I-H-O` MLP on `n` samples:
/// `2(IH + HO)` forward + `2(IH + HO)` weight gradients + `2HO` input gradient, per sample.
pub fn mlp_step_flop(i: usize, h: usize, o: usize, n: usize) -> u64 {
    ((4 * (i * h + h * o) + 2 * h * o) * n) as u64
}

/// The machine's FMA peak on one thread, in GFLOP/s: [`PEAK_CHAINS`] independent chains of
/// [`PeakLane`] FMAs, over `reps` runs of `iters` rounds: `(best, median)`. Compare medians
/// with medians on a shared machine.
pub fn fma_peak_gflops(iters: usize, reps: usize) -> (f64, f64) {
    let mut v: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            let r = fma_chains(iters);
            let secs = start.elapsed().as_secs_f64();
            black_box(r);
            fma_chains_flop(iters) as f64 / secs / 1e9
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() - 1], v[v.len() / 2])
}

// PERF: the probe must keep every chain in a register, or it measures spills, not the FMA
// pipes: a first version kept 16 chains of `f32x16` everywhere, which is 32 `ymm` registers
// in an AVX2 build (16 exist), and on a Zen 3 core (AVX2 only) it measured 31 GFLOP/s, so
// that `perf_report` printed 784-256-10 at 179% of "the peak". So the probe uses the widest
// vector the build has, and enough chains to cover the FMA latency on every FMA pipe (4
// cycles x 2 pipes on Zen 3 and 4 and Intel's cores, x 4 pipes on Apple's and Neoverse
// V-class cores) with room left for the two operands.
/// The vector of the FMA peak probe: one register of the widest SIMD the build has.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
pub type PeakLane = wide::f32x16;
/// The vector of the FMA peak probe: one register of the widest SIMD the build has.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx",
    not(target_feature = "avx512f")
))]
pub type PeakLane = wide::f32x8;
/// The vector of the FMA peak probe: one register of the widest SIMD the build has.
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
pub type PeakLane = wide::f32x4;

/// Lanes of [`PeakLane`].
pub const PEAK_LANES: usize = core::mem::size_of::<PeakLane>() / 4;

/// Independent FMA chains of the probe: at most the vector registers less two (32 with
/// AVX-512 and on aarch64, 16 otherwise).
pub const PEAK_CHAINS: usize = if cfg!(target_arch = "aarch64") {
    24
} else if cfg!(all(target_arch = "x86_64", target_feature = "avx512f")) {
    16
} else {
    12
};

/// FLOP of [`fma_chains`]: [`PEAK_CHAINS`] chains x [`PEAK_LANES`] lanes x 2 FLOP per round.
pub fn fma_chains_flop(iters: usize) -> u64 {
    (iters * PEAK_CHAINS * PEAK_LANES * 2) as u64
}

/// `iters` rounds of [`PEAK_CHAINS`] independent FMA chains on [`PeakLane`].
#[inline(never)]
pub fn fma_chains(iters: usize) -> f32 {
    let a = black_box(PeakLane::splat(0.999_999));
    let b = black_box(PeakLane::splat(1e-7));
    let mut acc = [PeakLane::splat(1.0); PEAK_CHAINS];
    for (i, v) in acc.iter_mut().enumerate() {
        *v += PeakLane::splat(i as f32);
    }
    for _ in 0..iters {
        for v in &mut acc {
            *v = v.mul_add(a, b);
        }
    }
    acc.iter().fold(0.0, |s, v| s + v.reduce_add())
}

/// Naive `f32` reference: plain loops over row-major data, the way one would first write
/// them. Weights are `[out][in]` like the crate's.
#[allow(
    clippy::needless_range_loop,
    reason = "the reference is written as plain index loops on purpose"
)]
pub mod naive {
    /// `y[s][j] = b[j] + sum_k w[j][k] x[s][k]`.
    pub fn dense_forward<const I: usize, const O: usize>(
        w: &[[f32; I]; O],
        b: &[f32; O],
        x: &[[f32; I]],
        y: &mut [[f32; O]],
    ) {
        for (xs, ys) in x.iter().zip(y.iter_mut()) {
            for j in 0..O {
                let mut acc = b[j];
                for k in 0..I {
                    acc += w[j][k] * xs[k];
                }
                ys[j] = acc;
            }
        }
    }

    /// `dw = sum_s dy[s] x[s]^T`, `db = sum_s dy[s]`, `dx[s] = w^T dy[s]`.
    pub fn dense_backward<const I: usize, const O: usize>(
        w: &[[f32; I]; O],
        x: &[[f32; I]],
        dy: &[[f32; O]],
        dw: &mut [[f32; I]; O],
        db: &mut [f32; O],
        mut dx: Option<&mut [[f32; I]]>,
    ) {
        for row in dw.iter_mut() {
            *row = [0.0; I];
        }
        *db = [0.0; O];
        for (s, (xs, dys)) in x.iter().zip(dy).enumerate() {
            for j in 0..O {
                db[j] += dys[j];
                for k in 0..I {
                    dw[j][k] += dys[j] * xs[k];
                }
            }
            if let Some(dx) = dx.as_deref_mut() {
                let dxs = &mut dx[s];
                *dxs = [0.0; I];
                for j in 0..O {
                    for k in 0..I {
                        dxs[k] += w[j][k] * dys[j];
                    }
                }
            }
        }
    }

    /// `max(x, 0)`.
    pub fn relu<const N: usize>(x: &[[f32; N]], y: &mut [[f32; N]]) {
        for (xs, ys) in x.iter().zip(y.iter_mut()) {
            for k in 0..N {
                ys[k] = if xs[k] > 0.0 { xs[k] } else { 0.0 };
            }
        }
    }

    /// Mean cross-entropy and its gradient `(softmax(z) - onehot) / N`.
    pub fn softmax_xent<const O: usize>(z: &[[f32; O]], y: &[u32], dz: &mut [[f32; O]]) -> f32 {
        let inv_n = 1.0 / z.len() as f32;
        let mut total = 0.0;
        for ((zs, &l), ds) in z.iter().zip(y).zip(dz.iter_mut()) {
            let m = zs.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut s = 0.0;
            for j in 0..O {
                ds[j] = (zs[j] - m).exp();
                s += ds[j];
            }
            total += m + s.ln() - zs[l as usize];
            for j in 0..O {
                let onehot = if j == l as usize { 1.0 } else { 0.0 };
                ds[j] = (ds[j] / s - onehot) * inv_n;
            }
        }
        total * inv_n
    }

    /// A naive two-layer perceptron with row buffers (allocated once, reused).
    pub struct Mlp<const I: usize, const H: usize, const O: usize> {
        pub w1: Box<[[f32; I]; H]>,
        pub b1: [f32; H],
        pub w2: Box<[[f32; H]; O]>,
        pub b2: [f32; O],
        a: Vec<[f32; H]>,
        z: Vec<[f32; O]>,
        da: Vec<[f32; H]>,
        dz: Vec<[f32; O]>,
        dw1: Box<[[f32; I]; H]>,
        db1: [f32; H],
        dw2: Box<[[f32; H]; O]>,
        db2: [f32; O],
    }

    impl<const I: usize, const H: usize, const O: usize> Mlp<I, H, O> {
        /// The weights of `model`.
        pub fn from(model: &fusedprop::Mlp<I, H, O>) -> Self {
            let mut w1 = Box::new([[0.0; I]; H]);
            w1.copy_from_slice(model.hidden().weights());
            let mut w2 = Box::new([[0.0; H]; O]);
            w2.copy_from_slice(model.output().weights());
            Self {
                w1,
                b1: *model.hidden().bias(),
                w2,
                b2: *model.output().bias(),
                a: Vec::new(),
                z: Vec::new(),
                da: Vec::new(),
                dz: Vec::new(),
                dw1: Box::new([[0.0; I]; H]),
                db1: [0.0; H],
                dw2: Box::new([[0.0; H]; O]),
                db2: [0.0; O],
            }
        }

        /// The class of largest logit for one sample.
        pub fn predict_one(&self, x: &[f32; I]) -> u32 {
            let mut a = [0.0; H];
            for j in 0..H {
                let mut acc = self.b1[j];
                for k in 0..I {
                    acc += self.w1[j][k] * x[k];
                }
                a[j] = if acc > 0.0 { acc } else { 0.0 };
            }
            let mut best = 0;
            let mut best_z = f32::NEG_INFINITY;
            for j in 0..O {
                let mut acc = self.b2[j];
                for k in 0..H {
                    acc += self.w2[j][k] * a[k];
                }
                if acc > best_z {
                    best_z = acc;
                    best = j as u32;
                }
            }
            best
        }

        /// One SGD step on the batch; returns the mean loss before the update.
        pub fn train_step(&mut self, x: &[[f32; I]], y: &[u32], lr: f32) -> f32 {
            let n = x.len();
            self.a.resize(n, [0.0; H]);
            self.z.resize(n, [0.0; O]);
            self.da.resize(n, [0.0; H]);
            self.dz.resize(n, [0.0; O]);
            dense_forward(&self.w1, &self.b1, x, &mut self.a);
            for row in self.a.iter_mut() {
                for v in row.iter_mut() {
                    *v = if *v > 0.0 { *v } else { 0.0 };
                }
            }
            dense_forward(&self.w2, &self.b2, &self.a, &mut self.z);
            let loss = softmax_xent(&self.z, y, &mut self.dz);
            dense_backward(
                &self.w2,
                &self.a,
                &self.dz,
                &mut self.dw2,
                &mut self.db2,
                Some(&mut self.da),
            );
            for (da, a) in self.da.iter_mut().zip(&self.a) {
                for (d, &v) in da.iter_mut().zip(a) {
                    if v <= 0.0 {
                        *d = 0.0;
                    }
                }
            }
            dense_backward(&self.w1, x, &self.da, &mut self.dw1, &mut self.db1, None);
            for (w, g) in self.w1.iter_mut().flatten().zip(self.dw1.iter().flatten()) {
                *w -= lr * g;
            }
            for (w, g) in self.b1.iter_mut().zip(&self.db1) {
                *w -= lr * g;
            }
            for (w, g) in self.w2.iter_mut().flatten().zip(self.dw2.iter().flatten()) {
                *w -= lr * g;
            }
            for (w, g) in self.b2.iter_mut().zip(&self.db2) {
                *w -= lr * g;
            }
            loss
        }
    }
}
