//! `Mlp::predict_proba`, `predict`, `predict_one`, `loss`, `accuracy` and `gradients` on
//! arbitrary weights, inputs and labels, differential against the f64 oracle.
//!
//! Invariants:
//! - no panic; errors are the documented ones, first failing check first, right index;
//! - none of these functions changes the model;
//! - finite inputs and weights give `Ok` with finite results (or, for `loss`/`gradients`, a
//!   `NonFinite` error naming a sample whose loss overflowed): probabilities in `[0, 1]`
//!   summing to 1 within `1e-5 * O`, classes `< O` and the argmax of the probabilities,
//!   `accuracy` in `[0, 1]` and equal to the fraction `predict` gets right, loss `>= 0`;
//! - against the oracle (where the oracle's error bounds are small): probabilities, the loss
//!   and every gradient within their propagated error bounds;
//! - padding never matters: the loss of a batch whose last block is partial is `Ok` wherever
//!   the same batch with that block filled up by copies of a real sample has a loss far from
//!   overflowing; extreme weights (`extreme_f32`) exercise it.
#![no_main]
#![allow(
    clippy::needless_range_loop,
    reason = "the checks index j, k, s like the formulas they check"
)]

use arbitrary::Unstructured;
use fusedprop::{Error, Gradients, Mlp, Workspace};
use fusedprop_fuzz::oracle::{Est, mlp_sample};
use fusedprop_fuzz::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.arbitrary::<u8>().unwrap_or(0) % 4 {
        0 => check::<4, 8, 3>(&mut u),
        1 => check::<3, 5, 2>(&mut u),
        // Four inputs and 16 hidden units: `predict_one`'s shuffle path.
        2 => check::<4, 16, 3>(&mut u),
        _ => check::<5, 17, 4>(&mut u),
    };
});

fn params<const I: usize, const H: usize, const O: usize>(m: &Mlp<I, H, O>) -> Vec<f32> {
    let mut p = vec![0.0; Mlp::<I, H, O>::PARAMS];
    m.write_params(&mut p).expect("PARAMS values");
    p
}

fn check<const I: usize, const H: usize, const O: usize>(
    u: &mut Unstructured,
) -> arbitrary::Result<()> {
    let mut model = Mlp::<I, H, O>::new(u.arbitrary()?);
    let w_choice = u.arbitrary::<u8>()? % 8;
    let gen_w = match w_choice {
        0 | 4 => None,
        1 | 5 => Some(finite_f32 as fn(&mut Unstructured) -> arbitrary::Result<f32>),
        7 => Some(extreme_f32 as fn(&mut Unstructured) -> arbitrary::Result<f32>),
        _ => Some(moderate as fn(&mut Unstructured) -> arbitrary::Result<f32>),
    };
    if let Some(gen_w) = gen_w {
        let p: Vec<f32> = (0..Mlp::<I, H, O>::PARAMS)
            .map(|_| gen_w(u))
            .collect::<arbitrary::Result<_>>()?;
        model.read_params(&p).expect("finite weights");
    }
    let w = params(&model);

    let n = batch_len(u)?;
    let x_choice = u.arbitrary::<u8>()? % 4;
    let gen_x = match x_choice {
        0 => any_f32,
        1 => finite_f32,
        _ => moderate,
    };
    let x = batch::<I>(u, n, gen_x)?;
    let ny = maybe_mismatch(u, n)?;
    let y = labels(u, ny, O)?;
    let bad_row = first_non_finite_row(&x);
    // Glorot or moderate weights on moderate inputs: no catastrophic cancellation, so the
    // summation order (which differs between `predict` and `predict_one`) cannot change a
    // class beyond a near-tie.
    let well_conditioned = matches!(w_choice, 0 | 2 | 3 | 4 | 6) && x_choice >= 2;

    // predict_proba
    let mut proba = vec![[f32::NAN; O]; maybe_mismatch(u, n)?];
    let r = model.predict_proba(&x, &mut proba);
    let proba_ok = match r {
        Err(e) if proba.len() != n => {
            assert_eq!(
                e,
                Error::LengthMismatch {
                    what: "outputs",
                    expected: n,
                    found: proba.len()
                }
            );
            false
        }
        Err(Error::NonFinite {
            what: "logit",
            index: Some(i),
        }) => {
            // Finite inputs whose logits overflow: refused rather than NaN probabilities.
            assert!(bad_row.is_none_or(|b| b > i) && i < n);
            false
        }
        Err(e) => {
            let i = bad_row.unwrap_or_else(|| panic!("predict_proba: {e:?} on finite input"));
            assert_eq!(
                e,
                Error::NonFinite {
                    what: "input",
                    index: Some(i)
                }
            );
            false
        }
        Ok(()) => {
            assert_eq!(proba.len(), n);
            assert!(bad_row.is_none(), "predict_proba accepted non-finite input");
            for (s, p) in proba.iter().enumerate() {
                let sum: f32 = p.iter().sum();
                assert!(
                    p.iter().all(|v| (0.0..=1.0).contains(v))
                        && (sum - 1.0).abs() <= 1e-5 * O as f32,
                    "sample {s}: probabilities {p:?} (sum {sum}) from finite input {:?}",
                    x[s]
                );
            }
            true
        }
    };

    // predict and predict_one
    let mut classes = vec![u32::MAX; if proba_ok { n } else { maybe_mismatch(u, n)? }];
    let predicted = model.predict(&x, &mut classes);
    match predicted {
        Ok(()) => {
            assert!(bad_row.is_none() && classes.len() == n);
            for (s, &c) in classes.iter().enumerate() {
                assert!((c as usize) < O, "class {c}");
                if proba_ok {
                    let best = proba[s].iter().copied().fold(0.0f32, f32::max);
                    assert!(
                        proba[s][c as usize] >= best - 1e-6,
                        "sample {s}: predicted {c} but probabilities {:?}",
                        proba[s]
                    );
                }
            }
            if let Some(x0) = x.first() {
                // `predict_one` sums in another order than `predict` (a latency path): its
                // class is a most probable one, equal to `predict`'s except on near-ties.
                match model.predict_one(x0) {
                    Ok(c) => {
                        assert!((c as usize) < O, "predict_one class {c}");
                        if proba_ok && well_conditioned {
                            let best = proba[0].iter().copied().fold(0.0f32, f32::max);
                            assert!(
                                proba[0][c as usize] >= best - 1e-5,
                                "predict_one chose {c} but probabilities {:?}",
                                proba[0]
                            );
                        }
                    }
                    // Logits at the edge of overflow can differ between the two orders.
                    Err(e) => assert!(
                        matches!(e, Error::NonFinite { what: "logit", .. }),
                        "predict_one: {e}"
                    ),
                }
            }
        }
        Err(e) if classes.len() != n => assert!(matches!(e, Error::LengthMismatch { .. })),
        Err(Error::NonFinite {
            what: "logit",
            index: Some(i),
        }) => assert!(bad_row.is_none_or(|b| b > i) && i < n),
        Err(e) => assert_eq!(
            e,
            Error::NonFinite {
                what: "input",
                index: bad_row
            }
        ),
    }

    // loss, accuracy
    let loss = model.loss(&x, &y);
    let pre = precheck(n, &y, O);
    match (&pre, loss) {
        (Some(want), got) => assert_eq!(got, Err(*want)),
        (None, Ok(l)) => {
            assert!(bad_row.is_none());
            assert!(l.is_finite() && l >= -1e-6, "loss {l}");
        }
        (None, Err(e)) => match e {
            Error::NonFinite {
                what: "input",
                index,
            } => assert_eq!(index, bad_row),
            Error::NonFinite {
                what: "loss",
                index: Some(i),
            } => assert!(bad_row.is_none_or(|b| b > i) && i < n),
            Error::NonFinite {
                what: "loss",
                index: None,
            } => assert!(bad_row.is_none()),
            e => panic!("loss: unexpected {e:?}"),
        },
    }
    // Padding invariance (issue 9, item 5): the filled batch has every sample of this one
    // and a larger loss sum; if it is far from overflowing, this loss must be `Ok`.
    if pre.is_none() && bad_row.is_none() && n % fusedprop::BLOCK_SAMPLES != 0 {
        let (xe, ye) = fill_last_block(&x, &y);
        if let Ok(le) = model.loss(&xe, &ye)
            && far_from_overflow(le, xe.len())
        {
            assert!(
                loss.is_ok(),
                "padding changed the loss: {loss:?} for {n} samples, Ok({le}) with the last block filled"
            );
        }
    }
    match (&pre, model.accuracy(&x, &y)) {
        (Some(want), got) => assert_eq!(got, Err(*want)),
        (
            None,
            Err(
                e @ Error::NonFinite {
                    what: "logit",
                    index: Some(i),
                },
            ),
        ) => {
            assert!(bad_row.is_none_or(|b| b > i));
            if classes.len() == n {
                assert_eq!(predicted, Err(e), "accuracy and predict disagree");
            }
        }
        (None, Ok(a)) => {
            assert!(
                bad_row.is_none() && (0.0..=1.0).contains(&a),
                "accuracy {a}"
            );
            if classes.len() == n {
                assert_eq!(predicted, Ok(()), "accuracy Ok where predict failed");
                let right = classes.iter().zip(&y).filter(|(c, l)| c == l).count();
                assert_eq!(a, right as f32 / n as f32, "accuracy vs predict");
            }
        }
        (None, Err(e)) => assert_eq!(
            e,
            Error::NonFinite {
                what: "input",
                index: bad_row
            }
        ),
    }

    // gradients
    let mut ws: Box<Workspace<I, H, O>> = Box::default();
    let mut g = Gradients::<I, H, O>::ZERO;
    let gl = model.gradients(&x, &y, &mut g, &mut ws);
    if let Err(Error::NonFinite {
        what: "gradient",
        index: Some(i),
    }) = gl
    {
        assert!(loss.is_ok(), "gradient error {gl:?} where loss is {loss:?}");
        assert!(i < Mlp::<I, H, O>::PARAMS);
        let mut flat = vec![0.0; Mlp::<I, H, O>::PARAMS];
        g.write_flat(&mut flat).expect("PARAMS values");
        assert!(!flat[i].is_finite() && flat[..i].iter().all(|v| v.is_finite()));
    } else {
        assert_eq!(gl, loss, "gradients' loss vs loss");
    }
    if let Ok(l) = gl {
        let mut flat = vec![0.0; Mlp::<I, H, O>::PARAMS];
        g.write_flat(&mut flat).expect("PARAMS values");
        if let Some(i) = flat.iter().position(|v| !v.is_finite()) {
            panic!(
                "gradients: Ok (loss {l}) with non-finite gradient {i}: {}",
                flat[i]
            );
        }
        if all_within(w.iter().copied(), 64.0) {
            differential(&model, &x, &y, &proba, proba_ok, l, &g);
        }
    }
    assert_eq!(
        bits(&params(&model)),
        bits(&w),
        "inference changed the model"
    );
    Ok(())
}

/// Probabilities, loss and gradients against the f64 oracle, within propagated bounds.
fn differential<const I: usize, const H: usize, const O: usize>(
    model: &Mlp<I, H, O>,
    x: &[[f32; I]],
    y: &[u32],
    proba: &[[f32; O]],
    proba_ok: bool,
    loss: f32,
    g: &Gradients<I, H, O>,
) {
    let (w1, b1) = (model.hidden().weights(), model.hidden().bias());
    let (w2, b2) = (model.output().weights(), model.output().bias());
    let n = x.len();
    let nf = n as f64;
    let samples: Vec<_> = x.iter().map(|xs| mlp_sample(w1, b1, w2, b2, xs)).collect();
    // Skip where the oracle cannot vouch for the f32 result: bounds too loose to mean
    // anything, or a pre-activation so close to 0 that the ReLU mask may differ.
    if samples.iter().any(|s| s.p_tol > 1e-3) {
        return;
    }
    if proba_ok {
        for (s, (smp, p)) in samples.iter().zip(proba).enumerate() {
            for j in 0..O {
                assert_close(|| format!("p[{s}][{j}]"), p[j], smp.p[j], smp.p_tol);
            }
        }
    }
    // Loss: each sample's error is at most twice its logits' error, plus the rounding of
    // `m - z_y`, of `ln` (a few ulps of a value <= ln O), and of the mean.
    let mut lsum = 0.0;
    let mut ltol = 0.0;
    for (smp, &l) in samples.iter().zip(y) {
        let zv: Vec<f64> = smp.z.iter().map(|e| e.v).collect();
        let ls = -fusedprop_fuzz::oracle::log_softmax(&zv, l as usize);
        let dz = smp.z.iter().map(|e| e.tol).fold(0.0, f64::max);
        lsum += ls;
        ltol += 2.0 * dz
            + 4.0 * U32 * (ls.abs() + 2.0 * zv.iter().map(|v| v.abs()).fold(0.0, f64::max))
            + 1e-6;
    }
    let want = lsum / nf;
    let tol = ltol / nf + sum_tol(n, want.abs() * nf) / nf;
    assert_close(|| "loss".into(), loss, want, tol);

    if samples.iter().any(|s| s.near_kink) {
        return;
    }
    // dz = (p - onehot) / N, each within p_tol / N.
    let dz: Vec<[Est; O]> = samples
        .iter()
        .zip(y)
        .map(|(smp, &l)| {
            core::array::from_fn(|j| Est {
                v: (smp.p[j] - if j == l as usize { 1.0 } else { 0.0 }) / nf,
                tol: smp.p_tol / nf + 2.0 * U32 / nf,
            })
        })
        .collect();
    // Output layer: dW2 = sum_s dz a^T, db2 = sum_s dz.
    for j in 0..O {
        let (mut v, mut mag, mut prop) = (0.0, 0.0, 0.0);
        for d in &dz {
            v += d[j].v;
            mag += d[j].v.abs();
            prop += d[j].tol;
        }
        assert_close(
            || format!("db2[{j}]"),
            g.output.b[j],
            v,
            prop + sum_tol(n, mag),
        );
        for k in 0..H {
            let (mut v, mut mag, mut prop) = (0.0, 0.0, 0.0);
            for (d, smp) in dz.iter().zip(&samples) {
                let a = smp.a[k];
                v += d[j].v * a.v;
                mag += (d[j].v * a.v).abs();
                prop += d[j].tol * (a.v.abs() + a.tol) + d[j].v.abs() * a.tol;
            }
            let tol = prop + sum_tol(n + 1, mag + prop);
            assert_close(|| format!("dW2[{j}][{k}]"), g.output.w[j][k], v, tol);
        }
    }
    // Hidden layer: dh = (W2^T dz) * [h > 0]; dW1 = sum_s dh x^T, db1 = sum_s dh.
    let dh: Vec<[Est; H]> = dz
        .iter()
        .zip(&samples)
        .map(|(d, smp)| {
            core::array::from_fn(|k| {
                if smp.a[k].v <= 0.0 {
                    return Est { v: 0.0, tol: 0.0 };
                }
                let (mut v, mut mag, mut prop) = (0.0, 0.0, 0.0);
                for j in 0..O {
                    let w = f64::from(w2[j][k]);
                    v += w * d[j].v;
                    mag += (w * d[j].v).abs();
                    prop += w.abs() * d[j].tol;
                }
                Est {
                    v,
                    tol: prop + sum_tol(O, mag + prop),
                }
            })
        })
        .collect();
    for k in 0..H {
        let (mut v, mut mag, mut prop) = (0.0, 0.0, 0.0);
        for d in &dh {
            v += d[k].v;
            mag += d[k].v.abs();
            prop += d[k].tol;
        }
        assert_close(
            || format!("db1[{k}]"),
            g.hidden.b[k],
            v,
            prop + sum_tol(n, mag + prop),
        );
        for i in 0..I {
            let (mut v, mut mag, mut prop) = (0.0, 0.0, 0.0);
            for (d, xs) in dh.iter().zip(x) {
                let xv = f64::from(xs[i]);
                v += d[k].v * xv;
                mag += (d[k].v * xv).abs();
                prop += d[k].tol * xv.abs();
            }
            let tol = prop + sum_tol(n + 1, mag + prop);
            assert_close(|| format!("dW1[{k}][{i}]"), g.hidden.w[k][i], v, tol);
        }
    }
}
