//! Every activation through a one-neuron network (weight 1, bias 0, so that `z = x`), quick
//! to build for the mutation run (.cargo/mutants.toml): `Network::outputs` is `f(z)`,
//! `Network::gradients` carries `f'(z)`, against `f64` closed forms written here (not the
//! crate's), within the accuracy the math module docs state; the public `Activation`
//! methods (`name`, `eval_f64`, `grad_f64`) and `visit_layers`' `ActivationF64` against the
//! same forms; `LeakyRelu`'s slope checks; the one-sample path (`predict_one`) through ReLU,
//! leaky and linear hidden layers; softmax probabilities; and `to_rust_source`: each
//! activation's expression, and a committed generated network writing itself again.

use fusedprop::{
    Activation, Dense, Error, Gelu, LeakyRelu, Linear, MeanSquaredError, NetGradients,
    NetWorkspace, Network, Relu, Sigmoid, Silu, SoftmaxCrossEntropy, Tanh, chain,
};

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The standard normal distribution function, from `erfc` by its continued fraction for
/// `|z| > 3` and the Taylor series of `erf` below (both to better than 1e-15 here).
fn phi(z: f64) -> f64 {
    let x = z / core::f64::consts::SQRT_2;
    let a = x.abs();
    let erfc = if a < 2.5 {
        // erf(a) = 2/sqrt(pi) sum (-1)^n a^(2n+1) / (n! (2n+1))
        let (mut term, mut sum) = (a, a);
        for n in 1..200 {
            term *= -a * a / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        1.0 - 2.0 / core::f64::consts::PI.sqrt() * sum
    } else {
        // erfc(a) = e^(-a^2)/sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...))))
        let mut f = a;
        for k in (1..200).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        (-a * a).exp() / core::f64::consts::PI.sqrt() / f
    };
    if x >= 0.0 {
        1.0 - erfc / 2.0
    } else {
        erfc / 2.0
    }
}

/// `f(z)` and `f'(z)` in `f64` from the formulas in the activation table, by Keras's name.
fn closed_form(name: &str, z: f64, slope: f64) -> (f64, f64) {
    let s = sigmoid(z);
    match name {
        "linear" => (z, 1.0),
        "relu" => (z.max(0.0), if z > 0.0 { 1.0 } else { 0.0 }),
        "leaky_relu" => {
            if z > 0.0 {
                (z, 1.0)
            } else {
                (slope * z, slope)
            }
        }
        "tanh" => (z.tanh(), 1.0 - z.tanh() * z.tanh()),
        "sigmoid" => (s, s * (1.0 - s)),
        "silu" => (z * s, s * (1.0 + z * (1.0 - s))),
        "gelu" => (
            z * phi(z),
            phi(z) + z * (-z * z / 2.0).exp() / (2.0 * core::f64::consts::PI).sqrt(),
        ),
        _ => panic!("unknown activation {name}"),
    }
}

/// Inputs: a grid over [-8, 8], both sides of every kink, and the tails.
fn zs() -> Vec<f32> {
    let mut z: Vec<f32> = (-64..=64).map(|i| i as f32 / 8.0 + 0.03).collect();
    z.extend([0.0, 1e-3, -1e-3, 0.5, -0.5, 20.0, -20.0, 40.0, -12.0]);
    z
}

fn check<A: Activation>(a: A, name: &str, slope: f64) {
    assert_eq!(a.name(), name);
    let net = Network::<Dense<1, 1, A>, MeanSquaredError>::from_layers(
        Dense::from_parts([[1.0]], [0.0], a),
        MeanSquaredError,
    );
    let x: Vec<[f32; 1]> = zs().into_iter().map(|z| [z]).collect();
    let mut y = vec![[0.0f32; 1]; x.len()];
    net.outputs(&x, &mut y).unwrap();
    let mut g = Box::new(NetGradients::<Dense<1, 1, A>>::ZERO);
    let mut ws = Box::new(NetWorkspace::<Dense<1, 1, A>>::ZERO);
    for (xr, yr) in x.iter().zip(&y) {
        let z = f64::from(xr[0]);
        let (want, dwant) = closed_form(name, z, slope);
        // The crate's own oracle, public: the same forms, to 1e-11 (its GELU is
        // `z (1 + erf(z/√2))/2`, which cancels in the left tail: there it is accurate to
        // 1e-16 absolute only).
        assert!(
            (a.eval_f64(z) - want).abs() <= 1e-11 * want.abs() + 4e-16,
            "{name}({z}): {} against {want}",
            a.eval_f64(z)
        );
        assert!((a.grad_f64(z) - dwant).abs() <= 1e-12, "{name}'({z})");
        let got = f64::from(yr[0]);
        assert!(
            (got - want).abs() <= 1e-6 * want.abs() + 1e-30,
            "{name}({z}) = {got}, want {want}"
        );
        // MSE of one sample against t = y - 1/2: dL/db = 2 (y - t) f'(z) = f'(z).
        let t = [[yr[0] - 0.5]];
        let loss = net.gradients(&[*xr], &t, &mut g, &mut ws).unwrap();
        assert_eq!(loss.to_bits(), net.loss(&[*xr], &t).unwrap().to_bits());
        let mut p = [0.0f32; 2];
        g.write_flat(&mut p).unwrap();
        let (dw, db) = (f64::from(p[0]), f64::from(p[1]));
        let scale = 2.0 * (f64::from(yr[0]) - f64::from(t[0][0]));
        assert!(
            (db - scale * dwant).abs() <= 1e-6 * dwant.abs().max(1.0),
            "{name}'({z}) = {db}, want {dwant}"
        );
        assert!(
            (dw - db * z).abs() <= 1e-6 * (db * z).abs().max(1e-30),
            "{name}: dw {dw}, db {db}, z {z}"
        );
    }
}

#[test]
fn every_activation_is_its_formula_forward_and_backward() {
    check(Linear, "linear", 0.0);
    check(Relu, "relu", 0.0);
    check(
        LeakyRelu::new(0.3).unwrap(),
        "leaky_relu",
        f64::from(0.3f32),
    );
    check(LeakyRelu::new(0.0).unwrap(), "leaky_relu", 0.0);
    check(LeakyRelu::new(1.0).unwrap(), "leaky_relu", 1.0);
    check(Tanh, "tanh", 0.0);
    check(Sigmoid, "sigmoid", 0.0);
    check(Silu, "silu", 0.0);
    check(Gelu, "gelu", 0.0);
}

/// The normal distribution function here against known values, so that GELU's check does
/// not rest on an untested oracle.
#[test]
fn the_test_s_normal_distribution_function_is_right() {
    for (z, want) in [
        (0.0, 0.5),
        (1.0, 0.841_344_746_068_542_9),
        (-1.0, 0.158_655_253_931_457_05),
        (2.0, 0.977_249_868_051_820_8),
        (-3.5, 2.326_290_790_355_25e-4),
        (5.0, 0.999_999_713_348_428_1),
    ] {
        assert!((phi(z) - want).abs() <= 1e-13, "phi({z}) = {}", phi(z));
    }
}

/// `LeakyRelu`'s slope is Keras's `negative_slope`, in `[0, 1]`.
#[test]
fn leaky_relu_takes_slopes_in_the_unit_interval() {
    for s in [0.0f32, 0.01, 0.3, 1.0] {
        assert_eq!(LeakyRelu::new(s).unwrap().slope(), s);
        assert_eq!(LeakyRelu::new_const(s), LeakyRelu::new(s).unwrap());
    }
    for s in [-0.01f32, 1.000_001, f32::NAN, f32::INFINITY, -1.0] {
        match LeakyRelu::new(s) {
            Err(Error::InvalidHyperparameter { name, value }) => {
                assert_eq!(name, "negative_slope");
                assert_eq!(value.to_bits(), s.to_bits());
            }
            other => panic!("slope {s}: {other:?}"),
        }
    }
}

#[test]
#[should_panic(expected = "LeakyRelu: the slope must be in [0, 1]")]
fn leaky_relu_new_const_refuses_a_slope_above_one() {
    let _ = LeakyRelu::new_const(1.5);
}

#[test]
#[should_panic(expected = "LeakyRelu: the slope must be in [0, 1]")]
fn leaky_relu_new_const_refuses_a_negative_slope() {
    let _ = LeakyRelu::new_const(-0.5);
}

/// The one-sample path applies each layer's activation as `predict` does: hidden
/// `z = (x, -x)`, logits `(h0, h1 + 0.75)`. At `x = 0.4` the logits are `(0.4, 0.35)`
/// with no activation (class 0), `(0.4, 0.55)` with a leaky ReLU of slope 0.5 and
/// `(0.4, 0.75)` with ReLU (class 1).
#[test]
fn predict_one_applies_the_hidden_activation() {
    fn net<A: Activation>(
        a: A,
    ) -> Network<chain![Dense<1, 2, A>, Dense<2, 2>], SoftmaxCrossEntropy> {
        Network::from_layers(
            fusedprop::Chain(
                Dense::from_parts([[1.0], [-1.0]], [0.0, 0.0], a),
                Dense::from_parts([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.75], Linear),
            ),
            SoftmaxCrossEntropy,
        )
    }
    let leaky = LeakyRelu::new(0.5).unwrap();
    let x = [[2.0f32], [-2.0], [-0.25], [0.25], [1.0], [0.4], [0.1]];
    for (i, r) in x.iter().enumerate() {
        let mut c = [0u32; 1];
        net(Relu).predict(&[*r], &mut c).unwrap();
        assert_eq!(net(Relu).predict_one(r).unwrap(), c[0], "relu, sample {i}");
        net(Linear).predict(&[*r], &mut c).unwrap();
        assert_eq!(
            net(Linear).predict_one(r).unwrap(),
            c[0],
            "linear, sample {i}"
        );
        net(leaky).predict(&[*r], &mut c).unwrap();
        assert_eq!(
            net(leaky).predict_one(r).unwrap(),
            c[0],
            "leaky, sample {i}"
        );
        net(Tanh).predict(&[*r], &mut c).unwrap();
        assert_eq!(net(Tanh).predict_one(r).unwrap(), c[0], "tanh, sample {i}");
    }
    assert_eq!(net(Linear).predict_one(&[0.4]).unwrap(), 0);
    assert_eq!(net(leaky).predict_one(&[0.4]).unwrap(), 1);
    assert_eq!(net(Relu).predict_one(&[0.4]).unwrap(), 1);
    // Tanh at x = 2: logits (0.964, -0.214), class 0; at x = -0.5: (-0.462, 1.212), class 1.
    assert_eq!(net(Tanh).predict_one(&[2.0]).unwrap(), 0);
    assert_eq!(net(Tanh).predict_one(&[-0.5]).unwrap(), 1);
}

/// `to_rust_source` names each activation as a `const` expression: the type, or for
/// `LeakyRelu` its `new_const` with the slope's shortest decimal (`to_rust_source` needs
/// feature `std`).
#[cfg(feature = "std")]
#[test]
fn rust_source_names_the_activation() {
    fn source<A: Activation>(a: A) -> String {
        Network::<Dense<1, 1, A>, MeanSquaredError>::from_layers(
            Dense::from_parts([[1.0]], [0.0], a),
            MeanSquaredError,
        )
        .to_rust_source("M")
        .unwrap()
    }
    let s = source(LeakyRelu::new(0.3).unwrap());
    assert!(
        s.contains("        ::fusedprop::LeakyRelu::new_const(0.3),\n"),
        "{s}"
    );
    let s = source(Relu);
    assert!(s.contains("        ::fusedprop::Relu,\n"), "{s}");
    assert!(
        s.contains("::fusedprop::Dense<1, 1, ::fusedprop::Relu>"),
        "{s}"
    );
    let s = source(Gelu);
    assert!(s.contains("        ::fusedprop::Gelu,\n"), "{s}");
}

/// Softmax cross-entropy's probabilities (`predict_proba`) are the softmax of the logits,
/// shifted by their maximum: right for logits far from 0 too.
#[test]
fn softmax_probabilities_are_the_softmax_of_the_logits() {
    let net = Network::<Dense<1, 3>, SoftmaxCrossEntropy>::from_layers(
        Dense::from_parts([[1.0], [-1.0], [2.0]], [0.5, 0.0, -1.0], Linear),
        SoftmaxCrossEntropy,
    );
    let x = [[0.0f32], [1.0], [-3.0], [40.0], [-60.0], [0.25]];
    let mut p = [[0.0f32; 3]; 6];
    net.predict_proba(&x, &mut p).unwrap();
    for (r, pr) in x.iter().zip(&p) {
        let x = f64::from(r[0]);
        let z = [x + 0.5, -x, 2.0 * x - 1.0];
        let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        for j in 0..3 {
            let want = (z[j] - m).exp() / s;
            assert!(
                (f64::from(pr[j]) - want).abs() <= 1e-6 * want + 1e-38,
                "x {x}, class {j}: {} against {want}",
                pr[j]
            );
        }
    }
}

/// A layer as `visit_layers` shows it: inputs, outputs, activation name, parameters, and
/// the activation's `f64` values and derivatives at four points.
type Seen = (usize, usize, &'static str, usize, [f64; 4], [f64; 4]);

/// `visit_layers` hands each layer's shape and its activation's `f64` definition (the
/// oracle's `ActivationF64`), which is the activation's `eval_f64` and `grad_f64`.
#[test]
fn visit_layers_hands_each_activation_s_definition() {
    type L = chain![Dense<2, 3, Tanh>, Dense<3, 4, LeakyRelu>, Dense<4, 2, Gelu>];
    let mut net = Network::<L, SoftmaxCrossEntropy>::from_layers(
        fusedprop::Chain(
            Dense::from_parts([[0.0; 2]; 3], [0.0; 3], Tanh),
            fusedprop::Chain(
                Dense::from_parts([[0.0; 3]; 4], [0.0; 4], LeakyRelu::new(0.25).unwrap()),
                Dense::from_parts([[0.0; 4]; 2], [0.0; 2], Gelu),
            ),
        ),
        SoftmaxCrossEntropy,
    );
    net.init_glorot(3);
    let mut seen: Vec<Seen> = Vec::new();
    net.visit_layers(|info, act| {
        let (f, df) = (
            [-2.5, -0.5, 0.75, 3.0].map(|z| act.eval(z)),
            [-2.5, -0.5, 0.75, 3.0].map(|z| act.grad(z)),
        );
        seen.push((
            info.inputs,
            info.outputs,
            info.activation,
            info.params,
            f,
            df,
        ));
    });
    assert_eq!(seen.len(), 3);
    let zs = [-2.5, -0.5, 0.75, 3.0];
    let leaky = LeakyRelu::new(0.25).unwrap();
    let want: [Seen; 3] = [
        (
            2,
            3,
            "tanh",
            9,
            zs.map(|z| Tanh.eval_f64(z)),
            zs.map(|z| Tanh.grad_f64(z)),
        ),
        (
            3,
            4,
            "leaky_relu",
            16,
            zs.map(|z| leaky.eval_f64(z)),
            zs.map(|z| leaky.grad_f64(z)),
        ),
        (
            4,
            2,
            "gelu",
            10,
            zs.map(|z| Gelu.eval_f64(z)),
            zs.map(|z| Gelu.grad_f64(z)),
        ),
    ];
    for (s, w) in seen.iter().zip(&want) {
        assert_eq!(s, w);
    }
    // And those are the formulas (not constants).
    assert_eq!(want[1].4, [-0.625, -0.125, 0.75, 3.0]);
    assert_eq!(want[1].5, [0.25, 0.25, 1.0, 1.0]);
}

include!("generated/edge.rs");

/// The committed `to_rust_source` output of a network of every other activation (the
/// `EDGE` static of `tests/rust_source.rs`, which needs feature `safetensors`), compiled
/// here, writes itself again byte for byte: layouts, indentation and each activation
/// (`to_rust_source` needs feature `std`).
#[cfg(feature = "std")]
#[test]
fn a_generated_static_writes_itself_again() {
    assert_eq!(
        EDGE.to_rust_source("EDGE").unwrap(),
        include_str!("generated/edge.rs")
    );
}
