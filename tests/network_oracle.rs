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
        assert_close(got.into(), want[i], sc.grads[i], tol, &what);
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
}
