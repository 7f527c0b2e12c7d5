//! The optimizers' documented contracts on a network small enough to build in seconds (so that
//! the mutation run, .cargo/mutants.toml, can afford it for every mutant):
//!
//! 1. the constructors accept and refuse the hyperparameters their `# Errors` sections say,
//!    and the accessors return what was set;
//! 2. each step of SGD, momentum, Nesterov, Adam (both placements of ε) and AdamW is the
//!    update rule of the table in `fusedprop::optim`, replayed in `f64` from the step's own
//!    `f32` weights, state and gradients (`Network::gradients`);
//! 3. a step whose update could overflow `f32` is refused with `Error::UpdateOverflow` and
//!    changes nothing, and a step with large but safe values is taken.
//!
//! tests/network_oracle.rs checks the same rules against the `f64` oracle on deeper networks.

use fusedprop::{
    Adam, Dense, Epsilon, Error, Momentum, NetGradients, NetWorkspace, Network, Optimizer,
    OptimizerState, Sgd, SoftmaxCrossEntropy,
};

type L = Dense<3, 2>;
type Net = Network<L, SoftmaxCrossEntropy>;
const PARAMS: usize = 3 * 2 + 2;

fn data(scale: f32) -> (Vec<[f32; 3]>, Vec<u32>) {
    let x = (0..8)
        .map(|i| {
            let f = i as f32;
            [
                scale * (0.3 * f).sin(),
                scale * (0.7 * f + 1.0).cos(),
                scale * 0.1 * (f - 4.0),
            ]
        })
        .collect();
    let y = (0..8).map(|i| (i % 2) as u32).collect();
    (x, y)
}

fn params(net: &Net) -> Vec<f32> {
    let mut p = vec![0.0f32; PARAMS];
    net.write_params(&mut p).unwrap();
    p
}

/// The state as `[slot][parameter]` (one layer: each slot its weights then its biases).
fn state<P: Optimizer>(st: &OptimizerState<L, P>, slots: usize) -> [Vec<f64>; 2] {
    let mut all = Vec::new();
    st.visit(|s| all.extend(s.iter().map(|&v| f64::from(v))));
    assert_eq!(all.len(), slots * PARAMS, "state length");
    let mut out = [vec![0.0; PARAMS], vec![0.0; PARAMS]];
    for (k, slot) in out.iter_mut().enumerate().take(slots) {
        slot.copy_from_slice(&all[k * PARAMS..(k + 1) * PARAMS]);
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. Hyperparameters.
// ---------------------------------------------------------------------------------------

#[test]
fn constructors_check_their_hyperparameters() {
    for lr in [0.0, -0.1, f32::NAN, f32::INFINITY] {
        assert!(matches!(Sgd::new(lr), Err(Error::InvalidLearningRate(_))));
        assert!(matches!(
            Momentum::new(lr, 0.5),
            Err(Error::InvalidLearningRate(_))
        ));
        assert!(matches!(Adam::new(lr), Err(Error::InvalidLearningRate(_))));
        let sgd = Sgd::new(0.1).unwrap();
        assert!(matches!(
            sgd.with_learning_rate(lr),
            Err(Error::InvalidLearningRate(_))
        ));
        let m = Momentum::new(0.1, 0.5).unwrap();
        assert!(matches!(
            m.with_learning_rate(lr),
            Err(Error::InvalidLearningRate(_))
        ));
        let a = Adam::new(0.1).unwrap();
        assert!(matches!(
            a.with_learning_rate(lr),
            Err(Error::InvalidLearningRate(_))
        ));
    }
    // `0 <= momentum < 1`.
    assert!(Momentum::new(0.1, 0.0).is_ok());
    for mu in [1.0, 1.5, -0.1, f32::NAN] {
        assert!(matches!(
            Momentum::new(0.1, mu),
            Err(Error::InvalidHyperparameter {
                name: "momentum",
                ..
            })
        ));
        assert!(Momentum::nesterov(0.1, mu).is_err());
    }
    // Betas in `[0, 1)`.
    let a = Adam::new(0.01).unwrap();
    assert!(a.betas(0.0, 0.0).is_ok());
    for b in [1.0, -0.5, f32::NAN] {
        assert!(matches!(
            a.betas(b, 0.9),
            Err(Error::InvalidHyperparameter { name: "beta_1", .. })
        ));
        assert!(matches!(
            a.betas(0.9, b),
            Err(Error::InvalidHyperparameter { name: "beta_2", .. })
        ));
    }
    // ε finite and > 0.
    for eps in [0.0, -1e-7, f32::INFINITY, f32::NAN] {
        assert!(matches!(
            a.epsilon(eps),
            Err(Error::InvalidHyperparameter {
                name: "epsilon",
                ..
            })
        ));
    }
    // AdamW: `0 <= weight_decay` and `weight_decay * lr < 1`.
    assert!(Adam::adamw(0.5, 0.0).is_ok());
    assert!(Adam::adamw(0.5, 1.9).is_ok());
    for wd in [-0.1, 2.0, 3.0, f32::NAN] {
        assert!(matches!(
            Adam::adamw(0.5, wd),
            Err(Error::InvalidHyperparameter {
                name: "weight_decay",
                ..
            })
        ));
    }
    assert!(Adam::adamw(0.0, 0.1).is_err());
}

#[test]
fn accessors_return_what_was_set() {
    let sgd = Sgd::new(0.25).unwrap();
    assert_eq!(sgd.learning_rate(), 0.25);
    assert_eq!(Optimizer::learning_rate(&sgd), 0.25);
    assert_eq!(sgd.with_learning_rate(0.5).unwrap().learning_rate(), 0.5);

    let m = Momentum::new(0.25, 0.75).unwrap();
    assert_eq!(
        (Optimizer::learning_rate(&m), m.momentum(), m.is_nesterov()),
        (0.25, 0.75, false)
    );
    let n = Momentum::nesterov(0.25, 0.75).unwrap();
    assert_eq!((n.momentum(), n.is_nesterov()), (0.75, true));
    let n2 = n.with_learning_rate(0.5).unwrap();
    assert_eq!(
        (
            Optimizer::learning_rate(&n2),
            n2.momentum(),
            n2.is_nesterov()
        ),
        (0.5, 0.75, true)
    );

    let a = Adam::new(0.25).unwrap();
    assert_eq!(
        (
            Optimizer::learning_rate(&a),
            a.epsilon_placement(),
            a.weight_decay()
        ),
        (0.25, Epsilon::Keras, 0.0)
    );
    let t = Adam::pytorch(0.25).unwrap();
    assert_eq!(t.epsilon_placement(), Epsilon::PyTorch);
    let w = Adam::adamw(0.25, 0.5).unwrap();
    assert_eq!(w.weight_decay(), 0.5);
    let w2 = w.with_learning_rate(0.125).unwrap();
    assert_eq!(
        (Optimizer::learning_rate(&w2), w2.weight_decay()),
        (0.125, 0.5)
    );
}

// ---------------------------------------------------------------------------------------
// 2. The update rules.
// ---------------------------------------------------------------------------------------

/// A rule of the table in `fusedprop::optim`, in `f64`: step `t`, weight, gradient, state
/// (updated); returns the new weight and the size of the terms it was computed from.
type Rule64 = dyn Fn(u64, f64, f64, &mut [f64; 2]) -> (f64, f64);

fn check_rule<P: Optimizer>(opt: P, slots: usize, rule: &Rule64) {
    let mut net = Net::new(7);
    let (x, y) = data(1.5);
    let mut st = OptimizerState::<L, P>::new();
    let mut ws = Box::new(NetWorkspace::<L>::new());
    let mut grads = Box::new(NetGradients::<L>::default());
    for t in 1..=4u64 {
        let p = params(&net);
        let s0 = state(&st, slots);
        net.gradients(&x, &y, &mut grads, &mut ws).unwrap();
        let mut g = vec![0.0f32; PARAMS];
        grads.write_flat(&mut g).unwrap();
        net.train_step(&x, &y, &opt, &mut st, &mut ws).unwrap();
        assert_eq!(st.steps(), t);
        let after = params(&net);
        let s1 = state(&st, slots);
        for i in 0..PARAMS {
            let mut s = [s0[0][i], s0[1][i]];
            let (want, scale) = rule(t, f64::from(p[i]), f64::from(g[i]), &mut s);
            let got = f64::from(after[i]);
            assert!(
                (got - want).abs() <= 1e-5 * scale + 1e-12,
                "{opt:?} step {t} parameter {i}: got {got}, rule {want} (scale {scale})"
            );
            for k in 0..slots {
                let (got, want) = (s1[k][i], s[k]);
                assert!(
                    (got - want).abs()
                        <= 1e-5
                            * (want.abs()
                                + s0[k][i].abs()
                                + f64::from(g[i]).powi(2)
                                + f64::from(g[i]).abs())
                            + 1e-12,
                    "{opt:?} step {t} parameter {i} state slot {k}: got {got}, rule {want}"
                );
            }
        }
    }
}

#[test]
fn sgd_and_momentum_follow_their_rules() {
    check_rule(Sgd::new(0.3).unwrap(), 0, &|_, w, g, _| {
        (w - g * 0.3, w.abs() + (g * 0.3).abs())
    });
    let (lr, mu) = (f64::from(0.3f32), f64::from(0.8f32));
    check_rule(Momentum::new(0.3, 0.8).unwrap(), 1, &move |_, w, g, s| {
        let v = s[0] * mu - g * lr;
        s[0] = v;
        (w + v, w.abs() + (s[0] * mu).abs() + (g * lr).abs())
    });
    check_rule(
        Momentum::nesterov(0.3, 0.8).unwrap(),
        1,
        &move |_, w, g, s| {
            let v = s[0] * mu - g * lr;
            s[0] = v;
            (w + (v * mu - g * lr), w.abs() + v.abs() + (g * lr).abs())
        },
    );
}

/// Adam as documented; `b1`, `b2` large enough, and ε large enough, that the bias
/// corrections and the placement of ε change every step visibly.
fn adam64(
    lr: f32,
    eps: f32,
    wd: f32,
    pytorch: bool,
) -> impl Fn(u64, f64, f64, &mut [f64; 2]) -> (f64, f64) {
    let (b1, b2) = (0.7f32, 0.8f32);
    move |t, w, g, s| {
        let pow = |b: f32| f64::from(b).powi(t as i32) as f32;
        let bc1 = f64::from(1.0f32 - pow(b1));
        let bc2 = f64::from(1.0f32 - pow(b2));
        let (lr, eps, wd) = (f64::from(lr), f64::from(eps), f64::from(wd));
        let w1 = w - w * wd * lr;
        let m = s[0] + (g - s[0]) * (1.0 - f64::from(b1));
        let v = s[1] + (g * g - s[1]) * (1.0 - f64::from(b2));
        *s = [m, v];
        let dw = if pytorch {
            m * (lr / bc1) / (v.sqrt() / bc2.sqrt() + eps)
        } else {
            m * (lr * bc2.sqrt() / bc1) / (v.sqrt() + eps)
        };
        (w1 - dw, w.abs() + 4.0 * dw.abs())
    }
}

#[test]
fn adam_follows_its_rule_with_either_placement_of_epsilon() {
    let keras = Adam::new(0.05)
        .unwrap()
        .betas(0.7, 0.8)
        .unwrap()
        .epsilon(0.05)
        .unwrap();
    check_rule(keras, 2, &adam64(0.05, 0.05, 0.0, false));
    let torch = Adam::pytorch(0.05)
        .unwrap()
        .betas(0.7, 0.8)
        .unwrap()
        .epsilon(0.05)
        .unwrap();
    check_rule(torch, 2, &adam64(0.05, 0.05, 0.0, true));
    let adamw = Adam::adamw(0.05, 0.5)
        .unwrap()
        .betas(0.7, 0.8)
        .unwrap()
        .epsilon(0.05)
        .unwrap();
    check_rule(adamw, 2, &adam64(0.05, 0.05, 0.5, false));
}

// ---------------------------------------------------------------------------------------
// 3. Refusing a step.
// ---------------------------------------------------------------------------------------

/// One step of a fresh state after `warm` steps at `warm_lr` (`None`: none); `Ok` with the
/// parameters, or the error after checking that nothing changed.
fn step<P: Optimizer + PartialEq>(
    net: &mut Net,
    opt: &P,
    warm: Option<&P>,
    x: &[[f32; 3]],
    y: &[u32],
) -> Result<Vec<f32>, Error> {
    let mut st = OptimizerState::<L, P>::new();
    let mut ws = Box::new(NetWorkspace::<L>::new());
    if let Some(w) = warm {
        let (wx, wy) = data(1.0);
        net.train_step(&wx, &wy, w, &mut st, &mut ws).unwrap();
    }
    let (p0, s0) = (params(net), st.clone());
    match net.train_step(x, y, opt, &mut st, &mut ws) {
        Ok(_) => {
            let p = params(net);
            assert!(p.iter().all(|v| v.is_finite()), "{opt:?}: {p:?}");
            let mut s = Vec::new();
            st.visit(|v| s.extend_from_slice(v));
            assert!(s.iter().all(|v| v.is_finite()), "{opt:?}: state {s:?}");
            Ok(p)
        }
        Err(e) => {
            let p = params(net);
            assert!(
                p.iter().zip(&p0).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{opt:?}: {e:?} changed a weight"
            );
            assert!(st == s0, "{opt:?}: {e:?} changed the state");
            Err(e)
        }
    }
}

fn refusals<P: Optimizer + PartialEq>(make: impl Fn(f32) -> P) {
    let (x, y) = data(1.0);
    let opt = make(0.01);
    // Large weights, an ordinary step: safe, taken.
    let mut net = Net::new(3);
    net.read_params(&[1e37; PARAMS]).unwrap();
    assert!(step(&mut net, &opt, None, &x, &y).is_ok(), "{opt:?}: 1e37");
    // Weights within 1/16 of `f32::MAX`: refused.
    net.read_params(&[3e37; PARAMS]).unwrap();
    assert_eq!(
        step(&mut net, &opt, None, &x, &y),
        Err(Error::UpdateOverflow),
        "{opt:?}: 3e37"
    );
    // Ordinary weights, inputs of up to 1000, a learning rate that takes the update past
    // `f32::MAX` (for Adam, its bound `m α / ε`).
    let mut net = Net::new(3);
    let huge = make(1e37);
    let (bx, _) = data(1000.0);
    assert_eq!(
        step(&mut net, &huge, None, &bx, &y),
        Err(Error::UpdateOverflow),
        "{huge:?}"
    );
    // Gradients past `f32::MAX / 16`: an input of 1e38 (the loss stays finite, the weights
    // being small).
    let mut net = Net::new(3);
    net.read_params(&[1e-3; PARAMS]).unwrap();
    let mut big = x.clone();
    big[5][1] = 1e38;
    assert_eq!(
        step(&mut net, &opt, None, &big, &y),
        Err(Error::UpdateOverflow),
        "{opt:?}: input 1e38"
    );
    // The same learning rate after a warm-up step with state: still an ordinary step.
    let mut net = Net::new(3);
    assert!(step(&mut net, &opt, Some(&opt), &x, &y).is_ok());
}

#[test]
fn refused_steps_sgd() {
    refusals(|lr| Sgd::new(lr).unwrap());
}

#[test]
fn refused_steps_momentum() {
    refusals(|lr| Momentum::new(lr, 0.9).unwrap());
    refusals(|lr| Momentum::nesterov(lr, 0.9).unwrap());
}

#[test]
fn refused_steps_adam() {
    refusals(|lr| Adam::new(lr).unwrap());
    refusals(|lr| Adam::pytorch(lr).unwrap());
    // `weight_decay * lr < 1`.
    refusals(|lr| Adam::adamw(lr, 1e-3 / lr.max(1.0)).unwrap());
}

/// The margin of "Refusing a step": the weights' magnitude *plus* the largest update the
/// gradient bound allows must stay below `f32::MAX / 16`. Weights of 2e37 and an update bound
/// of 1e36 to 1e37 are each inside it (the first two steps are taken), together outside it:
/// refused, although the update computed would have stayed finite.
fn margin<P: Optimizer + PartialEq>(opt: P) {
    let (x, y) = data(1.0);
    let mut net = Net::new(3);
    assert!(
        step(&mut net, &opt, None, &x, &y).is_ok(),
        "{opt:?}: small weights"
    );
    let small = opt.with_learning_rate(0.01).unwrap();
    net.read_params(&[2e37; PARAMS]).unwrap();
    assert!(
        step(&mut net, &small, None, &x, &y).is_ok(),
        "{small:?}: 2e37"
    );
    net.read_params(&[2e37; PARAMS]).unwrap();
    assert_eq!(
        step(&mut net, &opt, None, &x, &y),
        Err(Error::UpdateOverflow),
        "{opt:?}: 2e37"
    );
}

#[test]
fn the_margin_counts_weights_and_update_together() {
    margin(Sgd::new(3e36).unwrap());
    margin(Momentum::new(3e36, 0.9).unwrap());
    margin(Momentum::nesterov(3e36, 0.9).unwrap());
    // Adam's bound is `m α / ε`: with ε = 1e-7 and α about 0.3 lr at step 1 (Keras; 10 lr
    // for PyTorch), these bound the update near 3e36 times the gradient bound.
    margin(Adam::new(1e30).unwrap());
    margin(Adam::pytorch(3e28).unwrap());
}

/// A second moment that would overflow: a gradient near 1e20 is finite, its square is not.
/// Adam refuses the step (its state would hold infinity); SGD, whose update is `lr g`, takes
/// it.
#[test]
fn adam_refuses_a_step_whose_second_moment_would_overflow() {
    let (mut x, y) = data(1.0);
    x[3][2] = 1e21;
    let mut net = Net::new(3);
    assert!(step(&mut net, &Sgd::new(1e-3).unwrap(), None, &x, &y).is_ok());
    for opt in [Adam::new(1e-3).unwrap(), Adam::pytorch(1e-3).unwrap()] {
        let mut net = Net::new(3);
        assert_eq!(
            step(&mut net, &opt, None, &x, &y),
            Err(Error::UpdateOverflow),
            "{opt:?}"
        );
    }
}
