//! Every `f32` SIMD kernel against the `f64` oracle on the same inputs (dense forward,
//! single and batched; dense backward in both accumulation modes, with and without `dx`;
//! the fused `Dense::backward_sgd`; ReLU and its backward; softmax, log-softmax and their
//! backwards; cross-entropy and the fused softmax-cross-entropy gradient), over shapes and
//! batch lengths around the sixteen-sample block, and the invariants of softmax and the loss.
//! Tolerances come from the one table in `tests/support/mod.rs`.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops read like the formulas they check"
)]

mod support;

use fusedprop::reference as oracle;
use fusedprop::{Accumulate, Dense, DenseGrads, Sgd};
use proptest::prelude::*;
use support::*;

fn layer<const I: usize, const O: usize>(w: [[f32; I]; O], b: [f32; O]) -> Dense<I, O> {
    Dense::from_weights(w, b).expect("finite")
}

/// `sum_k |w_jk x_k| + |b_j|`: the scale of a dense output's sum.
fn dense_scale<const I: usize, const O: usize>(l: &Dense<I, O>, x: &[f32; I], j: usize) -> f64 {
    let w = &l.weights()[j];
    f64::from(l.bias()[j].abs())
        + w.iter()
            .zip(x)
            .map(|(w, x)| f64::from(*w).abs() * f64::from(*x).abs())
            .sum::<f64>()
}

fn check_forward<const I: usize, const O: usize>(l: &Dense<I, O>, x: &[[f32; I]]) {
    let mut y = vec![[0.0f32; O]; x.len()];
    l.forward_batch(x, &mut y).expect("lengths match");
    for (s, (xs, ys)) in x.iter().zip(&y).enumerate() {
        let want = oracle::dense_forward(l.weights(), l.bias(), xs);
        let mut one = [0.0f32; O];
        l.forward(xs, &mut one);
        assert_eq!(
            one.map(f32::to_bits),
            ys.map(f32::to_bits),
            "forward vs batch, sample {s}"
        );
        for j in 0..O {
            let what = format_args!("Dense<{I},{O}>::forward_batch y[{s}][{j}]");
            assert_close(
                ys[j].into(),
                want[j],
                dense_scale(l, xs, j),
                dot_tol(I),
                &what,
            );
        }
    }
}

fn check_backward<const I: usize, const O: usize>(
    l: &Dense<I, O>,
    x: &[[f32; I]],
    dy: &[[f32; O]],
    prior: &DenseGrads<I, O>,
) {
    let n = x.len();
    let (mut dw, mut db, mut dx) = ([[0.0; I]; O], [0.0; O], vec![[0.0; I]; n]);
    oracle::dense_backward(l.weights(), x, dy, &mut dw, &mut db, &mut dx);
    let (mut sw, mut sb, mut sx) = ([[0.0; I]; O], [0.0; O], vec![[0.0; I]; n]);
    for (s, (xs, ds)) in x.iter().zip(dy).enumerate() {
        for j in 0..O {
            let d = f64::from(ds[j]).abs();
            sb[j] += d;
            for k in 0..I {
                sw[j][k] += d * f64::from(xs[k]).abs();
                sx[s][k] += d * f64::from(l.weights()[j][k]).abs();
            }
        }
    }
    // Overwrite with dx, then Add on top of `prior` without dx.
    let mut g = DenseGrads {
        w: [[f32::NAN; I]; O],
        b: [f32::NAN; O],
    };
    let mut got_dx = vec![[f32::NAN; I]; n];
    l.backward(x, dy, &mut g, Accumulate::Overwrite, Some(&mut got_dx))
        .expect("valid batch");
    let mut acc = prior.clone();
    l.backward(x, dy, &mut acc, Accumulate::Add, None)
        .expect("valid batch");
    for j in 0..O {
        for k in 0..I {
            let what = format_args!("Dense<{I},{O}>::backward dW[{j}][{k}], N = {n}");
            assert_close(g.w[j][k].into(), dw[j][k], sw[j][k], dot_tol(n), &what);
            let p = f64::from(prior.w[j][k]);
            let scale = sw[j][k] + p.abs();
            let what = format_args!("Dense<{I},{O}>::backward Add dW[{j}][{k}], N = {n}");
            assert_close(
                acc.w[j][k].into(),
                p + dw[j][k],
                scale,
                dot_tol(n + 1),
                &what,
            );
        }
        let what = format_args!("Dense<{I},{O}>::backward db[{j}], N = {n}");
        assert_close(g.b[j].into(), db[j], sb[j], dot_tol(n), &what);
        let p = f64::from(prior.b[j]);
        let what = format_args!("Dense<{I},{O}>::backward Add db[{j}], N = {n}");
        assert_close(
            acc.b[j].into(),
            p + db[j],
            sb[j] + p.abs(),
            dot_tol(n + 1),
            &what,
        );
    }
    for s in 0..n {
        for k in 0..I {
            let what = format_args!("Dense<{I},{O}>::backward dx[{s}][{k}]");
            assert_close(got_dx[s][k].into(), dx[s][k], sx[s][k], dot_tol(O), &what);
        }
    }

    // The fused SGD step: the same sums, applied as `w - lr * g` in the pass that finishes
    // them, so it is bit for bit `backward` followed by that update (FUSED_SGD).
    let sgd = Sgd::new(0.125).expect("valid");
    let mut fused = l.clone();
    // The scratch's contents on entry must not matter (one block or many).
    let mut scratch = DenseGrads {
        w: [[f32::NAN; I]; O],
        b: [f32::NAN; O],
    };
    let mut fused_dx = vec![[f32::NAN; I]; n];
    fused
        .backward_sgd(x, dy, Some(&mut fused_dx), &sgd, &mut scratch)
        .expect("finite");
    assert_eq!(
        bits(&fused_dx),
        bits(&got_dx),
        "backward_sgd dx uses the old weights"
    );
    let mut w = *l.weights();
    let mut b = *l.bias();
    for j in 0..O {
        for k in 0..I {
            w[j][k] -= 0.125 * g.w[j][k];
        }
        b[j] -= 0.125 * g.b[j];
    }
    assert_eq!(
        bits(fused.weights()),
        bits(&w),
        "Dense::backward_sgd weights vs backward + update"
    );
    assert_eq!(
        fused.bias().map(f32::to_bits),
        b.map(f32::to_bits),
        "Dense::backward_sgd biases vs backward + update"
    );
    // And against the oracle's SGD step.
    let mut p: Vec<f64> = l.weights().iter().flatten().map(|&v| v.into()).collect();
    let gr: Vec<f64> = dw.iter().flatten().copied().collect();
    oracle::sgd_step(&mut p, &gr, 0.125);
    for (i, (got, want)) in fused.weights().iter().flatten().zip(&p).enumerate() {
        let scale = f64::from(l.weights()[i / I][i % I]).abs() + 0.125 * sw[i / I][i % I];
        let what = format_args!("Dense<{I},{O}>::backward_sgd w[{i}]");
        assert_close((*got).into(), *want, scale, dot_tol(n + 2), &what);
    }
}

fn bits<const N: usize>(rows: &[[f32; N]]) -> Vec<[u32; N]> {
    rows.iter().map(|r| r.map(f32::to_bits)).collect()
}

macro_rules! dense_vs_oracle {
    ($($name:ident: $i:literal x $o:literal;)*) => {$(
        proptest! {
            #![proptest_config(cases(32))]
            #[test]
            fn $name(
                seed in any::<u64>(),
                (x, dy) in (1usize..=40).prop_flat_map(|n| (rows::<$i>(n, 4.0), rows::<$o>(n, 1.0))),
            ) {
                let (w, b) = matrix_from_seed::<$i, $o>(seed, 2.0);
                let (prior_w, prior_b) = matrix_from_seed::<$i, $o>(seed ^ 1, 1.0);
                let l = layer(w, b);
                check_forward(&l, &x);
                check_backward(&l, &x, &dy, &DenseGrads { w: prior_w, b: prior_b });
            }
        }
    )*};
}

dense_vs_oracle! {
    dense_matches_oracle_1x1: 1 x 1;
    dense_matches_oracle_3x8: 3 x 8;
    dense_matches_oracle_8x3: 8 x 3;
    dense_matches_oracle_9x17: 9 x 17;
    dense_matches_oracle_16x16: 16 x 16;
    dense_matches_oracle_17x9: 17 x 9;
    dense_matches_oracle_33x4: 33 x 4;
    dense_matches_oracle_4x33: 4 x 33;
    dense_matches_oracle_32x1: 32 x 1;
}

/// Checks every activation and loss kernel on one batch of rows of width `N`.
fn check_row_kernels<const N: usize>(z: &[[f32; N]], c: &[[f32; N]], labels: &[u32]) {
    let n = z.len();
    // ReLU and its backward: exact.
    let mut r = vec![[f32::NAN; N]; n];
    fusedprop::relu(z, &mut r).expect("lengths");
    let mut dr = vec![[f32::NAN; N]; n];
    fusedprop::relu_backward(&r, c, &mut dr).expect("lengths");
    // Softmax and friends.
    let mut p = vec![[f32::NAN; N]; n];
    fusedprop::softmax(z, &mut p).expect("lengths");
    let mut dp = vec![[f32::NAN; N]; n];
    fusedprop::softmax_backward(&p, c, &mut dp).expect("lengths");
    let mut l = vec![[f32::NAN; N]; n];
    fusedprop::log_softmax(z, &mut l).expect("lengths");
    let mut dl = vec![[f32::NAN; N]; n];
    fusedprop::log_softmax_backward(&l, c, &mut dl).expect("lengths");
    for s in 0..n {
        let zmax = z[s].iter().fold(1.0f64, |m, v| m.max(f64::from(v.abs())));
        let cmax = c[s].iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        let csum: f64 = c[s].iter().map(|v| f64::from(v.abs())).sum();
        let want_p = oracle::softmax(&z[s]);
        let want_dp = oracle::softmax_backward(&p[s], &c[s]);
        let want_l = oracle::log_softmax(&z[s]);
        let want_dl = oracle::log_softmax_backward(&l[s], &c[s]);
        for j in 0..N {
            let at = format_args!("[{s}][{j}] of {N}");
            let what = format_args!("relu {at}");
            assert_close(
                r[s][j].into(),
                oracle::relu(z[s][j].into()),
                1.0,
                RELU,
                &what,
            );
            let want = oracle::relu_backward(r[s][j].into(), c[s][j].into());
            let what = format_args!("relu_backward {at}");
            assert_close(dr[s][j].into(), want, 1.0, RELU, &what);
            let what = format_args!("softmax {at}");
            assert_close(p[s][j].into(), want_p[j], 1.0, SOFTMAX, &what);
            let what = format_args!("softmax_backward {at}");
            assert_close(dp[s][j].into(), want_dp[j], cmax, LOG_SOFTMAX, &what);
            let what = format_args!("log_softmax {at}");
            assert_close(l[s][j].into(), want_l[j], zmax, LOG_SOFTMAX, &what);
            let what = format_args!("log_softmax_backward {at}");
            assert_close(dl[s][j].into(), want_dl[j], csum, LOG_SOFTMAX, &what);
        }
    }
    // Cross-entropy and the fused gradient.
    let loss = fusedprop::sparse_categorical_cross_entropy(z, labels).expect("valid");
    let mut dz = vec![[f32::NAN; N]; n];
    let loss2 = fusedprop::softmax_cross_entropy_backward(z, labels, &mut dz).expect("valid");
    assert_eq!(
        loss.to_bits(),
        loss2.to_bits(),
        "the two losses are one computation"
    );
    let mut want_dz = vec![[0.0; N]; n];
    let want = oracle::softmax_cross_entropy_backward(z, labels, &mut want_dz);
    let zmax = z
        .iter()
        .flatten()
        .fold(1.0f64, |m, v| m.max(f64::from(v.abs())));
    let what = format_args!("cross-entropy of {n} rows of {N}");
    assert_close(loss.into(), want, 2.0 * zmax, LOG_SOFTMAX, &what);
    for s in 0..n {
        for j in 0..N {
            let what = format_args!("softmax_cross_entropy_backward [{s}][{j}] of {N}");
            assert_close(
                dz[s][j].into(),
                want_dz[s][j],
                1.0 / n as f64,
                SOFTMAX,
                &what,
            );
        }
    }
}

macro_rules! rows_vs_oracle {
    ($($name:ident: $n:literal;)*) => {$(
        proptest! {
            #![proptest_config(cases(48))]
            #[test]
            fn $name(
                (z, c, y) in (1usize..=40).prop_flat_map(|n| (
                    proptest::collection::vec(logits::<$n>(), n),
                    rows::<$n>(n, 2.0),
                    labels::<$n>(n),
                )),
            ) {
                check_row_kernels::<$n>(&z, &c, &y);
            }
        }
    )*};
}

rows_vs_oracle! {
    activations_and_loss_match_oracle_1: 1;
    activations_and_loss_match_oracle_2: 2;
    activations_and_loss_match_oracle_3: 3;
    activations_and_loss_match_oracle_8: 8;
    activations_and_loss_match_oracle_9: 9;
    activations_and_loss_match_oracle_16: 16;
    activations_and_loss_match_oracle_17: 17;
    activations_and_loss_match_oracle_33: 33;
}

/// Logits up to `±1e30`: uniform in that range, or exactly at its ends.
fn huge_logits<const N: usize>() -> impl Strategy<Value = [f32; N]> {
    proptest::array::uniform::<_, N>(prop_oneof![
        -1e30f32..=1e30,
        proptest::sample::select(&[1e30f32, -1e30, 0.0, 1.0][..]),
    ])
}

proptest! {
    #![proptest_config(cases(64))]

    /// Softmax outputs lie in `[0, 1]` and each row sums to 1 within `(N + 4) 4u`
    /// (`N` probabilities each within a few ulp, summed).
    #[test]
    fn softmax_rows_are_distributions(z in proptest::collection::vec(logits::<17>(), 1..=40)) {
        let mut p = vec![[0.0f32; 17]; z.len()];
        fusedprop::softmax(&z, &mut p).unwrap();
        for row in &p {
            prop_assert!(row.iter().all(|v| (0.0..=1.0).contains(v)), "{row:?}");
            let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
            assert_close(sum, 1.0, 1.0, Tol { abs: 21.0 * 4.0 * U32, rel: 0.0 }, &"sum of p");
        }
    }

    /// Adding a constant to every logit of a row changes nothing: bit for bit when the
    /// shifted logits are exact (logits on a grid of 1/1024, integer shifts), because the
    /// kernel subtracts the row maximum first.
    #[test]
    fn softmax_is_shift_invariant(
        q in proptest::array::uniform::<_, 9>(-20_000i32..=20_000),
        shift in -1000i32..=1000,
    ) {
        let z = [q.map(|v| v as f32 / 1024.0)];
        let zs = [z[0].map(|v| v + shift as f32)];
        let (mut p, mut ps) = ([[0.0f32; 9]], [[0.0f32; 9]]);
        fusedprop::softmax(&z, &mut p).unwrap();
        fusedprop::softmax(&zs, &mut ps).unwrap();
        prop_assert_eq!(p[0].map(f32::to_bits), ps[0].map(f32::to_bits));
        let (mut l, mut ls) = ([[0.0f32; 9]], [[0.0f32; 9]]);
        fusedprop::log_softmax(&z, &mut l).unwrap();
        fusedprop::log_softmax(&zs, &mut ls).unwrap();
        prop_assert_eq!(l[0].map(f32::to_bits), ls[0].map(f32::to_bits));
        let y = [3];
        let a = fusedprop::sparse_categorical_cross_entropy(&z, &y).unwrap();
        let b = fusedprop::sparse_categorical_cross_entropy(&zs, &y).unwrap();
        prop_assert_eq!(a.to_bits(), b.to_bits());
    }

    /// Logits up to `±1e30` give finite probabilities, log-probabilities, loss and gradient,
    /// and agree with the oracle.
    #[test]
    fn huge_logits_stay_finite(
        (z, y) in (1usize..=20).prop_flat_map(|n| (
            proptest::collection::vec(huge_logits::<5>(), n),
            labels::<5>(n),
        )),
    ) {
        let n = z.len();
        let mut p = vec![[0.0f32; 5]; n];
        fusedprop::softmax(&z, &mut p).unwrap();
        let mut l = vec![[0.0f32; 5]; n];
        fusedprop::log_softmax(&z, &mut l).unwrap();
        let mut dz = vec![[0.0f32; 5]; n];
        let loss = fusedprop::softmax_cross_entropy_backward(&z, &y, &mut dz).unwrap();
        prop_assert!(loss.is_finite(), "loss {loss}");
        for s in 0..n {
            prop_assert!(p[s].iter().chain(&l[s]).chain(&dz[s]).all(|v| v.is_finite()));
            let want = oracle::softmax(&z[s]);
            for j in 0..5 {
                assert_close(p[s][j].into(), want[j], 1.0, SOFTMAX, &"huge softmax");
            }
        }
        let want = oracle::cross_entropy(&z, &y);
        let zmax = z.iter().flatten().fold(1.0f64, |m, v| m.max(f64::from(v.abs())));
        assert_close(loss.into(), want, 2.0 * zmax, LOG_SOFTMAX, &"huge cross-entropy");
    }
}

/// Hand-picked rows: equal logits, one dominant logit, `±88`, and the ends of `±1e30`.
#[test]
fn softmax_edge_rows() {
    let z = [
        [0.0f32, 0.0, 0.0, 0.0],
        [88.0, -88.0, 0.0, 1.0],
        [1e30, -1e30, 0.0, 1e30],
        [-1e30, -1e30, -1e30, -1e30],
        [f32::MIN_POSITIVE, -0.0, 0.0, 1e-40],
    ];
    let mut p = [[0.0f32; 4]; 5];
    fusedprop::softmax(&z, &mut p).unwrap();
    assert_eq!(p[0], [0.25; 4]);
    assert_eq!(p[2], [0.5, 0.0, 0.0, 0.5]);
    assert_eq!(p[3], [0.25; 4]);
    for (row, zr) in p.iter().zip(&z) {
        let want = oracle::softmax(zr);
        for j in 0..4 {
            assert_close(row[j].into(), want[j], 1.0, SOFTMAX, &"edge softmax");
        }
    }
}
