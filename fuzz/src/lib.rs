//! Shared pieces of the fuzz targets: input builders on top of `arbitrary`, an f64 oracle of
//! every kernel (plain loops, written to be obviously right), and the error bounds the
//! differential checks use.
//!
//! `fusedprop::reference` (the crate's own oracle) lives on another branch; this one is kept
//! deliberately small and independent so that a bug in one oracle cannot hide in the other.

use arbitrary::{Result, Unstructured};

/// Unit roundoff of `f32` (half an ulp of 1).
pub const U32: f64 = f32::EPSILON as f64 / 2.0;

/// Absolute slack for subnormal results: each product or sum whose result is below
/// `f32::MIN_POSITIVE` may lose up to half of `2^-149` absolutely; we allow far more.
pub const TINY: f64 = 1e-36;

/// Hand-picked edge values (STYLE.md, "Tests"): signed zeros, one, the subnormal and normal
/// boundaries, values near `exp`'s overflow and underflow, the crate's documented logit range,
/// the largest finite values, infinities and NaN.
pub const EDGE: [f32; 24] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    1e-45,
    f32::EPSILON,
    88.0,
    -88.0,
    88.72,
    -103.9,
    1e10,
    -1e10,
    1e30,
    -1e30,
    1e37,
    f32::MAX,
    f32::MIN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    -f32::NAN,
];

/// Any `f32`: mostly small moderate values (so that the arithmetic is exercised), often an
/// edge value, sometimes raw bits (every NaN payload, every subnormal).
pub fn any_f32(u: &mut Unstructured) -> Result<f32> {
    let tag: u8 = u.arbitrary()?;
    Ok(match tag % 8 {
        0 => EDGE[usize::from(u.arbitrary::<u8>()?) % EDGE.len()],
        1 => f32::from_bits(u.arbitrary()?),
        _ => moderate(u)?,
    })
}

/// A finite `f32`: small moderate values, finite edge values, or a wide range of magnitudes.
pub fn finite_f32(u: &mut Unstructured) -> Result<f32> {
    let tag: u8 = u.arbitrary()?;
    Ok(match tag % 8 {
        0 => {
            let v = EDGE[usize::from(u.arbitrary::<u8>()?) % EDGE.len()];
            if v.is_finite() { v } else { 1.0 }
        }
        1 => {
            // mantissa * 2^e over a wide range of exponents.
            let m = f32::from(u.arbitrary::<i16>()?) / 32768.0;
            let e = i32::from(u.arbitrary::<i8>()?) % 40;
            m * 2f32.powi(e)
        }
        _ => moderate(u)?,
    })
}

/// An extreme finite weight: mostly huge magnitudes (`1e10` to `f32::MAX`), with a few
/// small values so that some units stay alive. Huge biases make the zero-padded lanes of a
/// partial block (zero inputs, so activations `relu(b1)`) overflow where the real samples
/// do not (issue 9, item 5).
pub fn extreme_f32(u: &mut Unstructured) -> Result<f32> {
    const X: [f32; 16] = [
        1e10,
        -1e10,
        1e20,
        -1e20,
        1e30,
        -1e30,
        1e37,
        -1e37,
        1e38,
        -1e38,
        f32::MAX,
        f32::MIN,
        0.0,
        1.0,
        -1.0,
        1e-3,
    ];
    Ok(X[usize::from(u.arbitrary::<u8>()?) % X.len()])
}

/// A small value: multiples of 1/64 in `[-8, 8)`, with zero and small integers common.
pub fn moderate(u: &mut Unstructured) -> Result<f32> {
    Ok(f32::from(u.arbitrary::<i16>()? % 512) / 64.0)
}

/// A row of `N` values from `gen`.
pub fn row<const N: usize>(
    u: &mut Unstructured,
    generate: fn(&mut Unstructured) -> Result<f32>,
) -> Result<[f32; N]> {
    let mut r = [0.0; N];
    for v in &mut r {
        *v = generate(u)?;
    }
    Ok(r)
}

/// A batch of `n` rows built cheaply from a small pool of fuzzer-chosen rows (cycled), so that
/// short inputs still reach batches longer than a training tile; optionally one row at a
/// chosen index is replaced by a distinct row, so a bad value can sit in any block of any tile.
pub fn batch<const N: usize>(
    u: &mut Unstructured,
    n: usize,
    generate: fn(&mut Unstructured) -> Result<f32>,
) -> Result<Vec<[f32; N]>> {
    let pool_len = 1 + usize::from(u.arbitrary::<u8>()?) % 8;
    let mut pool = Vec::with_capacity(pool_len);
    for _ in 0..pool_len {
        pool.push(row::<N>(u, generate)?);
    }
    let mut rows: Vec<[f32; N]> = (0..n).map(|i| pool[i % pool_len]).collect();
    if n > 0 && u.arbitrary::<bool>()? {
        let at = usize::from(u.arbitrary::<u16>()?) % n;
        rows[at] = row::<N>(u, generate)?;
    }
    Ok(rows)
}

/// A batch length: empty and single samples, lengths around the 16-sample block and the
/// 128-sample tile, and anything up to 300.
pub fn batch_len(u: &mut Unstructured) -> Result<usize> {
    // An exhausted input reads zeros: index 0 (and so the default) is a real batch.
    const SPECIAL: [usize; 12] = [16, 1, 15, 0, 17, 127, 128, 129, 255, 256, 257, 300];
    let tag: u8 = u.arbitrary()?;
    Ok(if tag.is_multiple_of(4) {
        SPECIAL[usize::from(u.arbitrary::<u8>()?) % SPECIAL.len()]
    } else {
        usize::from(u.arbitrary::<u16>()?) % 301
    })
}

/// `n` labels for `classes` classes, cycled from a small pool; usually in range, sometimes
/// any `u32`. Returns the labels and whether all are in range.
pub fn labels(u: &mut Unstructured, n: usize, classes: usize) -> Result<Vec<u32>> {
    let pool_len = 1 + usize::from(u.arbitrary::<u8>()?) % 8;
    let mut pool = Vec::with_capacity(pool_len);
    for _ in 0..pool_len {
        let raw: u32 = u.arbitrary()?;
        let tag: u8 = u.arbitrary()?;
        pool.push(if tag.is_multiple_of(16) {
            raw
        } else {
            raw % classes as u32
        });
    }
    let mut out: Vec<u32> = (0..n).map(|i| pool[i % pool_len]).collect();
    if n > 0 && u.arbitrary::<u8>()? % 8 == 7 {
        let at = usize::from(u.arbitrary::<u16>()?) % n;
        out[at] = u.arbitrary()?;
    }
    Ok(out)
}

/// Possibly perturbs a length to make a mismatch (one time in eight; never when the input
/// is exhausted, which reads as zeros, so that short inputs reach the real work).
pub fn maybe_mismatch(u: &mut Unstructured, n: usize) -> Result<usize> {
    Ok(if u.arbitrary::<u8>()? % 8 == 7 {
        usize::from(u.arbitrary::<u16>()?) % 301
    } else {
        n
    })
}

/// A learning rate: usually a sensible one, sometimes NaN, infinite, zero, negative, tiny,
/// huge or any bit pattern.
pub fn learning_rate(u: &mut Unstructured) -> Result<f32> {
    const LR: [f32; 12] = [
        0.01,
        0.1,
        1.0,
        0.0,
        -0.0,
        -0.01,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-45,
        1e30,
        f32::MAX,
    ];
    let tag: u8 = u.arbitrary()?;
    Ok(match tag % 4 {
        0 => LR[usize::from(u.arbitrary::<u8>()?) % LR.len()],
        1 => f32::from_bits(u.arbitrary()?),
        _ => f32::from(u.arbitrary::<u8>()?) / 256.0 + 1.0 / 1024.0,
    })
}

/// Bit patterns of a slice, for "bit for bit unchanged" comparisons (-0 != +0). Every NaN
/// maps to one pattern: NaN payloads are not part of any contract.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter()
        .map(|x| {
            if x.is_nan() {
                f32::NAN.to_bits()
            } else {
                x.to_bits()
            }
        })
        .collect()
}

/// Whether `got` is within `tol` of `want` (both finite).
pub fn close(got: f32, want: f64, tol: f64) -> bool {
    got.is_finite() && (f64::from(got) - want).abs() <= tol
}

/// Asserts `close`, with a message naming the quantity. The name is built only on failure:
/// formatting it for every check cost the targets most of their speed.
#[track_caller]
pub fn assert_close(what: impl FnOnce() -> String, got: f32, want: f64, tol: f64) {
    if !close(got, want, tol) {
        panic!(
            "{}: got {got:e}, want {want:e} +- {tol:e} (off by {:e})",
            what(),
            (f64::from(got) - want).abs()
        );
    }
}

/// Error bound of a sum of `n` terms whose absolute values add up to `mag`, for any
/// summation order (lane-wise, pairwise, sequential, with or without FMA):
/// `gamma_n * mag` with `gamma_n = n u / (1 - n u)`, doubled for safety, plus subnormal slack.
pub fn sum_tol(n: usize, mag: f64) -> f64 {
    let nu = (n as f64 + 1.0) * U32;
    2.0 * nu / (1.0 - nu) * mag + TINY * (n as f64 + 1.0)
}

/// The f64 oracle: plain loops over rows.
pub mod oracle {
    use super::sum_tol;

    /// A value and a bound on the error of the kernel's f32 result against it.
    #[derive(Clone, Copy, Debug)]
    pub struct Est {
        /// The exact (f64) value for the f32 inputs.
        pub v: f64,
        /// The allowed error of the f32 result.
        pub tol: f64,
    }

    /// `y = W x + b` for one sample, with the bound of an `I + 1` term f32 sum.
    pub fn dense<const I: usize, const O: usize>(
        w: &[[f32; I]; O],
        b: &[f32; O],
        x: &[f32; I],
    ) -> [Est; O] {
        core::array::from_fn(|j| {
            let mut v = f64::from(b[j]);
            let mut mag = f64::from(b[j]).abs();
            for k in 0..I {
                let t = f64::from(w[j][k]) * f64::from(x[k]);
                v += t;
                mag += t.abs();
            }
            Est {
                v,
                tol: sum_tol(I + 1, mag),
            }
        })
    }

    /// Dense backward over a batch: `(dW, db, dx)` with their bounds.
    #[allow(clippy::type_complexity)]
    pub fn dense_backward<const I: usize, const O: usize>(
        w: &[[f32; I]; O],
        x: &[[f32; I]],
        dy: &[[f32; O]],
    ) -> ([[Est; I]; O], [Est; O], Vec<[Est; I]>) {
        let n = x.len();
        let dw = core::array::from_fn(|j| {
            core::array::from_fn(|k| {
                let (mut v, mut mag) = (0.0, 0.0);
                for (xs, ds) in x.iter().zip(dy) {
                    let t = f64::from(ds[j]) * f64::from(xs[k]);
                    v += t;
                    mag += t.abs();
                }
                Est {
                    v,
                    tol: sum_tol(n, mag),
                }
            })
        });
        let db = core::array::from_fn(|j| {
            let (mut v, mut mag) = (0.0, 0.0);
            for ds in dy {
                v += f64::from(ds[j]);
                mag += f64::from(ds[j]).abs();
            }
            Est {
                v,
                tol: sum_tol(n, mag),
            }
        });
        let dx = dy
            .iter()
            .map(|ds| {
                core::array::from_fn(|k| {
                    let (mut v, mut mag) = (0.0, 0.0);
                    for j in 0..O {
                        let t = f64::from(w[j][k]) * f64::from(ds[j]);
                        v += t;
                        mag += t.abs();
                    }
                    Est {
                        v,
                        tol: sum_tol(O, mag),
                    }
                })
            })
            .collect();
        (dw, db, dx)
    }

    /// Softmax of a row of exact values.
    pub fn softmax(z: &[f64]) -> Vec<f64> {
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    /// `log softmax(z)[j] = (z_j - max z) - ln sum_i e^(z_i - max z)`, in that order: with
    /// `|z| ~ 1e30`, `max z + ln(...)` would lose the logarithm entirely.
    pub fn log_softmax(z: &[f64], j: usize) -> f64 {
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (z[j] - m) - z.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
    }

    /// Everything the oracle knows about one sample of an `Mlp` for one label.
    pub struct MlpSample<const H: usize, const O: usize> {
        /// Hidden activations (after ReLU) with bounds.
        pub a: [Est; H],
        /// `true` where the pre-activation is too close to 0 for the f32 mask to be known.
        pub near_kink: bool,
        /// Logits with bounds.
        pub z: [Est; O],
        /// Probabilities.
        pub p: Vec<f64>,
        /// The bound on every probability's error.
        pub p_tol: f64,
    }

    /// One sample through Dense -> ReLU -> Dense -> softmax, with error bounds propagated:
    /// an error `e_k` of each activation reaches logit `j` as `sum_k |W2_jk| e_k`; a logit
    /// error `d` moves every probability by at most `2 d` (softmax's Jacobian has row sums of
    /// absolute values at most `2 p_j`), and `exp` and the division add a few ulps.
    pub fn mlp_sample<const I: usize, const H: usize, const O: usize>(
        w1: &[[f32; I]; H],
        b1: &[f32; H],
        w2: &[[f32; H]; O],
        b2: &[f32; O],
        x: &[f32; I],
    ) -> MlpSample<H, O> {
        let h = dense(w1, b1, x);
        let near_kink = h.iter().any(|e| e.v.abs() <= e.tol);
        let a: [Est; H] = core::array::from_fn(|k| Est {
            v: h[k].v.max(0.0),
            tol: h[k].tol,
        });
        let z: [Est; O] = core::array::from_fn(|j| {
            let mut v = f64::from(b2[j]);
            let mut mag = f64::from(b2[j]).abs();
            let mut prop = 0.0;
            for k in 0..H {
                let t = f64::from(w2[j][k]) * a[k].v;
                v += t;
                mag += t.abs() + (f64::from(w2[j][k]) * a[k].tol).abs();
                prop += f64::from(w2[j][k]).abs() * a[k].tol;
            }
            Est {
                v,
                tol: sum_tol(H + 1, mag) + prop,
            }
        });
        let zv: Vec<f64> = z.iter().map(|e| e.v).collect();
        let p = softmax(&zv);
        let dmax = z.iter().map(|e| e.tol).fold(0.0, f64::max);
        MlpSample {
            a,
            near_kink,
            z,
            p,
            p_tol: 2.0 * dmax + 1e-6,
        }
    }
}

/// The error the cheap checks at the top of every batch function must give, in their order:
/// empty batch, label count, label range. `None` if they pass.
pub fn precheck(n: usize, labels: &[u32], classes: usize) -> Option<fusedprop::Error> {
    if n == 0 {
        return Some(fusedprop::Error::EmptyBatch);
    }
    if labels.len() != n {
        return Some(fusedprop::Error::LengthMismatch {
            what: "labels",
            expected: n,
            found: labels.len(),
        });
    }
    labels
        .iter()
        .position(|&l| l as usize >= classes)
        .map(|index| fusedprop::Error::LabelOutOfRange {
            index,
            label: labels[index],
            classes,
        })
}

/// The batch with its last, partial block filled up with copies of its first sample, so that
/// no lane of any block is zero padding. The filled batch holds every sample of the original
/// (and more copies of one), so wherever its loss is finite and far from overflowing, and
/// its step is accepted, the original's must be too: the padding lanes of a partial block
/// must never influence a result (issue 9, item 5). `x` and `labels` must be non-empty and
/// of one length.
pub fn fill_last_block<const N: usize>(
    x: &[[f32; N]],
    labels: &[u32],
) -> (Vec<[f32; N]>, Vec<u32>) {
    let mut xe = x.to_vec();
    let mut ye = labels.to_vec();
    while xe.len() % fusedprop::BLOCK_SAMPLES != 0 {
        xe.push(x[0]);
        ye.push(labels[0]);
    }
    (xe, ye)
}

/// Whether a mean loss over `n` samples is far enough from overflowing that a batch with a
/// subset of those samples cannot overflow its sum either (a quarter of `f32::MAX`).
pub fn far_from_overflow(mean: f32, n: usize) -> bool {
    f64::from(mean) * n as f64 <= f64::from(f32::MAX) / 4.0
}

/// Index of the first row holding a NaN or an infinity.
pub fn first_non_finite_row<const N: usize>(rows: &[[f32; N]]) -> Option<usize> {
    rows.iter().position(|r| r.iter().any(|v| !v.is_finite()))
}

/// Whether every value is finite and at most `limit` in absolute value.
pub fn all_within(v: impl IntoIterator<Item = f32>, limit: f32) -> bool {
    v.into_iter().all(|x| x.is_finite() && x.abs() <= limit)
}

/// With `FUZZ_OUTCOMES=1` in the environment, prints one line per input naming what happened
/// (`ok`, or the error), so that `fuzz/run.sh`'s corpus can be checked for reaching the
/// interesting paths: run the target binary over its corpus with `-runs=0` and count lines.
pub fn outcome(what: impl core::fmt::Debug) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("FUZZ_OUTCOMES").is_some()) {
        eprintln!("outcome: {what:?}");
    }
}

/// `n` input rows of a network, cycled from a small pool (as [`batch`]).
pub fn rows_of<L: fusedprop::Layer>(
    u: &mut Unstructured,
    n: usize,
) -> Result<Vec<fusedprop::network::InRow<L>>> {
    let pool_len = 1 + usize::from(u.arbitrary::<u8>()?) % 8;
    let mut pool = Vec::with_capacity(pool_len);
    for _ in 0..pool_len {
        let mut r = fusedprop::network::zero_input::<L>();
        for v in r.as_mut() {
            *v = any_f32(u)?;
        }
        pool.push(r);
    }
    Ok((0..n).map(|i| pool[i % pool_len]).collect())
}
