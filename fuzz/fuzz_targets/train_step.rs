//! `Mlp::train_step` (with `read_params`, `Sgd::new`, `loss` and `gradients` as witnesses) on
//! arbitrary weights, inputs, labels, batch lengths and learning rates.
//!
//! Invariants:
//! - no panic;
//! - `Sgd::new(lr)` is `Ok` exactly for finite `lr > 0`; `read_params` is `Ok` exactly for a
//!   slice of `PARAMS` finite values, and on `Err` leaves the model bit for bit unchanged;
//! - every `Err` of `train_step` leaves the model bit for bit unchanged, and is the *right*
//!   error: the first failing check in documented order, with the right index;
//! - an `Ok` step returns a finite loss, bit-identical to `loss` on the model before the step
//!   and to the loss `gradients` returns, and leaves only finite weights, each exactly
//!   `w - lr * g` for the gradient `g` that `gradients` reports (the fused update is the
//!   unfused one, to the bit);
//! - with moderate data (finite, `|v| <= 8`, labels in range, `0 < lr <= 1`) a step is
//!   never refused;
//! - padding never matters: a batch whose last block is partial is accepted wherever the
//!   same batch with that block filled up by copies of a real sample is accepted (far from
//!   overflowing its loss sum); extreme weights (`extreme_f32`: huge biases overflow the
//!   zero-padded lanes) exercise it.
#![no_main]
#![allow(
    clippy::needless_range_loop,
    reason = "the checks index j, k, s like the formulas they check"
)]

use arbitrary::Unstructured;
use fusedprop::{Error, Gradients, Mlp, Sgd, Workspace};
use fusedprop_fuzz::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.arbitrary::<u8>().unwrap_or(0) % 4 {
        0 => check::<4, 8, 3>(&mut u),
        1 => check::<3, 5, 2>(&mut u),
        // 16+ inputs: the weight gradients of the input rows' kernel.
        2 => check::<18, 6, 3>(&mut u),
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

    // Weights: Glorot, or read from arbitrary (possibly non-finite) or finite values.
    let mode: u8 = u.arbitrary()?;
    if !mode.is_multiple_of(4) {
        let gen_w = if mode % 4 == 1 { any_f32 } else { moderate };
        let gen_w = if mode % 8 == 6 { finite_f32 } else { gen_w };
        let gen_w = if mode % 8 == 7 { extreme_f32 } else { gen_w };
        let mut p: Vec<f32> = (0..Mlp::<I, H, O>::PARAMS)
            .map(|_| gen_w(u))
            .collect::<arbitrary::Result<_>>()?;
        let before = bits(&params(&model));
        if u.arbitrary::<u8>()? % 16 == 15 {
            p.pop();
            let e = model.read_params(&p).expect_err("short params");
            assert!(matches!(e, Error::LengthMismatch { .. }), "{e:?}");
            assert_eq!(
                bits(&params(&model)),
                before,
                "read_params Err changed the model"
            );
            return Ok(());
        }
        match model.read_params(&p) {
            Ok(()) => {
                assert!(p.iter().all(|v| v.is_finite()));
                assert_eq!(bits(&params(&model)), bits(&p), "read_params round trip");
            }
            Err(Error::NonFinite {
                what: "weight",
                index: Some(i),
            }) => {
                assert!(!p[i].is_finite() && p[..i].iter().all(|v| v.is_finite()));
                assert_eq!(
                    bits(&params(&model)),
                    before,
                    "read_params Err changed the model"
                );
            }
            Err(e) => panic!("read_params: unexpected {e:?}"),
        }
    }

    let n = batch_len(u)?;
    let gen_x = match u.arbitrary::<u8>()? % 4 {
        0 => any_f32,
        1 => finite_f32,
        _ => moderate,
    };
    let x = batch::<I>(u, n, gen_x)?;
    let ny = maybe_mismatch(u, n)?;
    let y = labels(u, ny, O)?;

    let lr = learning_rate(u)?;
    let sgd = match Sgd::new(lr) {
        Ok(s) => {
            assert!(lr.is_finite() && lr > 0.0, "Sgd::new accepted {lr}");
            assert_eq!(s.learning_rate().to_bits(), lr.to_bits());
            s
        }
        Err(Error::InvalidLearningRate(v)) => {
            assert!(!(lr.is_finite() && lr > 0.0), "Sgd::new refused {lr}");
            assert_eq!(v.to_bits(), lr.to_bits());
            Sgd::new(0.01).expect("valid")
        }
        Err(e) => panic!("Sgd::new: unexpected {e:?}"),
    };
    let lr = sgd.learning_rate();

    // One workspace for everything, dirtied by `gradients` before the step: a workspace's
    // contents must never leak into a result.
    let mut ws: Box<Workspace<I, H, O>> = Box::default();
    let before = params(&model);
    let want_loss = model.loss(&x, &y);
    let mut g = Gradients::<I, H, O>::ZERO;
    let grads = model.gradients(&x, &y, &mut g, &mut ws);
    assert_eq!(
        bits(&params(&model)),
        bits(&before),
        "gradients changed the model"
    );
    let original = model.clone();
    let got = model.train_step(&x, &y, &sgd, &mut ws);
    let after = params(&model);

    // Padding invariance (issue 9, item 5): the filled batch has every sample of this one,
    // the same largest input and activation, and a larger loss sum; if its step is accepted
    // (far from overflowing the sum), this one must be.
    if n % fusedprop::BLOCK_SAMPLES != 0
        && precheck(n, &y, O).is_none()
        && first_non_finite_row(&x).is_none()
    {
        let (xe, ye) = fill_last_block(&x, &y);
        let mut filled = original.clone();
        if let Ok(le) = filled.train_step(&xe, &ye, &sgd, &mut ws)
            && far_from_overflow(le, xe.len())
        {
            assert!(
                got.is_ok(),
                "padding changed the outcome: {got:?} for {n} samples, Ok({le}) with the last block filled"
            );
        }
    }

    let moderate_data = all_within(x.iter().flatten().copied(), 8.0)
        && all_within(before.iter().copied(), 8.0)
        && precheck(n, &y, O).is_none()
        && lr <= 1.0;

    outcome(match &got {
        Ok(_) if n > fusedprop::TILE_SAMPLES => "ok, multi-tile",
        Ok(_) => "ok",
        Err(Error::NonFinite { what, .. }) => what,
        Err(Error::EmptyBatch) => "empty batch",
        Err(Error::LengthMismatch { .. }) => "length mismatch",
        Err(Error::LabelOutOfRange { .. }) => "label out of range",
        Err(_) => "other error",
    });
    match got {
        Err(e) => {
            assert_eq!(bits(&after), bits(&before), "Err {e:?} changed the model");
            assert!(!moderate_data, "moderate step refused: {e:?}");
            match precheck(n, &y, O) {
                Some(want) => assert_eq!(e, want),
                None => match e {
                    Error::NonFinite {
                        what: "input",
                        index: Some(i),
                    } => assert_eq!(first_non_finite_row(&x), Some(i), "{e:?}"),
                    Error::NonFinite {
                        what: "loss",
                        index: Some(i),
                    } => {
                        assert!(i < n, "{e:?}");
                        assert!(first_non_finite_row(&x).is_none_or(|b| b > i), "{e:?}");
                    }
                    // Every sample's loss finite, their sum not: no sample to blame. Or the
                    // backward pass: a `dL/dz` that overflows (huge weights), or an update
                    // bound past what the rule allows.
                    Error::NonFinite {
                        what: "loss" | "gradient",
                        index: None,
                    }
                    | Error::UpdateOverflow => assert!(first_non_finite_row(&x).is_none(), "{e:?}"),
                    e => panic!("train_step: unexpected {e:?}"),
                },
            }
            let backward = matches!(
                e,
                Error::UpdateOverflow
                    | Error::NonFinite {
                        what: "gradient",
                        index: None
                    }
            );
            if !backward {
                // The forward pass refused: loss and gradients refuse the same way.
                assert_eq!(want_loss, Err(e), "loss disagrees with train_step");
                assert_eq!(grads, Err(e), "gradients disagrees with train_step");
            } else if let Err(ge) = grads {
                // Refused for a gradient that may overflow; `gradients` may only have
                // found one that did.
                assert!(
                    matches!(
                        ge,
                        Error::NonFinite {
                            what: "gradient",
                            ..
                        }
                    ),
                    "{ge:?}"
                );
            }
        }
        Ok(loss) => {
            assert!(loss.is_finite(), "Ok step with loss {loss}");
            assert!(
                after.iter().all(|v| v.is_finite()),
                "Ok step left a non-finite weight"
            );
            let want = want_loss.expect("loss fails where the step succeeds");
            assert_eq!(
                loss.to_bits(),
                want.to_bits(),
                "step loss {loss} vs loss {want}"
            );
            let gl = grads.expect("gradients fail where the step succeeds");
            assert_eq!(
                loss.to_bits(),
                gl.to_bits(),
                "step loss {loss} vs gradients {gl}"
            );
            let mut flat = vec![0.0; Mlp::<I, H, O>::PARAMS];
            g.write_flat(&mut flat).expect("PARAMS values");
            for (i, ((w, gi), new)) in before.iter().zip(&flat).zip(&after).enumerate() {
                let unfused = w - lr * gi;
                assert_eq!(
                    unfused.to_bits(),
                    new.to_bits(),
                    "param {i}: fused {new:e} vs w - lr g = {unfused:e} (w {w:e}, g {gi:e}, lr {lr:e})"
                );
            }
        }
    }
    Ok(())
}
