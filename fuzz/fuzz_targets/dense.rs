//! `Dense`: `from_weights`, `from_keras`, `forward`, `forward_batch`, `backward` (both
//! accumulation modes) and `backward_sgd`, differential against the f64 oracle.
//!
//! Invariants:
//! - no panic; errors in documented order; `from_weights` and `from_keras` agree (with the
//!   same index) and round-trip through `keras_kernel`;
//! - `forward` of one sample is bit-identical to that sample inside `forward_batch`;
//! - on finite inputs whose sums stay far from overflow, `forward_batch`, `backward`'s
//!   `dW`, `db`, `dx` are within the f32 summation bound `gamma_(n+1) * sum |terms|` of the
//!   oracle; `Accumulate::Add` adds to what was there; on error nothing is written;
//! - `backward_sgd`: an `Err` leaves the layer bit for bit unchanged; an `Ok` leaves only
//!   finite weights, each exactly `w - lr * g` for `backward`'s `g`, and writes the same
//!   `dx` as `backward` (computed with the weights before the update).
#![no_main]
#![allow(
    clippy::needless_range_loop,
    reason = "the checks index j, k, s like the formulas they check"
)]

use arbitrary::Unstructured;
use fusedprop::{Accumulate, Dense, DenseGrads, Error, Sgd};
use fusedprop_fuzz::oracle::{dense, dense_backward};
use fusedprop_fuzz::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.arbitrary::<u8>().unwrap_or(0) % 5 {
        0 => check::<1, 1>(&mut u),
        1 => check::<3, 5>(&mut u),
        2 => check::<4, 4>(&mut u),
        3 => check::<9, 6>(&mut u),
        _ => check::<17, 3>(&mut u),
    };
});

type Gen = fn(&mut Unstructured) -> arbitrary::Result<f32>;

fn pick_gen(u: &mut Unstructured) -> arbitrary::Result<Gen> {
    Ok(match u.arbitrary::<u8>()? % 4 {
        0 => any_f32,
        1 => finite_f32,
        _ => moderate,
    })
}

fn flat<const I: usize, const O: usize>(d: &Dense<I, O>) -> Vec<f32> {
    d.weights()
        .iter()
        .flatten()
        .chain(d.bias())
        .copied()
        .collect()
}

fn grads_flat<const I: usize, const O: usize>(g: &DenseGrads<I, O>) -> Vec<f32> {
    g.w.iter().flatten().chain(&g.b).copied().collect()
}

/// Whether the oracle's sums for this layer and batch stay far from `f32` overflow.
fn small(v: f64) -> bool {
    v.is_finite() && v.abs() < 1e30
}

fn check<const I: usize, const O: usize>(u: &mut Unstructured) -> arbitrary::Result<()> {
    // Construction.
    let gw = pick_gen(u)?;
    let mut w = [[0.0f32; I]; O];
    for r in &mut w {
        *r = row::<I>(u, gw)?;
    }
    let b = row::<O>(u, gw)?;
    let mut kernel = [[0.0f32; O]; I];
    for (j, r) in w.iter().enumerate() {
        for (k, &v) in r.iter().enumerate() {
            kernel[k][j] = v;
        }
    }
    let direct = Dense::from_weights(w, b);
    let keras = Dense::from_keras(&kernel, b);
    let all: Vec<f32> = w.iter().flatten().chain(&b).copied().collect();
    match (&direct, &keras) {
        (Ok(d), Ok(k)) => {
            assert!(all.iter().all(|v| v.is_finite()));
            assert_eq!(bits(&flat(d)), bits(&flat(k)));
            assert_eq!(bits(&flat(d)), bits(&all));
            assert_eq!(
                bits(
                    &d.keras_kernel()
                        .iter()
                        .flatten()
                        .copied()
                        .collect::<Vec<_>>()
                ),
                bits(&kernel.iter().flatten().copied().collect::<Vec<_>>())
            );
        }
        (Err(a), Err(k)) => {
            let i = all
                .iter()
                .position(|v| !v.is_finite())
                .expect("a non-finite weight");
            let want = Error::NonFinite {
                what: "weight",
                index: Some(i),
            };
            assert_eq!((*a, *k), (want, want));
            return Ok(());
        }
        _ => panic!("from_weights {direct:?} vs from_keras {keras:?}"),
    }
    let mut layer = direct.expect("checked");

    // Forward.
    let n = usize::from(u.arbitrary::<u16>()?) % 70;
    let gx = pick_gen(u)?;
    let x = batch::<I>(u, n, gx)?;
    let out_len = maybe_mismatch(u, n)?;
    let mut y = vec![[f32::NAN; O]; out_len];
    match layer.forward_batch(&x, &mut y) {
        Err(e) => assert!(
            out_len != n && matches!(e, Error::LengthMismatch { .. }),
            "{e:?}"
        ),
        Ok(()) => {
            assert_eq!(out_len, n);
            for (s, (xs, ys)) in x.iter().zip(&y).enumerate() {
                let mut one = [f32::NAN; O];
                layer.forward(xs, &mut one);
                assert_eq!(bits(&one), bits(ys), "forward vs forward_batch, sample {s}");
                if !xs.iter().all(|v| v.is_finite()) {
                    continue;
                }
                for (j, e) in dense(layer.weights(), layer.bias(), xs).iter().enumerate() {
                    if small(e.v) && small(e.tol) {
                        assert_close(|| format!("y[{s}][{j}]"), ys[j], e.v, e.tol);
                    }
                }
            }
        }
    }

    // Backward, both modes, with and without dx.
    let gd = pick_gen(u)?;
    let ndy = maybe_mismatch(u, n)?;
    let dy = batch::<O>(u, ndy, gd)?;
    let dx_len = maybe_mismatch(u, n)?;
    let want_err = if n == 0 {
        Some(Error::EmptyBatch)
    } else if dy.len() != n {
        Some(Error::LengthMismatch {
            what: "output gradients",
            expected: n,
            found: dy.len(),
        })
    } else if dx_len != n {
        Some(Error::LengthMismatch {
            what: "input gradients",
            expected: n,
            found: dx_len,
        })
    } else {
        None
    };
    let garbage = f32::from_bits(u.arbitrary()?);
    let mut g = DenseGrads::<I, O> {
        w: [[garbage; I]; O],
        b: [garbage; O],
    };
    let mut dx = vec![[f32::NAN; I]; dx_len];
    let r = layer.backward(&x, &dy, &mut g, Accumulate::Overwrite, Some(&mut dx));
    if let Some(e) = want_err {
        assert_eq!(r, Err(e));
        assert!(
            grads_flat(&g)
                .iter()
                .all(|v| v.to_bits() == garbage.to_bits()),
            "written on Err"
        );
        assert!(dx.iter().flatten().all(|v| v.is_nan()), "dx written on Err");
        // backward_sgd refuses the same way, without touching the layer.
        let before = bits(&flat(&layer));
        let sgd = Sgd::new(0.1).expect("valid");
        let mut scratch = DenseGrads::ZERO;
        let r = layer.backward_sgd(&x, &dy, Some(&mut dx), &sgd, &mut scratch);
        assert_eq!(r, Err(e));
        assert_eq!(bits(&flat(&layer)), before);
        return Ok(());
    }
    r.expect("valid backward");
    let finite_data =
        x.iter().flatten().all(|v| v.is_finite()) && dy.iter().flatten().all(|v| v.is_finite());
    let (odw, odb, odx) = dense_backward(layer.weights(), &x, &dy);
    if finite_data {
        for j in 0..O {
            for k in 0..I {
                let e = odw[j][k];
                if small(e.v) && small(e.tol) {
                    assert_close(|| format!("dW[{j}][{k}]"), g.w[j][k], e.v, e.tol);
                }
            }
            let e = odb[j];
            if small(e.v) && small(e.tol) {
                assert_close(|| format!("db[{j}]"), g.b[j], e.v, e.tol);
            }
        }
        for (s, (row, orow)) in dx.iter().zip(&odx).enumerate() {
            for (k, (&got, e)) in row.iter().zip(orow).enumerate() {
                if small(e.v) && small(e.tol) {
                    assert_close(|| format!("dx[{s}][{k}]"), got, e.v, e.tol);
                }
            }
        }
        // Add mode: prior + gradient.
        let prior = f32::from(u.arbitrary::<i8>()?) / 8.0;
        let mut acc = DenseGrads::<I, O> {
            w: [[prior; I]; O],
            b: [prior; O],
        };
        layer
            .backward(&x, &dy, &mut acc, Accumulate::Add, None)
            .expect("valid backward");
        for ((&got, &over), e) in grads_flat(&acc)
            .iter()
            .zip(&grads_flat(&g))
            .zip(odw.iter().flatten().chain(&odb))
        {
            if small(e.v) && small(e.tol) {
                let want = e.v + f64::from(prior);
                let tol = e.tol + sum_tol(n + 1, f64::from(prior).abs() + e.v.abs() + e.tol);
                assert_close(
                    || format!("Add mode (overwrite gave {over:e})"),
                    got,
                    want,
                    tol,
                );
            }
        }
    }

    // The fused SGD step.
    let lr = learning_rate(u)?;
    let Ok(sgd) = Sgd::new(lr) else {
        return Ok(());
    };
    let before = flat(&layer);
    let mut scratch = DenseGrads::<I, O> {
        w: [[garbage; I]; O],
        b: [garbage; O],
    };
    let mut dx2 = vec![[f32::NAN; I]; n];
    match layer.backward_sgd(&x, &dy, Some(&mut dx2), &sgd, &mut scratch) {
        Err(e) => {
            assert_eq!(
                bits(&flat(&layer)),
                bits(&before),
                "backward_sgd Err {e:?} changed the layer"
            );
            match e {
                Error::NonFinite {
                    what: "input",
                    index: Some(i),
                } => assert_eq!(first_non_finite_row(&x), Some(i)),
                Error::NonFinite {
                    what: "output gradient",
                    index: Some(i),
                } => {
                    assert!(first_non_finite_row(&x).is_none());
                    assert_eq!(first_non_finite_row(&dy), Some(i));
                }
                Error::UpdateOverflow => assert!(finite_data),
                e => panic!("backward_sgd: unexpected {e:?}"),
            }
        }
        Ok(()) => {
            assert!(finite_data, "backward_sgd accepted non-finite data");
            let after = flat(&layer);
            assert!(
                after.iter().all(|v| v.is_finite()),
                "Ok step left a non-finite weight"
            );
            assert_eq!(
                bits(&dx2.concat()),
                bits(&dx.concat()),
                "dx of backward_sgd vs backward"
            );
            for (i, ((w, gi), new)) in before.iter().zip(grads_flat(&g)).zip(&after).enumerate() {
                let unfused = w - lr * gi;
                assert_eq!(
                    unfused.to_bits(),
                    new.to_bits(),
                    "param {i}: fused {new:e} vs {unfused:e}"
                );
            }
        }
    }
    Ok(())
}
