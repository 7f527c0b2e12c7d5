//! `relu`, `softmax`, `log_softmax`, `sparse_categorical_cross_entropy` and their backward
//! functions (`relu_backward`, `softmax_backward`, `log_softmax_backward`,
//! `softmax_cross_entropy_backward`) on arbitrary rows, differential against the f64 oracle.
//!
//! Invariants:
//! - no panic; `LengthMismatch` exactly when an output has the wrong length; the loss
//!   functions' errors in documented order with the right index, and `dlogits` untouched on
//!   error;
//! - `relu` and `relu_backward` exactly as defined (NaN kept, `-0` and the kink give `+0`);
//! - for finite logits within the documented range `|z| <= 1e30`: softmax probabilities in
//!   `[0, 1]`, summing to 1, within `1e-6` of the oracle; log-softmax `<= 0` and within its
//!   bound of the oracle; the loss finite, `>= 0`, equal to the mean of `-log_softmax[y]`
//!   within bounds; `dlogits` within bounds of `(p - onehot) / N`, rows summing to ~0;
//! - beyond that range the two loss functions agree: the same finite loss, or the same
//!   `NonFinite("loss")` error for a loss that overflows `f32` (never `Ok(inf)`), with
//!   `dlogits` untouched;
//! - a row holding NaN gives NaN in every softmax output (the NaN policy);
//! - softmax and log-softmax backward within bounds of the oracle for moderate inputs.
#![no_main]
#![allow(
    clippy::needless_range_loop,
    reason = "the checks index j, k, s like the formulas they check"
)]

use arbitrary::Unstructured;
use fusedprop::Error;
use fusedprop_fuzz::oracle::{log_softmax, softmax};
use fusedprop_fuzz::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.arbitrary::<u8>().unwrap_or(0) % 4 {
        0 => check::<1>(&mut u),
        1 => check::<2>(&mut u),
        2 => check::<3>(&mut u),
        _ => check::<10>(&mut u),
    };
});

fn pick_gen(
    u: &mut Unstructured,
) -> arbitrary::Result<fn(&mut Unstructured) -> arbitrary::Result<f32>> {
    Ok(match u.arbitrary::<u8>()? % 4 {
        0 => any_f32,
        1 => finite_f32,
        _ => moderate,
    })
}

/// The documented range in which softmax, log-softmax and the loss stay finite.
const RANGE: f32 = 1e30;

fn check<const N: usize>(u: &mut Unstructured) -> arbitrary::Result<()> {
    let n = usize::from(u.arbitrary::<u8>()?) % 41;
    let g = pick_gen(u)?;
    let z = batch::<N>(u, n, g)?;
    let g = pick_gen(u)?;
    let ndy = maybe_mismatch(u, n)?;
    let dy = batch::<N>(u, ndy, g)?;
    let out_len = maybe_mismatch(u, n)?;
    let mismatch = |e: Error, found: usize| {
        assert!(
            matches!(e, Error::LengthMismatch { expected, found: f, .. } if expected == n && f == found),
            "{e:?}"
        )
    };

    // ReLU, exactly.
    let mut r = vec![[f32::NAN; N]; out_len];
    match fusedprop::relu(&z, &mut r) {
        Err(e) => mismatch(e, out_len),
        Ok(()) => {
            for (zs, rs) in z.iter().zip(&r) {
                for (&v, &o) in zs.iter().zip(rs) {
                    if v.is_nan() {
                        // NaN stays NaN; a signaling NaN may come back quieted.
                        assert!(o.is_nan(), "relu({v:e}) = {o:e}");
                        continue;
                    }
                    let want = if v > 0.0 { v } else { 0.0 };
                    assert_eq!(o.to_bits(), want.to_bits(), "relu({v:e}) = {o:e}");
                }
            }
        }
    }
    let mut dr = vec![[f32::NAN; N]; out_len];
    match fusedprop::relu_backward(&z, &dy, &mut dr) {
        Err(e) => assert!(dy.len() != n || out_len != n, "{e:?}"),
        Ok(()) => {
            for ((ys, ds), os) in z.iter().zip(&dy).zip(&dr) {
                for ((&yv, &d), &o) in ys.iter().zip(ds).zip(os) {
                    let want = if yv > 0.0 { d } else { 0.0 };
                    assert_eq!(
                        o.to_bits(),
                        want.to_bits(),
                        "relu_backward({yv:e}, {d:e}) = {o:e}"
                    );
                }
            }
        }
    }

    // Softmax.
    let mut p = vec![[f32::NAN; N]; out_len];
    let softmax_ok = match fusedprop::softmax(&z, &mut p) {
        Err(e) => {
            mismatch(e, out_len);
            false
        }
        Ok(()) => true,
    };
    let in_range = |row: &[f32; N]| row.iter().all(|v| v.is_finite() && v.abs() <= RANGE);
    if softmax_ok {
        for (s, (zs, ps)) in z.iter().zip(&p).enumerate() {
            if zs.iter().any(|v| v.is_nan()) {
                assert!(ps.iter().all(|v| v.is_nan()), "NaN row {zs:?} gave {ps:?}");
            }
            if !in_range(zs) {
                continue;
            }
            let want = softmax(&zs.map(f64::from));
            let sum: f32 = ps.iter().sum();
            assert!(
                (sum - 1.0).abs() <= 1e-5 * N as f32,
                "sample {s}: sum {sum} of {ps:?}"
            );
            for (j, (&got, &w)) in ps.iter().zip(&want).enumerate() {
                assert!((0.0..=1.0).contains(&got), "p[{s}][{j}] = {got}");
                // Shifted arguments are exact for |z| this small relative to each other, or
                // the term is negligible: the error is exp's and the division's few ulps.
                assert_close(|| format!("p[{s}][{j}] of {zs:?}"), got, w, 1e-6);
            }
        }
    }

    // Log-softmax.
    let mut l = vec![[f32::NAN; N]; out_len];
    let log_ok = match fusedprop::log_softmax(&z, &mut l) {
        Err(e) => {
            mismatch(e, out_len);
            false
        }
        Ok(()) => true,
    };
    if log_ok {
        for (s, (zs, ls)) in z.iter().zip(&l).enumerate() {
            if !in_range(zs) {
                continue;
            }
            let zf = zs.map(f64::from);
            let m = zf.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            for (j, &got) in ls.iter().enumerate() {
                let want = log_softmax(&zf, j);
                // (z - m) is rounded once, then ln(s) (s in [1, N]) a few ulps, then the
                // subtraction once.
                let tol = 4.0 * U32 * ((zf[j] - m).abs() + want.abs()) + 1e-6;
                assert!(got <= 0.0, "log_softmax[{s}][{j}] = {got} > 0");
                assert_close(
                    || format!("log_softmax[{s}][{j}] of {zs:?}"),
                    got,
                    want,
                    tol,
                );
            }
        }
    }

    // Backward of softmax and log-softmax, from their own forward outputs.
    let moderate_rows = |rows: &[[f32; N]]| all_within(rows.iter().flatten().copied(), 1e4);
    let mut dz = vec![[f32::NAN; N]; out_len];
    if softmax_ok {
        match fusedprop::softmax_backward(&p, &dy, &mut dz) {
            Err(e) => assert!(dy.len() != n || out_len != n, "{e:?}"),
            Ok(()) if moderate_rows(&p) && moderate_rows(&dy) => {
                for (s, ((ps, ds), os)) in p.iter().zip(&dy).zip(&dz).enumerate() {
                    let dot: f64 = ps
                        .iter()
                        .zip(ds)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum();
                    let mag: f64 = ps
                        .iter()
                        .zip(ds)
                        .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                        .sum();
                    let dot_tol = sum_tol(N, mag);
                    for j in 0..N {
                        let (pj, dj) = (f64::from(ps[j]), f64::from(ds[j]));
                        let want = pj * (dj - dot);
                        let tol = pj.abs() * (dot_tol + 2.0 * U32 * (dj.abs() + dot.abs())) + TINY;
                        assert_close(|| format!("softmax_backward[{s}][{j}]"), os[j], want, tol);
                    }
                }
            }
            Ok(()) => {}
        }
    }
    if log_ok {
        match fusedprop::log_softmax_backward(&l, &dy, &mut dz) {
            Err(e) => assert!(dy.len() != n || out_len != n, "{e:?}"),
            Ok(()) if moderate_rows(&l) && moderate_rows(&dy) => {
                for (s, ((ls, ds), os)) in l.iter().zip(&dy).zip(&dz).enumerate() {
                    let total: f64 = ds.iter().map(|&v| f64::from(v)).sum();
                    let mag: f64 = ds.iter().map(|&v| f64::from(v).abs()).sum();
                    for j in 0..N {
                        let e = f64::from(ls[j]).exp();
                        let want = f64::from(ds[j]) - e * total;
                        // exp of an exact f32 argument: a few ulps; the sum: gamma_N.
                        let tol = e * (sum_tol(N, mag) + 8.0 * U32 * total.abs())
                            + 4.0 * U32 * (f64::from(ds[j]).abs() + (e * total).abs())
                            + TINY;
                        assert_close(
                            || format!("log_softmax_backward[{s}][{j}]"),
                            os[j],
                            want,
                            tol,
                        );
                    }
                }
            }
            Ok(()) => {}
        }
    }

    // Cross-entropy and its fused gradient.
    let ny = maybe_mismatch(u, n)?;
    let y = labels(u, ny, N)?;
    let loss = fusedprop::sparse_categorical_cross_entropy(&z, &y);
    let mut d = vec![[f32::NAN; N]; out_len];
    let fused = fusedprop::softmax_cross_entropy_backward(&z, &y, &mut d);
    let want_err = precheck(n, &y, N).or_else(|| {
        first_non_finite_row(&z).map(|i| Error::NonFinite {
            what: "logit",
            index: Some(i),
        })
    });
    match want_err {
        Some(e) => {
            assert_eq!(loss, Err(e));
            assert_eq!(fused, Err(e));
            assert!(
                d.iter().flatten().all(|v| v.is_nan()),
                "dlogits written on error"
            );
        }
        None if out_len != n => {
            // Ok, or a loss that overflows `f32` (logits beyond the documented range).
            assert!(
                loss.is_ok()
                    || (matches!(loss, Err(Error::NonFinite { what: "loss", .. }))
                        && !z.iter().all(in_range)),
                "{loss:?}"
            );
            assert!(
                matches!(fused, Err(Error::LengthMismatch { .. })),
                "{fused:?}"
            );
            assert!(
                d.iter().flatten().all(|v| v.is_nan()),
                "dlogits written on error"
            );
        }
        None if loss.is_err() => {
            // Finite logits so far apart that a sample's loss, or the batch's sum, overflows.
            assert!(!z.iter().all(in_range), "{loss:?} for logits within 1e30");
            assert!(
                matches!(loss, Err(Error::NonFinite { what: "loss", .. })),
                "{loss:?}"
            );
            assert_eq!(fused, loss, "the fused gradient's error vs the loss's");
            assert!(
                d.iter().flatten().all(|v| v.is_nan()),
                "dlogits written on error"
            );
        }
        None => {
            let (l, lf) = (loss.expect("valid batch"), fused.expect("valid batch"));
            assert!(l.is_finite(), "Ok({l}) from the loss");
            assert_eq!(l.to_bits(), lf.to_bits(), "loss {l} vs fused {lf}");
            if !z.iter().all(in_range) {
                return Ok(());
            }
            assert!(l.is_finite() && l >= 0.0, "loss {l} of logits within 1e30");
            let nf = n as f64;
            let (mut want, mut tol) = (0.0, 0.0);
            for (zs, &ys) in z.iter().zip(&y) {
                let zf = zs.map(f64::from);
                let m = zf.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let ls = -log_softmax(&zf, ys as usize);
                want += ls;
                tol += 4.0 * U32 * ((m - zf[ys as usize]).abs() + ls.abs()) + 1e-6;
            }
            let tol = tol / nf + sum_tol(n, want) / nf;
            assert_close(|| "mean loss".into(), l, want / nf, tol);
            for (s, ((zs, &ys), ds)) in z.iter().zip(&y).zip(&d).enumerate() {
                let pw = softmax(&zs.map(f64::from));
                let mut row_sum = 0.0;
                for j in 0..N {
                    let onehot = if j == ys as usize { 1.0 } else { 0.0 };
                    let want = (pw[j] - onehot) / nf;
                    row_sum += f64::from(ds[j]);
                    assert_close(|| format!("dlogits[{s}][{j}]"), ds[j], want, 2e-6 / nf);
                }
                assert!(
                    row_sum.abs() <= 1e-5 * N as f64 / nf,
                    "dlogits row {s} sums to {row_sum}"
                );
            }
        }
    }
    Ok(())
}
