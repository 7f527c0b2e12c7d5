//! The public gradient checker (`fusedprop::gradcheck`, feature `std`): it passes the
//! crate's own gradients, catches a wrong one and names it, restores the parameters bit for
//! bit, and reports bad arguments as errors.
#![cfg(feature = "std")]

use fusedprop::gradcheck::{check_gradients, check_mlp};
use fusedprop::{Error, Gradients, Mlp, Workspace};

/// `f(p) = sum_i (i + 1) p_i^2 / 2 + p_0 p_1`, gradient `(i + 1) p_i (+ p_1 or p_0)`.
fn quadratic(p: &[f32]) -> f64 {
    let mut s: f64 = p
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as f64 + 1.0) * f64::from(v) * f64::from(v) / 2.0)
        .sum();
    s += f64::from(p[0]) * f64::from(p[1]);
    s
}

fn quadratic_grad(p: &[f32]) -> Vec<f32> {
    let mut g: Vec<f32> = p
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as f32 + 1.0) * v)
        .collect();
    g[0] += p[1];
    g[1] += p[0];
    g
}

#[test]
fn exact_gradient_passes_and_params_are_restored() {
    let mut p = vec![0.5f32, -1.25, 3.0, 1e-3, -7.5];
    let before: Vec<u32> = p.iter().map(|v| v.to_bits()).collect();
    let g = quadratic_grad(&p);
    let r = check_gradients(&mut p, &g, 1e-3, 1e-6, quadratic).unwrap();
    assert_eq!(r.checked, 5);
    // A quadratic has no truncation error: what remains is f32 rounding of g.
    assert!(r.passed(1e-6), "{r:?}");
    assert_eq!(p.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), before);
}

#[test]
fn wrong_gradient_is_caught_and_named() {
    let mut p = vec![0.5f32, -1.25, 3.0, 1e-3, -7.5];
    for bad in 0..5 {
        let mut g = quadratic_grad(&p);
        g[bad] = -g[bad] + 0.5; // a sign error (plus an offset, so a zero is wrong too)
        let r = check_gradients(&mut p, &g, 1e-3, 1e-6, quadratic).unwrap();
        assert_eq!(r.worst_index, Some(bad));
        assert!(!r.passed(1e-2), "{r:?}");
        assert_eq!(r.analytic, f64::from(g[bad]));
        let exact = f64::from(quadratic_grad(&p)[bad]);
        assert!(
            (r.numeric - exact).abs() < 1e-4 * exact.abs().max(1.0),
            "{r:?}"
        );
    }
    // A factor of two (a sum where a mean belongs, for two samples) is caught too.
    let mut g = quadratic_grad(&p);
    g[2] *= 2.0;
    let r = check_gradients(&mut p, &g, 1e-3, 1e-6, quadratic).unwrap();
    assert_eq!(r.worst_index, Some(2));
    assert!((r.worst_rel_error - 0.5).abs() < 1e-3, "{r:?}");
}

#[test]
fn bad_arguments_are_errors() {
    let mut p = vec![1.0f32, 2.0];
    let e = check_gradients(&mut p, &[1.0], 1e-3, 0.0, quadratic).unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { .. }));
    for step in [0.0, -1e-3, f32::NAN, f32::INFINITY] {
        assert!(check_gradients(&mut p, &[1.0, 2.0], step, 0.0, quadratic).is_err());
    }
    assert!(check_gradients(&mut p, &[1.0, 2.0], 1e-3, -1.0, quadratic).is_err());
    assert!(check_gradients(&mut p, &[1.0, 2.0], 1e-3, f64::NAN, quadratic).is_err());
    assert_eq!(
        check_gradients(&mut p, &[1.0, f32::NAN], 1e-3, 0.0, quadratic),
        Err(Error::NonFinite {
            what: "gradient",
            index: Some(1)
        })
    );
    let e = check_gradients(&mut p, &[1.0, 2.0], 1e-3, 0.0, |q| {
        if q[1] > 2.0 { f64::NAN } else { 0.0 }
    });
    assert_eq!(
        e,
        Err(Error::NonFinite {
            what: "loss",
            index: Some(1)
        })
    );
    assert_eq!(p, [1.0, 2.0], "restored on error too");
    let r = check_gradients(&mut [], &[], 1e-3, 0.0, |_| 0.0).unwrap();
    assert_eq!(
        (r.checked, r.worst_index, r.worst_rel_error),
        (0, None, 0.0)
    );
}

/// `check_mlp` on the crate's own model: shapes around the block width and a multi-tile
/// batch; fixed seeds whose ReLUs are all at least a step away from their kinks (with
/// 150 samples and a step of 1e-3 some always are not: see the module docs).
#[test]
fn check_mlp_passes_the_models_gradients() {
    fn run<const I: usize, const H: usize, const O: usize>(n: usize, seed: u64) {
        let model = Mlp::<I, H, O>::new(seed);
        let mut rng = fusedprop::rng::SplitMix64::new(seed ^ 0xABCD);
        let x: Vec<[f32; I]> = (0..n)
            .map(|_| core::array::from_fn(|_| rng.uniform(2.0)))
            .collect();
        let y: Vec<u32> = (0..n).map(|_| (rng.next_u64() % O as u64) as u32).collect();
        let r = check_mlp(&model, &x, &y, 1e-5, 1e-4).unwrap();
        assert_eq!(r.checked, Mlp::<I, H, O>::PARAMS);
        assert!(r.passed(1e-4), "Mlp<{I},{H},{O}>, N = {n}: {r:?}");
    }
    run::<4, 32, 3>(150, 7);
    run::<3, 9, 17>(20, 1);
    run::<9, 3, 2>(5, 2);
}

#[test]
fn check_mlp_reports_batch_errors() {
    let model = Mlp::<2, 3, 2>::new(1);
    assert_eq!(
        check_mlp(&model, &[[0.0, 0.0]], &[5], 1e-3, 0.0),
        Err(Error::LabelOutOfRange {
            index: 0,
            label: 5,
            classes: 2
        })
    );
    // And it checks what `gradients` computes, not something else.
    let mut g = Gradients::ZERO;
    model
        .gradients(&[[1.0, 2.0]], &[1], &mut g, &mut Workspace::new())
        .unwrap();
}

/// Issue 9, item 3: a perturbation that rounds away in `f32` (`1000 +- 1e-5` is `1000`) makes
/// the relative error NaN, and the worst-error tracking ignored NaN after the first
/// parameter, so a wrong gradient (-12345 where 2000 is right) passed. A non-finite error
/// now fails the check and names the parameter.
#[test]
fn a_perturbation_that_rounds_away_fails_the_check() {
    let loss = |q: &[f32]| f64::from(q[0]).powi(2) + f64::from(q[1]).powi(2);
    let mut p = [0.0f32, 1000.0];
    let r = check_gradients(&mut p, &[0.0, -12345.0], 1e-8, 1e-6, loss).unwrap();
    assert!(!r.passed(1e-3), "{r:?}");
    assert!(!r.passed(f64::INFINITY), "{r:?}");
    assert_eq!(r.worst_index, Some(1), "{r:?}");
    assert_eq!(r.worst_rel_error, f64::INFINITY);
    assert_eq!(r.checked, 2);
    // Also when the unjudgeable parameter comes first and a finite error follows.
    let mut p = [1000.0f32, 0.5];
    let r = check_gradients(&mut p, &[2000.0, 1.0], 1e-8, 1e-6, loss).unwrap();
    assert!(!r.passed(1e-3), "{r:?}");
    assert_eq!(r.worst_index, Some(0), "{r:?}");
    // Both exactly 0 with a zero floor is agreement (0 / 0), not a failure.
    let r = check_gradients(&mut [0.0f32], &[0.0], 1e-3, 0.0, |q| {
        f64::from(q[0]).powi(2)
    })
    .unwrap();
    assert!(r.passed(0.0), "{r:?}");
}

/// Issue 9, items 3 and 7: a `floor` of `+inf` (which would pass any gradient) and a step of
/// 0 are refused with an error that names the argument, not as a "non-finite step".
#[test]
fn infinite_floor_and_zero_step_are_invalid_arguments() {
    let mut p = vec![1.0f32, 2.0];
    let e = check_gradients(&mut p, &[1.0, 2.0], 1e-3, f64::INFINITY, quadratic).unwrap_err();
    assert_eq!(
        e,
        Error::InvalidArgument {
            what: "floor",
            value: f64::INFINITY,
            expected: "finite and non-negative"
        }
    );
    let e = check_gradients(&mut p, &[1.0, 2.0], 0.0, 1e-6, quadratic).unwrap_err();
    assert_eq!(
        e,
        Error::InvalidArgument {
            what: "step",
            value: 0.0,
            expected: "finite and positive"
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("invalid step 0") && msg.contains("positive"),
        "{msg}"
    );
    assert!(!msg.contains("non-finite"), "{msg}");
}
