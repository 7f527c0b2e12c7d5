//! Issue 9, item 5: the zero-padded lanes of a partial 16-sample block never influence a
//! result. A padding lane holds the model's response to a zero input, `relu(b1)` and its
//! logits, which can overflow for extreme (finite) weights; `NaN * 0` is NaN, so masking by
//! multiplication let it reach the loss total, and its huge activation reached the bound
//! that refuses a step.

use fusedprop::{Error, Gradients, Mlp, PackedBatch, Sgd, Workspace};

/// The issue's model: a real input of 2 gives a pre-activation of -1e30 (activation 0,
/// logits 0, loss ln 2); a padding lane (input 0) gives an activation of 1e30 and logits of
/// +-1e40, which overflow to +-inf.
fn issue_model() -> Mlp<1, 1, 2> {
    Mlp::from_weights([[-1e30]], [1e30], [[1e10], [-1e10]], [0.0, 0.0]).unwrap()
}

#[test]
fn loss_of_a_partial_block_ignores_padding() {
    let m = issue_model();
    let full = m.loss(&[[2.0]; 16], &[0; 16]).unwrap();
    assert_eq!(full, core::f32::consts::LN_2);
    for n in [1, 2, 15, 17, 31, 129] {
        let x = vec![[2.0f32]; n];
        let y = vec![0u32; n];
        let l = m
            .loss(&x, &y)
            .unwrap_or_else(|e| panic!("{n} samples: {e}"));
        // The mean of n copies of ln 2, within the rounding of the sum.
        assert!((l - full).abs() <= 1e-6, "{n} samples: {l}");
    }
}

#[test]
fn gradients_of_a_partial_block_ignore_padding() {
    let m = issue_model();
    let mut ws = Workspace::new();
    let mut g16 = Gradients::ZERO;
    let mut g1 = Gradients::ZERO;
    let l16 = m
        .gradients(&[[2.0]; 16], &[0; 16], &mut g16, &mut ws)
        .unwrap();
    let l1 = m.gradients(&[[2.0]], &[0], &mut g1, &mut ws).unwrap();
    assert_eq!(l1, l16);
    assert_eq!(g1, g16);
    assert_eq!(g1.output.b, [-0.5, 0.5]);
}

#[test]
fn train_step_of_a_partial_block_ignores_padding() {
    let sgd = Sgd::new(0.1).unwrap();
    let mut ws = Workspace::new();
    let mut a = issue_model();
    let mut b = issue_model();
    let la = a.train_step(&[[2.0]; 16], &[0; 16], &sgd, &mut ws).unwrap();
    let lb = b.train_step(&[[2.0]], &[0], &sgd, &mut ws).unwrap();
    assert_eq!(la, lb);
    assert_eq!(a, b);
    // The packed path is the same kernels.
    let mut c = issue_model();
    let batch = PackedBatch::<1, 1>::from_rows(&[[2.0]], &[0]).unwrap();
    assert_eq!(c.train_step_packed(&batch, &sgd, &mut ws), Ok(lb));
    assert_eq!(c, b);
}

/// A padding lane's activation (`relu(b1) = 1e37`) entered the largest activation that
/// bounds the output layer's gradient, so a step was refused (`lr * 1e37` past the limit)
/// although the real sample's activation is 0.
#[test]
fn padding_activations_do_not_refuse_a_step() {
    let model =
        Mlp::<1, 1, 2>::from_weights([[-1e37]], [1e37], [[1e-3], [-1e-3]], [0.0; 2]).unwrap();
    let sgd = Sgd::new(10.0).unwrap();
    let mut ws = Workspace::new();
    let mut full = model.clone();
    let mut one = model.clone();
    let l16 = full.train_step(&[[2.0]; 16], &[1; 16], &sgd, &mut ws);
    let l1 = one.train_step(&[[2.0]], &[1], &sgd, &mut ws);
    assert_eq!(l16, Ok(core::f32::consts::LN_2));
    assert_eq!(l1, l16);
    assert_eq!(one, full);
    // A real sample with that activation is refused, as before.
    let mut real = model.clone();
    assert_eq!(
        real.train_step(&[[0.0]], &[1], &sgd, &mut ws),
        Err(Error::UpdateOverflow)
    );
    assert_eq!(real, model);
}

/// The parallel step runs the same tile pass: a batch of two tiles whose last block is
/// partial.
#[cfg(feature = "rayon")]
#[test]
fn parallel_step_ignores_padding() {
    let sgd = Sgd::new(0.1).unwrap();
    let x = vec![[2.0f32]; 129];
    let y = vec![0u32; 129];
    let mut serial = issue_model();
    let want = serial.train_step(&x, &y, &sgd, &mut Workspace::new());
    assert!(want.is_ok(), "{want:?}");
    let mut par = issue_model();
    let mut pws = fusedprop::ParWorkspace::<1, 1, 2, 2>::new_boxed();
    pws.set_min_flop(0);
    assert_eq!(par.train_step_par(&x, &y, &sgd, &mut pws), want);
    assert_eq!(par, serial);
}
