//! The f64 oracle (`fusedprop::reference`) is right: its own `exp` and `ln` agree with
//! `std`'s, and every analytic gradient it computes (dense `dW`, `db`, `dx`; ReLU; softmax;
//! log-softmax; the fused softmax-cross-entropy gradient; the whole `Mlp`) agrees with
//! central finite differences of its forward functions, within `FD_REL` (tests/support).
//!
//! Vector-valued kernels are checked through a random projection `L = sum_i c_i out_i`: the
//! backward with upstream gradient `c` must be the gradient of `L` (a vector-Jacobian
//! product), which tests every entry of the Jacobian against a random combination.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops read like the formulas they check"
)]

mod support;

use fusedprop::reference::{self as oracle, MlpParams};
use proptest::prelude::*;
use support::*;

#[test]
fn exp_and_ln_match_std() {
    let mut rng = fusedprop::rng::SplitMix64::new(1);
    let mut worst = 0.0f64;
    for i in 0..20_000 {
        let x = (rng.next_f64() * 2.0 - 1.0) * if i % 2 == 0 { 40.0 } else { 740.0 };
        let (a, b) = (oracle::exp(x), x.exp());
        if b > 1e-300 {
            worst = worst.max((a - b).abs() / b);
        }
        let y = rng.next_f64() * 10f64.powi((i % 600) - 300);
        let (c, d) = (oracle::ln(y), y.ln());
        worst = worst.max((c - d).abs() / d.abs().max(1e-300));
    }
    assert!(worst < 1e-15, "oracle exp/ln relative error {worst:e}");
    for x in [
        0.0,
        -0.0,
        1.0,
        -1.0,
        1e-300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
    ] {
        let l = oracle::ln(x.abs());
        assert!(l == x.abs().ln() || (l - x.abs().ln()).abs() < 1e-15 * l.abs());
    }
    assert_eq!(oracle::exp(0.0), 1.0);
    assert_eq!(oracle::exp(1000.0), f64::INFINITY);
    assert_eq!(oracle::exp(-1000.0), 0.0);
    assert!((oracle::exp(-744.0) - (-744.0f64).exp()).abs() <= 5e-324 * 2.0);
    assert!(oracle::ln(-1.0).is_nan() && oracle::exp(f64::NAN).is_nan());
    assert_eq!(oracle::ln(0.0), f64::NEG_INFINITY);
}

/// Dense: `L = sum_s sum_j c[s][j] y[s][j]` as a function of `W`, `b` and `x`.
fn check_dense<const I: usize, const O: usize>(
    w: [[f64; I]; O],
    b: [f64; O],
    x: Vec<[f64; I]>,
    c: Vec<[f64; O]>,
) {
    let loss = |w: &[[f64; I]; O], b: &[f64; O], x: &[[f64; I]]| -> f64 {
        let mut total = 0.0;
        for (xs, cs) in x.iter().zip(&c) {
            let y = oracle::dense_forward(w, b, xs);
            total += y.iter().zip(cs).map(|(y, c)| y * c).sum::<f64>();
        }
        total
    };
    let mut dw = [[0.0; I]; O];
    let mut db = [0.0; O];
    let mut dx = vec![[0.0; I]; x.len()];
    oracle::dense_backward(&w, &x, &c, &mut dw, &mut db, &mut dx);
    for j in 0..O {
        for k in 0..I {
            let fd = central_difference(w[j][k], |v| {
                let mut w2 = w;
                w2[j][k] = v;
                loss(&w2, &b, &x)
            });
            assert_fd(dw[j][k], fd, &format_args!("dense<{I},{O}> dW[{j}][{k}]"));
        }
        let fd = central_difference(b[j], |v| {
            let mut b2 = b;
            b2[j] = v;
            loss(&w, &b2, &x)
        });
        assert_fd(db[j], fd, &format_args!("dense<{I},{O}> db[{j}]"));
    }
    for s in 0..x.len() {
        for k in 0..I {
            let fd = central_difference(x[s][k], |v| {
                let mut x2 = x.clone();
                x2[s][k] = v;
                loss(&w, &b, &x2)
            });
            assert_fd(dx[s][k], fd, &format_args!("dense<{I},{O}> dx[{s}][{k}]"));
        }
    }
}

macro_rules! dense_fd {
    ($($name:ident: $i:literal x $o:literal;)*) => {$(
        proptest! {
            #![proptest_config(cases(24))]
            #[test]
            fn $name(
                w in proptest::array::uniform::<_, $o>(row64::<$i>(2.0)),
                b in row64::<$o>(2.0),
                (x, c) in (1usize..=5).prop_flat_map(|n| (
                    proptest::collection::vec(row64::<$i>(3.0), n),
                    proptest::collection::vec(row64::<$o>(1.0), n),
                )),
            ) {
                check_dense::<$i, $o>(w, b, x, c);
            }
        }
    )*};
}

dense_fd! {
    dense_gradients_match_finite_differences_1x1: 1 x 1;
    dense_gradients_match_finite_differences_3x4: 3 x 4;
    dense_gradients_match_finite_differences_9x5: 9 x 5;
    dense_gradients_match_finite_differences_17x3: 17 x 3;
}

proptest! {
    #![proptest_config(cases(64))]

    /// ReLU: `L = sum c_i relu(x_i)`; coordinates within two steps of the kink are skipped
    /// (the Richardson difference reaches `x ± h`).
    #[test]
    fn relu_gradient_matches_finite_differences(x in row64::<9>(3.0), c in row64::<9>(2.0)) {
        for i in 0..9 {
            if x[i].abs() <= 2.0 * fd_step(x[i]) {
                continue;
            }
            let g = oracle::relu_backward(oracle::relu(x[i]), c[i]);
            let fd = central_difference(x[i], |v| {
                let mut x2 = x;
                x2[i] = v;
                x2.iter().zip(&c).map(|(x, c)| c * oracle::relu(*x)).sum()
            });
            assert_fd(g, fd, &format_args!("relu dx[{i}] at x = {}", x[i]));
        }
    }

    /// Softmax: `L = sum c_i p_i(z)`.
    #[test]
    fn softmax_gradient_matches_finite_differences(z in row64::<7>(8.0), c in row64::<7>(2.0)) {
        let p = oracle::softmax(&z);
        let g = oracle::softmax_backward(&p, &c);
        for j in 0..7 {
            let fd = central_difference(z[j], |v| {
                let mut z2 = z;
                z2[j] = v;
                oracle::softmax(&z2).iter().zip(&c).map(|(p, c)| p * c).sum()
            });
            assert_fd(g[j], fd, &format_args!("softmax dz[{j}]"));
        }
    }

    /// Log-softmax: `L = sum c_i l_i(z)`.
    #[test]
    fn log_softmax_gradient_matches_finite_differences(z in row64::<5>(8.0), c in row64::<5>(2.0)) {
        let l = oracle::log_softmax(&z);
        let g = oracle::log_softmax_backward(&l, &c);
        for j in 0..5 {
            let fd = central_difference(z[j], |v| {
                let mut z2 = z;
                z2[j] = v;
                oracle::log_softmax(&z2).iter().zip(&c).map(|(l, c)| l * c).sum()
            });
            assert_fd(g[j], fd, &format_args!("log_softmax dz[{j}]"));
        }
    }

    /// Cross-entropy and the fused gradient `(p - onehot) / N`: the mean loss over a batch as
    /// a function of every logit.
    #[test]
    fn softmax_cross_entropy_gradient_matches_finite_differences(
        (z, y) in (1usize..=6).prop_flat_map(|n| (
            proptest::collection::vec(row64::<4>(10.0), n),
            labels::<4>(n),
        )),
    ) {
        let mut dz = vec![[0.0; 4]; z.len()];
        let loss = oracle::softmax_cross_entropy_backward(&z, &y, &mut dz);
        prop_assert_eq!(loss, oracle::cross_entropy(&z, &y));
        for s in 0..z.len() {
            for j in 0..4 {
                let fd = central_difference(z[s][j], |v| {
                    let mut z2 = z.clone();
                    z2[s][j] = v;
                    oracle::cross_entropy(&z2, &y)
                });
                assert_fd(dz[s][j], fd, &format_args!("cross-entropy dz[{s}][{j}]"));
            }
        }
    }
}

/// The cross-entropy is `-ln softmax(z)[y]`, computed independently (no log-sum-exp).
#[test]
fn cross_entropy_is_minus_log_softmax_probability() {
    let z = [[1.0f64, -2.0, 0.5], [3.0, 3.0, -1.0]];
    let y = [2u32, 0];
    let direct: f64 = z
        .iter()
        .zip(y)
        .map(|(z, y)| {
            let e: Vec<f64> = z.iter().map(|v| v.exp()).collect();
            -(e[y as usize] / e.iter().sum::<f64>()).ln()
        })
        .sum::<f64>()
        / 2.0;
    assert!((oracle::cross_entropy(&z, &y) - direct).abs() < 1e-15);
}

/// The whole model: every parameter's gradient (or a random subset of `max_coords` of them,
/// for the larger shapes) against finite differences of the oracle's loss. A coordinate is
/// skipped when a perturbation of one step flips a hidden ReLU of any sample (the kink).
fn check_mlp<const I: usize, const H: usize, const O: usize>(
    seed: u64,
    x: &[[f32; I]],
    y: &[u32],
    max_coords: usize,
) {
    let p = MlpParams::from_mlp(&mlp_from_seed::<I, H, O>(seed));
    let mut g = MlpParams::ZERO;
    let loss = p.gradients(x, y, &mut g);
    assert_eq!(loss, p.loss(x, y));
    let pattern = |q: &MlpParams<I, H, O>| -> Vec<bool> {
        x.iter()
            .flat_map(|xs| q.pre_activations(xs).map(|u| u > 0.0))
            .collect()
    };
    let base = pattern(&p);
    let n = MlpParams::<I, H, O>::LEN;
    let stride = n.div_ceil(max_coords).max(1);
    let (mut checked, mut skipped) = (0, 0);
    for i in ((seed as usize % stride)..n).step_by(stride) {
        let v = p.get(i);
        let h = fd_step(v);
        let flips = [v - h, v + h].iter().any(|&t| {
            let mut q = p.clone();
            q.set(i, t);
            pattern(&q) != base
        });
        if flips {
            skipped += 1;
            continue;
        }
        let fd = central_difference(v, |t| {
            let mut q = p.clone();
            q.set(i, t);
            q.loss(x, y)
        });
        assert_fd(
            g.get(i),
            fd,
            &format_args!("Mlp<{I},{H},{O}> parameter {i} (seed {seed})"),
        );
        checked += 1;
    }
    assert!(checked > skipped, "{checked} checked, {skipped} skipped");
}

macro_rules! mlp_fd {
    ($($name:ident: $i:literal, $h:literal, $o:literal, coords $c:literal;)*) => {$(
        proptest! {
            #![proptest_config(cases(12))]
            #[test]
            fn $name(seed in any::<u64>(), (x, y) in batch::<$i, $o>(1..=12, 3.0)) {
                check_mlp::<$i, $h, $o>(seed, &x, &y, $c);
            }
        }
    )*};
}

mlp_fd! {
    mlp_oracle_gradients_match_finite_differences_1_3_4: 1, 3, 4, coords 1000;
    mlp_oracle_gradients_match_finite_differences_4_8_3: 4, 8, 3, coords 1000;
    mlp_oracle_gradients_match_finite_differences_9_17_33: 9, 17, 33, coords 60;
    mlp_oracle_gradients_match_finite_differences_33_4_2: 33, 4, 2, coords 60;
}
