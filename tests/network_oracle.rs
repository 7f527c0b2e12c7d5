//! The generic `Network` against the `f64` oracle of any network (tests/support/net.rs):
//!
//! 1. the oracle's analytic gradients against central finite differences of its own loss;
//! 2. proptest over 13 network types that together cover depths 1-4, every width of
//!    {1, 3, 4, 8, 9, 16, 17, 33}, every activation and every head: `loss`, `gradients` and
//!    `predict_proba` against the oracle, and the fused SGD step against `gradients` then
//!    `w - lr g` bit for bit, for batches of 1 to 300 (partial blocks, one to three tiles);
//! 3. every optimizer's step (SGD, momentum, Nesterov, Adam with both placements of ε,
//!    AdamW) against an `f64` replay of its documented rule on the oracle's gradients;
//! 4. refused steps leave the weights and the optimizer state bit for bit unchanged;
//! 5. padded lanes of a partial block never reach a result;
//! 6. `Network` with a ReLU hidden layer and SGD is `Mlp`, bit for bit.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops read like the formulas they check"
)]

#[path = "../examples/support/data.rs"]
mod data;
mod support;

use fusedprop::{
    Adam, BinaryCrossEntropy, Chain, Dense, Dim, Error, Gelu, Head, Layer, LeakyRelu,
    MeanSquaredError, Mlp, Momentum, NetGradients, NetWorkspace, Network, Optimizer,
    OptimizerState, Relu, Sgd, Sigmoid, Silu, SoftmaxCrossEntropy, Tanh, Workspace, chain,
};
use proptest::prelude::*;
use support::net::*;
use support::*;

// ---------------------------------------------------------------------------------------
// The network types under test.
// ---------------------------------------------------------------------------------------

type D1Softmax = Dense<3, 4>;
type D1Bce = Dense<9, 1>;
type D1Mse = Dense<33, 17, Relu>;
type D2Relu = chain![Dense<4, 8, Relu>, Dense<8, 3>];
type D2Tanh = chain![Dense<1, 16, Tanh>, Dense<16, 1>];
type D2Sigmoid = chain![Dense<17, 9, Sigmoid>, Dense<9, 4>];
type D2TanhOut = chain![Dense<9, 3, Tanh>, Dense<3, 8, Tanh>];
type D3SiluGelu = chain![Dense<8, 33, Silu>, Dense<33, 9, Gelu>, Dense<9, 3>];
type D3Leaky = chain![Dense<16, 17, LeakyRelu>, Dense<17, 8, Relu>, Dense<8, 1>];
type D3Narrow = chain![Dense<4, 3, Gelu>, Dense<3, 1, LeakyRelu>, Dense<1, 2>];
type D4Mixed = chain![
    Dense<33, 4, Gelu>,
    Dense<4, 16, Tanh>,
    Dense<16, 9, LeakyRelu>,
    Dense<9, 17>
];
type D4Bottleneck = chain![
    Dense<3, 9, Relu>,
    Dense<9, 1, Sigmoid>,
    Dense<1, 8, Silu>,
    Dense<8, 33>
];
type D4Bce = chain![
    Dense<8, 16, Silu>,
    Dense<16, 4, LeakyRelu>,
    Dense<4, 9, Sigmoid>,
    Dense<9, 3>
];

// Hidden layers of 16+ inputs and 32+ outputs take their weight gradients from their
// inputs transposed into rows (`LayerKernel::ROWS_IN`): one such layer with a column past
// the rows (17 inputs), and two in a row (the second's rows from the first's buffers).
type D3Rows = chain![Dense<5, 17, Tanh>, Dense<17, 33, Relu>, Dense<33, 3>];
type D4Rows = chain![
    Dense<3, 16, Silu>,
    Dense<16, 32, Relu>,
    Dense<32, 40, Tanh>,
    Dense<40, 2>
];

const LEAK: LeakyRelu = LeakyRelu::new_const(0.2);

fn d3_leaky() -> Network<D3Leaky, BinaryCrossEntropy> {
    Network::from_layers(
        Chain(Dense::zero_with(LEAK), Chain(Dense::ZERO, Dense::ZERO)),
        BinaryCrossEntropy,
    )
}

fn d3_narrow() -> Network<D3Narrow, SoftmaxCrossEntropy> {
    Network::from_layers(
        Chain(Dense::ZERO, Chain(Dense::zero_with(LEAK), Dense::ZERO)),
        SoftmaxCrossEntropy,
    )
}

fn d4_mixed() -> Network<D4Mixed, MeanSquaredError> {
    Network::from_layers(
        Chain(
            Dense::ZERO,
            Chain(Dense::ZERO, Chain(Dense::zero_with(LEAK), Dense::ZERO)),
        ),
        MeanSquaredError,
    )
}

fn d4_bce() -> Network<D4Bce, BinaryCrossEntropy> {
    Network::from_layers(
        Chain(
            Dense::ZERO,
            Chain(Dense::zero_with(LEAK), Chain(Dense::ZERO, Dense::ZERO)),
        ),
        BinaryCrossEntropy,
    )
}

/// A network with every parameter zero, for the types without a leaky layer.
fn zero<L: Layer + Default, H: Head<L::Out> + Default>() -> Network<L, H> {
    Network::from_layers(L::default(), H::default())
}

// ---------------------------------------------------------------------------------------
// 1. The oracle against finite differences of its own loss.
// ---------------------------------------------------------------------------------------

/// Every parameter's gradient (or `max_coords` of them, evenly spread) against finite
/// differences of the oracle's loss. A coordinate is skipped when a step of `±h` changes the
/// sign of any ReLU or leaky ReLU input of any sample (the kink).
fn check_oracle_fd<L: Layer, H: Head<L::Out>, const I: usize>(
    net: &Network<L, H>,
    x: &[[f32; I]],
    y: &[H::T],
    max_coords: usize,
) where
    H::T: OracleTarget,
{
    let oracle = NetOracle::new(net);
    let p = params64(net);
    let (x, y) = (inputs(x), targets(y));
    let (loss, g) = oracle.gradients(&p, &x, &y);
    assert_eq!(loss, oracle.loss(&p, &x, &y), "gradients' loss is the loss");
    let base = oracle.kink_pattern(&p, &x);
    let stride = p.len().div_ceil(max_coords).max(1);
    let (mut checked, mut skipped) = (0, 0);
    for i in (0..p.len()).step_by(stride) {
        let v = p[i];
        let h = fd_step(v);
        let at = |t: f64| {
            let mut q = p.clone();
            q[i] = t;
            q
        };
        if [v - h, v + h]
            .iter()
            .any(|&t| oracle.kink_pattern(&at(t), &x) != base)
        {
            skipped += 1;
            continue;
        }
        let fd = central_difference(v, |t| oracle.loss(&at(t), &x, &y));
        assert_fd(
            g[i],
            fd,
            &format_args!(
                "parameter {i} of {} (N = {})",
                core::any::type_name::<L>(),
                x.len()
            ),
        );
        checked += 1;
    }
    assert!(checked > skipped, "{checked} checked, {skipped} skipped");
}

macro_rules! oracle_fd {
    ($($name:ident: $net:expr, $i:literal -> $o:literal, $head:ty, coords $c:literal;)*) => {$(
        proptest! {
            #![proptest_config(cases(6))]
            #[test]
            fn $name(seed in any::<u64>(), n in 1usize..=5, data in any::<u64>()) {
                let mut net = $net;
                net.init_glorot(seed);
                randomize(&mut net, seed);
                let x = input_rows::<$i>(data, n, 2.0);
                let y = <$head as DrawTargets<Dim<$o>>>::draw(data ^ 1, n);
                check_oracle_fd(&net, &x, &y, $c);
            }
        }
    )*};
}

oracle_fd! {
    oracle_fd_relu_softmax: zero::<D2Relu, SoftmaxCrossEntropy>(), 4 -> 3, SoftmaxCrossEntropy, coords 100;
    oracle_fd_tanh_out_mse: zero::<D2TanhOut, MeanSquaredError>(), 9 -> 8, MeanSquaredError, coords 100;
    oracle_fd_silu_gelu_softmax: zero::<D3SiluGelu, SoftmaxCrossEntropy>(), 8 -> 3, SoftmaxCrossEntropy, coords 60;
    oracle_fd_leaky_bce: d3_leaky(), 16 -> 1, BinaryCrossEntropy, coords 60;
    oracle_fd_sigmoid_multilabel_bce: zero::<D2Sigmoid, BinaryCrossEntropy>(), 17 -> 4, BinaryCrossEntropy, coords 60;
    oracle_fd_deep_mse: d4_mixed(), 33 -> 17, MeanSquaredError, coords 60;
    oracle_fd_deep_bce: d4_bce(), 8 -> 3, BinaryCrossEntropy, coords 60;
}

// ---------------------------------------------------------------------------------------
// 2. Networks against the oracle.
// ---------------------------------------------------------------------------------------

fn check_net<L, H: Head<Dim<O>>, const I: usize, const O: usize>(
    net: &Network<L, H>,
    x: &[[f32; I]],
    y: &[H::T],
) where
    L: Layer<In = Dim<I>, Out = Dim<O>> + Clone,
    H::T: OracleTarget,
{
    let n = x.len();
    let name = core::any::type_name::<L>();
    let oracle = NetOracle::new(net);
    let p = params64(net);
    let (x64, y64) = (inputs(x), targets(y));
    let (want_loss, want) = oracle.gradients(&p, &x64, &y64);
    let sc = oracle.scales(&p, &x64, &y64);
    let tol = net_tol(&oracle, n);

    let loss = net.loss(x, y).expect("valid batch");
    assert_close(
        loss.into(),
        want_loss,
        sc.loss,
        tol,
        &format_args!("{name}::loss, N = {n}"),
    );

    let mut ws = Box::new(NetWorkspace::<L>::ZERO);
    let mut g = Box::new(NetGradients::<L>::ZERO);
    let gl = net.gradients(x, y, &mut g, &mut ws).expect("valid batch");
    assert_close(
        gl.into(),
        want_loss,
        sc.loss,
        tol,
        &format_args!("{name} gradients' loss, N = {n}"),
    );
    let mut flat = vec![0.0f32; L::PARAMS];
    g.write_flat(&mut flat).expect("length");
    for (i, &got) in flat.iter().enumerate() {
        let what = format_args!("{name} gradient {i}, N = {n}");
        // Within the tolerance of the nearest point that the kinks leave possible
        // (`Scales::up`; `want[i]` itself wherever no unit is that close to a kink).
        let nearest = f64::from(got).clamp(want[i] - sc.down[i], want[i] + sc.up[i]);
        assert_close(got.into(), nearest, sc.grads[i], tol, &what);
    }

    let mut proba = vec![[0.0f32; O]; n];
    net.predict_proba(x, &mut proba).expect("finite");
    for (s, (xs, ps)) in x64.iter().zip(&proba).enumerate() {
        let want_p = oracle.head_outputs(&oracle.forward(&p, xs).out);
        for j in 0..O {
            let what = format_args!("{name}::predict_proba [{s}][{j}]");
            assert_close(ps[j].into(), want_p[j], sc.outputs[s][j], tol, &what);
        }
    }

    // The fused SGD step is `gradients` then `w - lr * g`, bit for bit (FUSED_SGD).
    let lr = 0.05f32;
    let mut stepped = net.clone();
    let mut st = OptimizerState::<L, Sgd>::new();
    let step_loss = stepped
        .train_step(x, y, &Sgd::new(lr).expect("valid"), &mut st, &mut ws)
        .expect("finite step");
    assert_eq!(
        step_loss.to_bits(),
        gl.to_bits(),
        "{name}: train_step loss vs gradients loss"
    );
    let mut after = vec![0.0f32; L::PARAMS];
    stepped.write_params(&mut after).expect("length");
    for (i, ((w, gr), got)) in p.iter().zip(&flat).zip(&after).enumerate() {
        let expected = *w as f32 - lr * gr;
        assert_eq!(
            got.to_bits(),
            expected.to_bits(),
            "{name} train_step parameter {i}: {got} vs w - lr g = {expected} (N = {n})"
        );
    }
}

/// Batch lengths: partial single blocks, around one block (16), around one tile (128, 129)
/// and up to three tiles.
fn batch_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 1usize..=40,
        1 => 14usize..=18,
        2 => 120usize..=136,
        1 => 250usize..=300,
    ]
}

macro_rules! net_vs_oracle {
    ($($name:ident: $net:expr, $i:literal -> $o:literal, $head:ty, cases $c:literal;)*) => {$(
        proptest! {
            #![proptest_config(cases($c))]
            #[test]
            fn $name(seed in any::<u64>(), n in batch_len(), data in any::<u64>()) {
                let mut net = $net;
                net.init_glorot(seed);
                // Half the cases as Keras starts (Glorot, zero biases), half with wider
                // weights and non-zero biases.
                if seed % 2 == 1 {
                    randomize(&mut net, seed);
                }
                let x = input_rows::<$i>(data, n, 3.0);
                let y = <$head as DrawTargets<Dim<$o>>>::draw(data ^ 1, n);
                check_net(&net, &x, &y);
            }
        }
    )*};
}

net_vs_oracle! {
    net_d1_linear_softmax: zero::<D1Softmax, SoftmaxCrossEntropy>(), 3 -> 4, SoftmaxCrossEntropy, cases 12;
    net_d1_linear_bce: zero::<D1Bce, BinaryCrossEntropy>(), 9 -> 1, BinaryCrossEntropy, cases 12;
    net_d1_relu_mse: zero::<D1Mse, MeanSquaredError>(), 33 -> 17, MeanSquaredError, cases 8;
    net_d2_relu_softmax: zero::<D2Relu, SoftmaxCrossEntropy>(), 4 -> 3, SoftmaxCrossEntropy, cases 12;
    net_d2_tanh_mse: zero::<D2Tanh, MeanSquaredError>(), 1 -> 1, MeanSquaredError, cases 12;
    net_d2_sigmoid_multilabel_bce: zero::<D2Sigmoid, BinaryCrossEntropy>(), 17 -> 4, BinaryCrossEntropy, cases 8;
    net_d2_tanh_out_mse: zero::<D2TanhOut, MeanSquaredError>(), 9 -> 8, MeanSquaredError, cases 10;
    net_d3_silu_gelu_softmax: zero::<D3SiluGelu, SoftmaxCrossEntropy>(), 8 -> 3, SoftmaxCrossEntropy, cases 8;
    net_d3_leaky_bce: d3_leaky(), 16 -> 1, BinaryCrossEntropy, cases 8;
    net_d3_narrow_softmax: d3_narrow(), 4 -> 2, SoftmaxCrossEntropy, cases 10;
    net_d4_mixed_mse: d4_mixed(), 33 -> 17, MeanSquaredError, cases 8;
    net_d4_bottleneck_softmax: zero::<D4Bottleneck, SoftmaxCrossEntropy>(), 3 -> 33, SoftmaxCrossEntropy, cases 8;
    net_d4_bce: d4_bce(), 8 -> 3, BinaryCrossEntropy, cases 8;
    net_d3_rows_softmax: zero::<D3Rows, SoftmaxCrossEntropy>(), 5 -> 3, SoftmaxCrossEntropy, cases 8;
    net_d4_rows_mse: zero::<D4Rows, MeanSquaredError>(), 3 -> 2, MeanSquaredError, cases 8;
}

// ---------------------------------------------------------------------------------------
// 3. Optimizers against an f64 replay of their documented rules.
// ---------------------------------------------------------------------------------------

/// An optimizer's documented rule (src/optim.rs), in `f64`, with its hyperparameters as the
/// `f32` values the optimizer holds.
#[derive(Debug, Clone, Copy)]
enum Rule64 {
    Sgd {
        lr: f32,
    },
    Momentum {
        lr: f32,
        mu: f32,
        nesterov: bool,
    },
    Adam {
        lr: f32,
        b1: f32,
        b2: f32,
        eps: f32,
        wd: f32,
        pytorch: bool,
    },
}

/// A value after one step and the size of the terms it was computed from.
#[derive(Debug, Clone, Copy)]
struct Replayed {
    w: f64,
    s: [f64; 2],
    scale: [f64; 3],
}

impl Rule64 {
    fn slots(&self) -> usize {
        match self {
            Rule64::Sgd { .. } => 0,
            Rule64::Momentum { .. } => 1,
            Rule64::Adam { .. } => 2,
        }
    }

    /// Step `t` (from 1) of weight `w` with gradient `g` and state `s`. Adam's bias
    /// corrections are the documented per-step scalars: `β^t` in `f64` rounded to `f32`, and
    /// `1 - β^t` in `f32` (Keras computes them in the variable's dtype).
    fn step(&self, t: u64, w: f64, g: f64, s: [f64; 2]) -> Replayed {
        match *self {
            Rule64::Sgd { lr } => {
                let lr = f64::from(lr);
                Replayed {
                    w: w - g * lr,
                    s,
                    scale: [w.abs() + (g * lr).abs(), 0.0, 0.0],
                }
            }
            Rule64::Momentum { lr, mu, nesterov } => {
                let (lr, mu) = (f64::from(lr), f64::from(mu));
                let v = s[0] * mu - g * lr;
                let sv = (s[0] * mu).abs() + (g * lr).abs();
                let (w2, sw) = if nesterov {
                    (w + (v * mu - g * lr), w.abs() + sv * mu + (g * lr).abs())
                } else {
                    (w + v, w.abs() + sv)
                };
                Replayed {
                    w: w2,
                    s: [v, 0.0],
                    scale: [sw, sv, 0.0],
                }
            }
            Rule64::Adam {
                lr,
                b1,
                b2,
                eps,
                wd,
                pytorch,
            } => {
                let pow = |b: f32| f64::from(b).powi(t as i32) as f32;
                let bc1 = f64::from(1.0f32 - pow(b1));
                let bc2 = f64::from(1.0f32 - pow(b2));
                let (lr64, eps) = (f64::from(lr), f64::from(eps));
                let w1 = w - w * f64::from(wd) * lr64;
                let (b1c, b2c) = (1.0 - f64::from(b1), 1.0 - f64::from(b2));
                let m = s[0] + (g - s[0]) * b1c;
                let v = s[1] + (g * g - s[1]) * b2c;
                let sm = s[0].abs() + (g.abs() + s[0].abs()) * b1c;
                let sv = s[1].abs() + (g * g + s[1].abs()) * b2c;
                let (alpha, denom) = if pytorch {
                    (lr64 / bc1, v.sqrt() / bc2.sqrt() + eps)
                } else {
                    (lr64 * bc2.sqrt() / bc1, v.sqrt() + eps)
                };
                let dw = m * alpha / denom;
                Replayed {
                    w: w1 - dw,
                    s: [m, v],
                    // `m` may be a difference of larger terms: its error, `sm`-relative,
                    // reaches the weight through `alpha / denom`.
                    scale: [w.abs() + 2.0 * sm * alpha / denom, sm, sv],
                }
            }
        }
    }
}

/// The state's values as `[slot][parameter]`, from `OptimizerState::visit` (each layer's
/// slots in turn, each slot its weights then its biases).
fn state_flat<L: Layer, P: Optimizer>(
    st: &OptimizerState<L, P>,
    shapes: &[Shape],
    slots: usize,
) -> Vec<Vec<f32>> {
    let mut all = Vec::new();
    st.visit(|s| all.extend_from_slice(s));
    let params: usize = shapes
        .iter()
        .map(|s| s.inputs * s.outputs + s.outputs)
        .sum();
    assert_eq!(all.len(), slots * params, "state length");
    let mut out = vec![vec![0.0f32; params]; slots];
    let mut at = 0;
    for s in shapes {
        let len = s.inputs * s.outputs + s.outputs;
        for slot in out.iter_mut() {
            slot[s.at..s.at + len].copy_from_slice(&all[at..at + len]);
            at += len;
        }
    }
    out
}

type OptNet = chain![Dense<4, 9, Tanh>, Dense<9, 8, LeakyRelu>, Dense<8, 3>];

/// Five steps of `opt`; after each, every weight and state value against the replay of
/// `rule` from the step's `f32` weights and state with the oracle's gradients. The bound is
/// `OPTIMIZER` times the size of the terms, plus what the gradient's own tolerance (the
/// network row of the table) does to the result through the rule: the replay's spread
/// between `g - δ` and `g + δ`.
fn check_optimizer<P: Optimizer>(opt: P, rule: Rule64, n: usize, seed: u64) {
    let mut net = Network::<OptNet, SoftmaxCrossEntropy>::from_layers(
        Chain(Dense::ZERO, Chain(Dense::zero_with(LEAK), Dense::ZERO)),
        SoftmaxCrossEntropy,
    );
    net.init_glorot(seed);
    randomize(&mut net, seed);
    let x = input_rows::<4>(seed, n, 2.0);
    let y = <SoftmaxCrossEntropy as DrawTargets<Dim<3>>>::draw(seed, n);
    let (x64, y64) = (inputs(&x), targets(&y));
    let mut st = OptimizerState::<OptNet, P>::new();
    let mut ws = Box::new(NetWorkspace::<OptNet>::new());
    let slots = rule.slots();
    for t in 1..=5u64 {
        let oracle = NetOracle::new(&net);
        let shapes = oracle.shapes.clone();
        let p = params64(&net);
        let s0 = state_flat(&st, &shapes, slots);
        let (want_loss, g) = oracle.gradients(&p, &x64, &y64);
        let sc = oracle.scales(&p, &x64, &y64);
        let tol = net_tol(&oracle, n);
        drop(oracle);
        let loss = net
            .train_step(&x, &y, &opt, &mut st, &mut ws)
            .expect("step");
        assert_close(
            loss.into(),
            want_loss,
            sc.loss,
            tol,
            &format_args!("{rule:?} step {t} loss"),
        );
        assert_eq!(st.steps(), t);
        let mut after = vec![0.0f32; OptNet::PARAMS];
        net.write_params(&mut after).expect("length");
        let s1 = state_flat(&st, &shapes, slots);
        for i in 0..p.len() {
            let s = [0, 1].map(|k| if k < slots { f64::from(s0[k][i]) } else { 0.0 });
            let want = rule.step(t, p[i], g[i], s);
            let delta =
                tol.abs * sc.grads[i] + tol.rel * g[i].abs() + sc.up[i].max(sc.down[i]) + UNDERFLOW;
            let lo = rule.step(t, p[i], g[i] - delta, s);
            let hi = rule.step(t, p[i], g[i] + delta, s);
            let got = [f64::from(after[i])]
                .into_iter()
                .chain((0..slots).map(|k| f64::from(s1[k][i])));
            let wants = [want.w, want.s[0], want.s[1]];
            let spread = [
                (lo.w - want.w).abs().max((hi.w - want.w).abs()),
                (lo.s[0] - want.s[0]).abs().max((hi.s[0] - want.s[0]).abs()),
                (lo.s[1] - want.s[1]).abs().max((hi.s[1] - want.s[1]).abs()),
            ];
            for (k, got) in got.enumerate() {
                let bound = OPTIMIZER.abs * want.scale[k]
                    + OPTIMIZER.rel * wants[k].abs()
                    + spread[k]
                    + UNDERFLOW;
                let err = (got - wants[k]).abs();
                let what = ["weight", "state slot 0", "state slot 1"][k];
                assert!(
                    err <= bound,
                    "{rule:?}, N = {n}, step {t}, parameter {i} {what}: got {got:e}, replay {:e}, \
                     |error| {err:e} > bound {bound:e} (gradient {:e} ± {delta:e})",
                    wants[k],
                    g[i]
                );
            }
        }
    }
}

#[test]
fn optimizers_match_their_documented_rules() {
    let cases: [(usize, u64); 2] = [(40, 3), (150, 4)];
    for (n, seed) in cases {
        check_optimizer(Sgd::new(0.1).unwrap(), Rule64::Sgd { lr: 0.1 }, n, seed);
        let m = Rule64::Momentum {
            lr: 0.05,
            mu: 0.9,
            nesterov: false,
        };
        check_optimizer(Momentum::new(0.05, 0.9).unwrap(), m, n, seed);
        let m = Rule64::Momentum {
            lr: 0.05,
            mu: 0.9,
            nesterov: true,
        };
        check_optimizer(Momentum::nesterov(0.05, 0.9).unwrap(), m, n, seed);
        let keras = Rule64::Adam {
            lr: 0.01,
            b1: 0.9,
            b2: 0.999,
            eps: 1e-7,
            wd: 0.0,
            pytorch: false,
        };
        check_optimizer(Adam::new(0.01).unwrap(), keras, n, seed);
        let torch = Rule64::Adam {
            lr: 0.01,
            b1: 0.85,
            b2: 0.995,
            eps: 1e-8,
            wd: 0.0,
            pytorch: true,
        };
        let opt = Adam::pytorch(0.01)
            .unwrap()
            .betas(0.85, 0.995)
            .unwrap()
            .epsilon(1e-8)
            .unwrap();
        check_optimizer(opt, torch, n, seed);
        let adamw = Rule64::Adam {
            lr: 0.01,
            b1: 0.9,
            b2: 0.999,
            eps: 1e-7,
            wd: 0.1,
            pytorch: false,
        };
        check_optimizer(Adam::adamw(0.01, 0.1).unwrap(), adamw, n, seed);
    }
}

// ---------------------------------------------------------------------------------------
// 4. Refused steps change nothing.
// ---------------------------------------------------------------------------------------

fn params_bits<L: Layer, H: Head<L::Out>>(net: &Network<L, H>) -> Vec<u32> {
    let mut p = vec![0.0f32; L::PARAMS];
    net.write_params(&mut p).expect("length");
    p.iter().map(|v| v.to_bits()).collect()
}

/// A step on `x`, `y` must fail with `want` and leave the weights and the state bit for bit
/// as they were.
#[track_caller]
fn assert_refused<L, H: Head<L::Out>, P: Optimizer + PartialEq, const I: usize>(
    net: &mut Network<L, H>,
    st: &mut OptimizerState<L, P>,
    ws: &mut NetWorkspace<L>,
    opt: &P,
    (x, y): (&[[f32; I]], &[H::T]),
    want: Error,
) where
    L: Layer<In = Dim<I>> + Clone + PartialEq,
{
    let (p0, s0, t0) = (params_bits(net), st.clone(), st.steps());
    let got = net.train_step(x, y, opt, st, ws);
    assert_eq!(got, Err(want), "{opt:?}");
    assert!(params_bits(net) == p0, "{opt:?}: {want:?} changed a weight");
    assert!(*st == s0, "{opt:?}: {want:?} changed the optimizer state");
    assert_eq!(st.steps(), t0, "{opt:?}: {want:?} counted a step");
}

type RefuseNet = chain![Dense<3, 8, Relu>, Dense<8, 3>];

fn refusals<P: Optimizer + PartialEq>(opt: P) {
    // Classification, 200 samples (two tiles): the bad sample sits in the second tile, after
    // the first tile's gradients were accumulated.
    let mut net = zero::<RefuseNet, SoftmaxCrossEntropy>();
    net.init_glorot(11);
    let x = input_rows::<3>(5, 200, 2.0);
    let y = <SoftmaxCrossEntropy as DrawTargets<Dim<3>>>::draw(6, 200);
    let mut st = OptimizerState::<RefuseNet, P>::new();
    let mut ws = Box::new(NetWorkspace::new());
    for _ in 0..2 {
        net.train_step(&x, &y, &opt, &mut st, &mut ws)
            .expect("valid step");
    }
    for (s, v) in [
        (150, f32::NAN),
        (3, f32::INFINITY),
        (199, f32::NEG_INFINITY),
    ] {
        let mut bad = x.clone();
        bad[s][1] = v;
        let e = Error::NonFinite {
            what: "input",
            index: Some(s),
        };
        assert_refused(&mut net, &mut st, &mut ws, &opt, (&bad, &y), e);
    }
    let mut bad = y.clone();
    bad[170] = 3;
    let e = Error::LabelOutOfRange {
        index: 170,
        label: 3,
        classes: 3,
    };
    assert_refused(&mut net, &mut st, &mut ws, &opt, (&x, &bad), e);
    net.train_step(&x, &y, &opt, &mut st, &mut ws)
        .expect("valid step after refusals");
    assert_eq!(st.steps(), 3);

    // Huge values, one layer (so that the logits stay finite and the loss is finite): an
    // input of 1e38 makes the gradient bound `N max|dz| max|x|` overflow; weights of 3e37
    // (above f32::MAX / 16) make `w + lr g` possibly overflow.
    let mut one = zero::<Dense<3, 3>, SoftmaxCrossEntropy>();
    one.init_glorot(12);
    let mut st = OptimizerState::<Dense<3, 3>, P>::new();
    let mut ws = Box::new(NetWorkspace::new());
    one.train_step(&x, &y, &opt, &mut st, &mut ws)
        .expect("valid step");
    let mut bad = x.clone();
    bad[140][0] = 1e38;
    assert_refused(
        &mut one,
        &mut st,
        &mut ws,
        &opt,
        (&bad, &y),
        Error::UpdateOverflow,
    );
    let mut saved = vec![0.0f32; 12];
    one.write_params(&mut saved).unwrap();
    one.read_params(&[3e37; 12]).unwrap();
    assert_refused(
        &mut one,
        &mut st,
        &mut ws,
        &opt,
        (&x, &y),
        Error::UpdateOverflow,
    );
    one.read_params(&saved).unwrap();
    one.train_step(&x, &y, &opt, &mut st, &mut ws)
        .expect("valid step after refusals");
    assert_eq!(st.steps(), 2);

    // Weights of 1e37 under mean squared error: the outputs are finite but their squares
    // overflow, so the loss is not finite (sample 0).
    let mut mse = zero::<Dense<3, 2>, MeanSquaredError>();
    mse.init_glorot(14);
    let xs = vec![[1.0f32, 0.5, -0.25]; 40];
    let ts = vec![[0.5f32, -0.5]; 40];
    let mut st = OptimizerState::<Dense<3, 2>, P>::new();
    let mut ws = Box::new(NetWorkspace::new());
    mse.train_step(&xs, &ts, &opt, &mut st, &mut ws)
        .expect("valid step");
    let mut saved = vec![0.0f32; 8];
    mse.write_params(&mut saved).unwrap();
    mse.read_params(&[1e37; 8]).unwrap();
    let e = Error::NonFinite {
        what: "loss",
        index: Some(0),
    };
    assert_refused(&mut mse, &mut st, &mut ws, &opt, (&xs, &ts), e);
    mse.read_params(&saved).unwrap();
    mse.train_step(&xs, &ts, &opt, &mut st, &mut ws)
        .expect("valid step after refusals");
    assert_eq!(st.steps(), 2);

    // Binary cross-entropy targets outside [0, 1] and not finite.
    let mut bce = zero::<Dense<3, 2>, BinaryCrossEntropy>();
    bce.init_glorot(13);
    let t = <BinaryCrossEntropy as DrawTargets<Dim<2>>>::draw(7, 200);
    let mut st = OptimizerState::<Dense<3, 2>, P>::new();
    let mut ws = Box::new(NetWorkspace::new());
    bce.train_step(&x, &t, &opt, &mut st, &mut ws)
        .expect("valid step");
    for (s, v) in [(130, 1.5f32), (0, -0.25), (199, 1.000_001)] {
        let mut bad = t.clone();
        bad[s][1] = v;
        let e = Error::TargetOutOfRange { index: s };
        assert_refused(&mut bce, &mut st, &mut ws, &opt, (&x, &bad), e);
    }
    let mut bad = t.clone();
    bad[77][0] = f32::NAN;
    let e = Error::NonFinite {
        what: "target",
        index: Some(77),
    };
    assert_refused(&mut bce, &mut st, &mut ws, &opt, (&x, &bad), e);
    bce.train_step(&x, &t, &opt, &mut st, &mut ws)
        .expect("valid step after refusals");
    assert_eq!(st.steps(), 2);
}

#[test]
fn refused_steps_change_nothing_sgd() {
    refusals(Sgd::new(0.1).unwrap());
}

#[test]
fn refused_steps_change_nothing_momentum() {
    refusals(Momentum::new(0.05, 0.9).unwrap());
}

#[test]
fn refused_steps_change_nothing_adam() {
    refusals(Adam::new(0.01).unwrap());
}

// ---------------------------------------------------------------------------------------
// 5. Padded lanes never reach a result.
// ---------------------------------------------------------------------------------------

/// `net` is set so that a zero input (a padded lane) overflows while the real sample `x`
/// is small: its loss, gradients and a training step on the single sample (one valid lane,
/// fifteen padded; and 17 copies: one valid lane in the second block) must be finite and
/// match the oracle's, whose logits for `x` are exactly the last biases (the ReLU's input is
/// exactly 0), so the scale of every quantity is 1.
fn check_padding<L, H: Head<L::Out>>(net: &Network<L, H>, x: [f32; 1], y: H::T)
where
    L: Layer<In = Dim<1>> + Clone,
    H::T: OracleTarget,
{
    let name = core::any::type_name::<L>();
    let oracle = NetOracle::new(net);
    let p = params64(net);
    for n in [1usize, 17] {
        let xs = vec![x; n];
        let ys = vec![y; n];
        let (x64, y64) = (inputs(&xs), targets(&ys));
        let (want_loss, want) = oracle.gradients(&p, &x64, &y64);
        let tol = net_tol(&oracle, n);
        let loss = net
            .loss(&xs, &ys)
            .expect("the padded lanes must not make loss fail");
        assert_close(
            loss.into(),
            want_loss,
            1.0,
            tol,
            &format_args!("{name} loss, N = {n}"),
        );
        let mut ws = Box::new(NetWorkspace::<L>::ZERO);
        let mut g = Box::new(NetGradients::<L>::ZERO);
        let gl = net.gradients(&xs, &ys, &mut g, &mut ws).expect("gradients");
        assert_close(
            gl.into(),
            want_loss,
            1.0,
            tol,
            &format_args!("{name} gradients' loss"),
        );
        let mut flat = vec![0.0f32; L::PARAMS];
        g.write_flat(&mut flat).unwrap();
        for (i, &v) in flat.iter().enumerate() {
            assert_close(
                v.into(),
                want[i],
                1.0,
                tol,
                &format_args!("{name} gradient {i}, N = {n}"),
            );
        }
        for opt_case in 0..2 {
            let mut stepped = net.clone();
            let l = if opt_case == 0 {
                let mut st = OptimizerState::<L, Sgd>::new();
                stepped.train_step(&xs, &ys, &Sgd::new(0.1).unwrap(), &mut st, &mut ws)
            } else {
                let mut st = OptimizerState::<L, Adam>::new();
                stepped.train_step(&xs, &ys, &Adam::new(0.01).unwrap(), &mut st, &mut ws)
            }
            .expect("train_step on one real sample");
            assert_eq!(
                l.to_bits(),
                gl.to_bits(),
                "{name}: train_step loss, N = {n}"
            );
            stepped
                .check_weights()
                .expect("finite weights after the step");
        }
    }
    // Sixteen copies fill a block (no padding): if that works, one copy must too.
    assert!(net.loss(&[x; 16], &[y; 16]).is_ok());
}

#[test]
fn padded_lanes_never_reach_a_result() {
    // 1-1-2: a padded lane has a = relu(b1) = 1e30, then logits 1e30 * 1e30 = inf.
    let mut net = zero::<chain![Dense<1, 1, Relu>, Dense<1, 2>], SoftmaxCrossEntropy>();
    net.read_params(&[1e30, 1e30, 1e30, -1e30, 0.25, -0.5])
        .unwrap();
    check_padding(&net, [-1.0], 1);
    // 1-1-1-2: the padded lane's activations are themselves infinite (0 * inf = NaN if a
    // padded lane's dz were multiplied rather than selected), for every head.
    let p = [1e30, 1e30, 1e30, 0.0, 1e30, -1e30, 0.25, -0.5];
    let mut net =
        zero::<chain![Dense<1, 1, Relu>, Dense<1, 1, Relu>, Dense<1, 2>], SoftmaxCrossEntropy>();
    net.read_params(&p).unwrap();
    check_padding(&net, [-1.0], 0);
    let mut net =
        zero::<chain![Dense<1, 1, Relu>, Dense<1, 1, Relu>, Dense<1, 2>], MeanSquaredError>();
    net.read_params(&p).unwrap();
    check_padding(&net, [-1.0], [0.5, -1.0]);
    let mut net =
        zero::<chain![Dense<1, 1, Relu>, Dense<1, 1, Relu>, Dense<1, 2>], BinaryCrossEntropy>();
    net.read_params(&p).unwrap();
    check_padding(&net, [-1.0], [0.5, 1.0]);
}

// ---------------------------------------------------------------------------------------
// 6. Network is Mlp.
// ---------------------------------------------------------------------------------------

/// `Network<[4 -> 32 relu -> 3], softmax>` trained with SGD must be `Mlp<4, 32, 3>` bit for
/// bit: the same initial weights from the same seed, the same losses and weights after
/// every one of 50 steps. Reports the first step and parameter that differ.
fn network_is_mlp(x: &[[f32; 4]], y: &[u32], what: &str) {
    type L = chain![Dense<4, 32, Relu>, Dense<32, 3>];
    let mut net = Network::<L, SoftmaxCrossEntropy>::new(7);
    let mut mlp = Mlp::<4, 32, 3>::new(7);
    let sgd = Sgd::new(0.05).unwrap();
    let mut st = OptimizerState::<L, Sgd>::new();
    let mut nws = Box::new(NetWorkspace::<L>::new());
    let mut mws = Box::new(Workspace::<4, 32, 3>::new());
    let (mut a, mut b) = (vec![0.0f32; L::PARAMS], vec![0.0f32; L::PARAMS]);
    for step in 0..=50 {
        net.write_params(&mut a).unwrap();
        mlp.write_params(&mut b).unwrap();
        if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
            panic!(
                "{what}: after {step} steps parameter {i} differs: Network {:e}, Mlp {:e}",
                a[i], b[i]
            );
        }
        if step == 50 {
            break;
        }
        let ln = net.train_step(x, y, &sgd, &mut st, &mut nws).unwrap();
        let lm = mlp.train_step(x, y, &sgd, &mut mws).unwrap();
        assert_eq!(
            ln.to_bits(),
            lm.to_bits(),
            "{what}: step {step} loss: Network {ln:e}, Mlp {lm:e}"
        );
    }
}

#[test]
fn network_is_mlp_on_iris() {
    let (x, y, _, _) = data::iris_split().expect("data/ is readable");
    network_is_mlp(&x, &y, "Iris training rows");
}

#[test]
fn network_is_mlp_on_a_multi_tile_batch() {
    let x = input_rows::<4>(21, 300, 3.0);
    let y = <SoftmaxCrossEntropy as DrawTargets<Dim<3>>>::draw(22, 300);
    network_is_mlp(&x, &y, "300 random samples");
}
