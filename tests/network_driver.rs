//! The training driver's documented contracts on batches of several tiles (more than
//! `TILE_SAMPLES` samples, the last tile partial), on networks small enough to build in
//! seconds (for the mutation run, .cargo/mutants.toml): the gradients of a batch are the
//! sample-weighted mean of the gradients of its parts, the loss `train_step` returns is
//! `Network::loss` bit for bit, an SGD step moves every weight by `-lr` times its gradient, a
//! packed batch and a step on given output gradients train as the rows they hold, and errors
//! name the first bad sample, weight, gradient or label.

use fusedprop::{
    Chain, Dense, Error, Layer, Linear, MeanSquaredError, Mlp, NetGradients, NetWorkspace, Network,
    OptimizerState, PackedBatch, Relu, Sgd, SoftmaxCrossEntropy, TILE_SAMPLES, Tanh, Workspace,
    chain,
};

/// Three inputs: the tile's inputs are loaded in lanes only.
type Narrow = chain![Dense<3, 5, Tanh>, Dense<5, 3>];
/// Seventeen inputs: the first layer's weight gradients read the tile's rows.
type Wide = chain![Dense<17, 4, Relu>, Dense<4, 3>];
/// Sixteen inputs, the fewest for which the row kernel is used.
type Sixteen = chain![Dense<16, 3>];
/// Forty inputs: a packed batch's blocks go back to rows sixteen features at a time, twice.
type Forty = chain![Dense<40, 3>];

/// Three tiles of 128 samples, the last of 44 (two full blocks and one of 12); nineteen
/// tiles of 16 with the narrow lane.
const N: usize = 300;
const _: () = assert!(N > 2 * TILE_SAMPLES && !N.is_multiple_of(TILE_SAMPLES));

fn data<const I: usize>(n: usize, seed: u32) -> (Vec<[f32; I]>, Vec<u32>) {
    let x = (0..n)
        .map(|s| {
            core::array::from_fn(|i| {
                let k = (s * 31 + i * 7) as f32 + seed as f32;
                (k * 0.37).sin() * 1.5
            })
        })
        .collect();
    let y = (0..n)
        .map(|s| ((s * 5 + seed as usize) % 3) as u32)
        .collect();
    (x, y)
}

fn grads<L, const I: usize>(
    net: &Network<L, SoftmaxCrossEntropy>,
    x: &[[f32; I]],
    y: &[u32],
) -> (f32, Vec<f32>)
where
    L: Layer<In = fusedprop::Dim<I>, Out = fusedprop::Dim<3>>,
{
    let mut g = Box::new(NetGradients::<L>::ZERO);
    let mut ws = Box::new(NetWorkspace::<L>::ZERO);
    let loss = net.gradients(x, y, &mut g, &mut ws).unwrap();
    let mut flat = vec![0.0; L::PARAMS];
    g.write_flat(&mut flat).unwrap();
    (loss, flat)
}

fn params<L: Layer, H: fusedprop::Head<L::Out>>(net: &Network<L, H>) -> Vec<f32> {
    let mut p = vec![0.0; L::PARAMS];
    net.write_params(&mut p).unwrap();
    p
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 2e-5 * scale
}

/// Gradients and loss of 300 samples against the mean of those of three parts (100, 128 and
/// 72 samples, split elsewhere than the tiles), weighted by their sizes; and the loss is
/// `Network::loss` bit for bit.
fn check_gradients<L, const I: usize>(seed: u64)
where
    L: Layer<In = fusedprop::Dim<I>, Out = fusedprop::Dim<3>> + fusedprop::optim::ConstZero,
{
    let net = Network::<L, SoftmaxCrossEntropy>::new(seed);
    let (x, y) = data::<I>(N, seed as u32);
    let (loss, all) = grads(&net, &x, &y);
    assert_eq!(loss.to_bits(), net.loss(&x, &y).unwrap().to_bits());
    let mut want = vec![0.0f64; L::PARAMS];
    let mut want_loss = 0.0f64;
    for r in [0..100, 100..228, 228..N] {
        let w = r.len() as f64 / N as f64;
        let (l, g) = grads(&net, &x[r.clone()], &y[r]);
        want_loss += w * f64::from(l);
        for (a, b) in want.iter_mut().zip(g) {
            *a += w * f64::from(b);
        }
    }
    assert!(
        close(f64::from(loss), want_loss, want_loss),
        "loss {loss} against {want_loss}"
    );
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3);
    for (i, (&g, &w)) in all.iter().zip(&want).enumerate() {
        assert!(
            close(f64::from(g), w, scale),
            "gradient {i}: {g} against {w}"
        );
    }
}

#[test]
fn gradients_of_several_tiles_are_the_weighted_mean_of_their_parts() {
    check_gradients::<Narrow, 3>(3);
    check_gradients::<Wide, 17>(4);
}

/// SGD: `w - lr g` for every weight, the loss before the step; a packed batch of the same
/// rows and labels trains bit for bit as `train_step`.
fn check_step<L, const I: usize>(seed: u64)
where
    L: Layer<In = fusedprop::Dim<I>, Out = fusedprop::Dim<3>> + fusedprop::optim::ConstZero,
{
    let mut net = Network::<L, SoftmaxCrossEntropy>::new(seed);
    let mut packed = net.clone();
    let (x, y) = data::<I>(N, seed as u32 + 1);
    let batch = Box::new(PackedBatch::<I, 19>::from_rows(&x, &y).unwrap());
    let sgd = Sgd::new(0.5).unwrap();
    let (mut s1, mut s2) = (OptimizerState::new(), OptimizerState::new());
    let mut ws = Box::new(NetWorkspace::<L>::ZERO);
    for step in 0..2 {
        let before = params(&net);
        let (loss, g) = grads(&net, &x, &y);
        let a = net.train_step(&x, &y, &sgd, &mut s1, &mut ws).unwrap();
        assert_eq!(a.to_bits(), loss.to_bits(), "step {step}");
        let after = params(&net);
        for i in 0..L::PARAMS {
            let want = f64::from(before[i]) - 0.5 * f64::from(g[i]);
            assert!(
                close(f64::from(after[i]), want, 1.0),
                "step {step}, weight {i}: {} against {want}",
                after[i]
            );
        }
        let b = packed
            .train_step_packed(&batch, &sgd, &mut s2, &mut ws)
            .unwrap();
        assert_eq!(a.to_bits(), b.to_bits(), "step {step}");
        assert!(net == packed, "step {step}");
    }
}

#[test]
fn a_step_of_several_tiles_is_sgd_on_the_batch_gradients_packed_or_not() {
    check_step::<Narrow, 3>(5);
    check_step::<Wide, 17>(6);
    check_step::<Sixteen, 16>(7);
    check_step::<Forty, 40>(8);
}

/// `train_step_with_output_grad` given softmax cross-entropy's own `dL/dz` (computed in `f64`
/// from `Network::outputs`) takes the step `train_step` takes, to rounding.
#[test]
fn a_step_on_given_output_gradients_is_the_step_on_their_loss() {
    let mut net = Network::<Narrow, SoftmaxCrossEntropy>::new(8);
    let mut given = net.clone();
    let (x, y) = data::<3>(N, 9);
    let mut z = vec![[0.0f32; 3]; N];
    net.outputs(&x, &mut z).unwrap();
    let dy: Vec<[f32; 3]> = z
        .iter()
        .zip(&y)
        .map(|(z, &y)| {
            let m = z
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let e: Vec<f64> = z.iter().map(|&v| (f64::from(v) - m).exp()).collect();
            let s: f64 = e.iter().sum();
            core::array::from_fn(|j| {
                let t = if j == y as usize { 1.0 } else { 0.0 };
                ((e[j] / s - t) / N as f64) as f32
            })
        })
        .collect();
    let sgd = Sgd::new(0.5).unwrap();
    let (mut s1, mut s2) = (OptimizerState::new(), OptimizerState::new());
    let mut ws = Box::new(NetWorkspace::<Narrow>::ZERO);
    net.train_step(&x, &y, &sgd, &mut s1, &mut ws).unwrap();
    given
        .train_step_with_output_grad(&x, &dy, &sgd, &mut s2, &mut ws)
        .unwrap();
    let (a, b) = (params(&net), params(&given));
    assert!(a != params(&Network::<Narrow, SoftmaxCrossEntropy>::new(8)));
    for (i, (&p, &q)) in a.iter().zip(&b).enumerate() {
        assert!(
            close(f64::from(p), f64::from(q), 1.0),
            "weight {i}: {p} against {q}"
        );
    }
    assert_eq!(s1.steps(), 1);
    assert_eq!(s2.steps(), 1);
}

/// A non-finite input is named by its sample, in any tile, block and lane, by `gradients`,
/// `train_step` and `train_step_with_output_grad`; the step changes nothing.
#[test]
fn a_non_finite_input_is_named_by_its_sample() {
    let mut net = Network::<Narrow, SoftmaxCrossEntropy>::new(2);
    let (x, y) = data::<3>(N, 1);
    let dy = vec![[0.01f32; 3]; N];
    let before = params(&net);
    let mut g = Box::new(NetGradients::<Narrow>::ZERO);
    let mut ws = Box::new(NetWorkspace::<Narrow>::ZERO);
    let sgd = Sgd::new(0.5).unwrap();
    let mut state = OptimizerState::new();
    for (at, v) in [
        (0, f32::NAN),
        (15, f32::INFINITY),
        (127, f32::NAN),
        (128, f32::NEG_INFINITY),
        (145, f32::NAN),
        (299, f32::INFINITY),
    ] {
        let mut bad = x.clone();
        bad[at][at % 3] = v;
        // Only the first is named: another in the same block, and one in the last tile.
        bad[(at + 1).min(N - 1)][0] = f32::NAN;
        bad[N - 1][2] = f32::NAN;
        let want = Err(Error::NonFinite {
            what: "input",
            index: Some(at),
        });
        assert_eq!(net.gradients(&bad, &y, &mut g, &mut ws).map(|_| ()), want);
        assert_eq!(
            net.train_step(&bad, &y, &sgd, &mut state, &mut ws)
                .map(|_| ()),
            want
        );
        assert_eq!(
            net.train_step_with_output_grad(&bad, &dy, &sgd, &mut state, &mut ws),
            want
        );
        assert_eq!(net.loss(&bad, &y).map(|_| ()), want);
    }
    assert_eq!(params(&net), before);
    assert_eq!(state.steps(), 0);
}

/// A packed batch's labels are checked against the network's classes before any work; the
/// first label out of range is named with its sample, as the caller passed it (even from
/// 2^24 on, where the batch holds it rounded); an empty batch is refused.
#[test]
fn a_packed_batch_names_its_first_label_out_of_range() {
    let mut net = Network::<Narrow, SoftmaxCrossEntropy>::new(2);
    let before = params(&net);
    let (x, mut y) = data::<3>(N, 1);
    let sgd = Sgd::new(0.5).unwrap();
    let mut state = OptimizerState::new();
    let mut ws = Box::new(NetWorkspace::<Narrow>::ZERO);
    y[290] = 3;
    y[141] = 16_777_217;
    y[200] = 7;
    let batch = Box::new(PackedBatch::<3, 19>::from_rows(&x, &y).unwrap());
    assert_eq!(
        net.train_step_packed(&batch, &sgd, &mut state, &mut ws),
        Err(Error::LabelOutOfRange {
            index: 141,
            label: 16_777_217,
            classes: 3
        })
    );
    y[141] = 0;
    let batch = Box::new(PackedBatch::<3, 19>::from_rows(&x, &y).unwrap());
    assert_eq!(
        net.train_step_packed(&batch, &sgd, &mut state, &mut ws),
        Err(Error::LabelOutOfRange {
            index: 200,
            label: 7,
            classes: 3
        })
    );
    // A label of 2^24 + 1 later in the batch does not stand for an earlier one.
    y[200] = 16_777_217;
    y[100] = 7;
    let batch = Box::new(PackedBatch::<3, 19>::from_rows(&x, &y).unwrap());
    assert_eq!(
        net.train_step_packed(&batch, &sgd, &mut state, &mut ws),
        Err(Error::LabelOutOfRange {
            index: 100,
            label: 7,
            classes: 3
        })
    );
    let empty = Box::new(PackedBatch::<3, 19>::ZERO);
    assert_eq!(
        net.train_step_packed(&empty, &sgd, &mut state, &mut ws),
        Err(Error::EmptyBatch)
    );
    assert_eq!(params(&net), before);
    assert_eq!(state.steps(), 0);
}

/// One input, a hidden layer of two and one output, mean squared error.
type Tiny = Chain<Dense<1, 2, Linear>, Dense<2, 1, Linear>>;

fn tiny(
    w1: [[f32; 1]; 2],
    b1: [f32; 2],
    w2: [[f32; 2]; 1],
    b2: [f32; 1],
) -> Network<Tiny, MeanSquaredError> {
    Network::from_layers(
        Chain(
            Dense::from_parts(w1, b1, Linear),
            Dense::from_parts(w2, b2, Linear),
        ),
        MeanSquaredError,
    )
}

/// `check_weights` names the first weight that is not finite, in `write_params` order
/// (`w1`, `b1`, `w2`, `b2`).
#[test]
fn check_weights_names_the_first_weight_that_is_not_finite() {
    let ok = tiny([[1.0], [2.0]], [3.0, 4.0], [[5.0, 6.0]], [7.0]);
    assert_eq!(ok.check_weights(), Ok(()));
    assert_eq!(params(&ok), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    for at in 0..7 {
        let mut p = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        p[at] = f32::NAN;
        if at < 6 {
            p[6] = f32::INFINITY;
        }
        let net = tiny([[p[0]], [p[1]]], [p[2], p[3]], [[p[4], p[5]]], [p[6]]);
        assert_eq!(
            net.check_weights(),
            Err(Error::NonFinite {
                what: "weight",
                index: Some(at)
            }),
            "weight {at}"
        );
    }
}

/// A finite loss does not bound the gradients: `dL/dw2 = 2 (z - t) a1` overflows for a hidden
/// output of 1e20 and a target of 1e19 (loss 1e38). `gradients` names the first gradient
/// that is not finite, in `write_params` order.
#[test]
fn gradients_name_the_first_gradient_that_overflows() {
    let mut g = Box::new(NetGradients::<Tiny>::ZERO);
    let mut ws = Box::new(NetWorkspace::<Tiny>::ZERO);
    let x = vec![[1.0f32]; 3];
    let t = vec![[1e19f32]; 3];
    // a1 = (1, 1e20): only the gradient of w2[0][1] (index 5) overflows.
    let net = tiny([[1.0], [1e20]], [0.0, 0.0], [[0.0, 0.0]], [0.0]);
    assert!(net.loss(&x, &t).unwrap().is_finite());
    assert_eq!(
        net.gradients(&x, &t, &mut g, &mut ws),
        Err(Error::NonFinite {
            what: "gradient",
            index: Some(5)
        })
    );
    // a1 = (1e20, 1): w2[0][0] (index 4).
    let net = tiny([[1e20], [1.0]], [0.0, 0.0], [[0.0, 0.0]], [0.0]);
    assert_eq!(
        net.gradients(&x, &t, &mut g, &mut ws),
        Err(Error::NonFinite {
            what: "gradient",
            index: Some(4)
        })
    );
    // Smaller: every gradient finite.
    let net = tiny([[1e10], [1.0]], [0.0, 0.0], [[0.0, 0.0]], [0.0]);
    assert!(net.gradients(&x, &t, &mut g, &mut ws).is_ok());
}

/// `TILE_SAMPLES` is eight blocks of sixteen samples on targets with SIMD, one block without.
#[test]
fn a_tile_is_eight_blocks_of_sixteen_with_simd() {
    let want = if fusedprop::SIMD_LEVEL == "scalar" {
        16
    } else {
        128
    };
    assert_eq!(TILE_SAMPLES, want);
}

/// A sample whose loss is not finite is named (here in the second tile); losses each finite
/// whose sum overflows `f32` are refused without an index; by `loss`, `gradients` and
/// `train_step` alike, and the step changes nothing.
#[test]
fn a_loss_that_is_not_finite_is_refused() {
    let mut net = tiny([[1.0], [0.5]], [0.0, 0.0], [[0.25, 0.5]], [0.0]);
    let before = params(&net);
    let x = vec![[1.0f32]; N];
    let mut g = Box::new(NetGradients::<Tiny>::ZERO);
    let mut ws = Box::new(NetWorkspace::<Tiny>::ZERO);
    let sgd = Sgd::new(0.1).unwrap();
    let mut state = OptimizerState::new();
    let mut t = vec![[0.5f32]; N];
    assert!(net.loss(&x, &t).unwrap().is_finite());
    // (0.5 - 2e19)^2 = 4e38 overflows; 1.7e19 squared does not.
    t[140] = [2e19];
    t[141] = [-2e19];
    t[20] = [1.7e19];
    let want = Err(Error::NonFinite {
        what: "loss",
        index: Some(140),
    });
    assert_eq!(net.loss(&x, &t).map(|_| ()), want);
    assert_eq!(net.gradients(&x, &t, &mut g, &mut ws).map(|_| ()), want);
    assert_eq!(
        net.train_step(&x, &t, &sgd, &mut state, &mut ws)
            .map(|_| ()),
        want
    );
    // The same in the second block of a tile (where AVX-512 builds take two blocks' losses
    // at once) and in a tile's last, partial block.
    for bad in [150, N - 2] {
        let mut t = vec![[0.5f32]; N];
        t[bad] = [2e19];
        let want = Err(Error::NonFinite {
            what: "loss",
            index: Some(bad),
        });
        assert_eq!(net.loss(&x, &t).map(|_| ()), want, "{bad}");
        assert_eq!(
            net.train_step(&x, &t, &sgd, &mut state, &mut ws)
                .map(|_| ()),
            want,
            "{bad}"
        );
    }
    // Two samples of 2.9e38 each: the sum overflows.
    let mut t = vec![[0.5f32]; N];
    t[3] = [1.7e19];
    t[200] = [-1.7e19];
    let want = Err(Error::NonFinite {
        what: "loss",
        index: None,
    });
    assert_eq!(net.loss(&x, &t).map(|_| ()), want);
    assert_eq!(net.gradients(&x, &t, &mut g, &mut ws).map(|_| ()), want);
    assert_eq!(
        net.train_step(&x, &t, &sgd, &mut state, &mut ws)
            .map(|_| ()),
        want
    );
    assert_eq!(params(&net), before);
    assert_eq!(state.steps(), 0);
}

/// The workspace is scratch memory: a step after steps of another size (several tiles, then
/// one) is bit for bit the same step in a fresh workspace.
#[test]
fn a_step_does_not_depend_on_what_the_workspace_held() {
    let (x, y) = data::<3>(N, 4);
    let mut a = Network::<Narrow, SoftmaxCrossEntropy>::new(1);
    let mut b = a.clone();
    let sgd = Sgd::new(0.5).unwrap();
    let (mut sa, mut sb) = (OptimizerState::new(), OptimizerState::new());
    let mut ws = Box::new(NetWorkspace::<Narrow>::ZERO);
    let la = a.train_step(&x, &y, &sgd, &mut sa, &mut ws).unwrap();
    let lb = b
        .train_step(&x, &y, &sgd, &mut sb, &mut Box::new(NetWorkspace::ZERO))
        .unwrap();
    assert_eq!(la.to_bits(), lb.to_bits());
    for n in [50, 129, 16, 300] {
        let la = a
            .train_step(&x[..n], &y[..n], &sgd, &mut sa, &mut ws)
            .unwrap();
        let lb = b
            .train_step(
                &x[..n],
                &y[..n],
                &sgd,
                &mut sb,
                &mut Box::new(NetWorkspace::ZERO),
            )
            .unwrap();
        assert_eq!(la.to_bits(), lb.to_bits(), "N = {n}");
        assert!(a == b, "N = {n}");
    }
    // And the gradients.
    let mut g = Box::new(NetGradients::<Narrow>::ZERO);
    let mut h = Box::new(NetGradients::<Narrow>::ZERO);
    a.gradients(&x, &y, &mut g, &mut ws).unwrap();
    a.gradients(&x[..50], &y[..50], &mut g, &mut ws).unwrap();
    a.gradients(
        &x[..50],
        &y[..50],
        &mut h,
        &mut Box::new(NetWorkspace::ZERO),
    )
    .unwrap();
    let (mut p, mut q) = (vec![0.0; Narrow::PARAMS], vec![0.0; Narrow::PARAMS]);
    g.write_flat(&mut p).unwrap();
    h.write_flat(&mut q).unwrap();
    assert_eq!(p, q);
}

/// `Mlp::gradients` (the network's gradients in the workspace) on several tiles: the
/// weighted mean of its parts' gradients, whatever the workspace held before.
#[test]
fn mlp_gradients_of_several_tiles_are_the_weighted_mean_of_their_parts() {
    let m = Mlp::<3, 4, 3>::new(2);
    let (x, y) = data::<3>(N, 5);
    let flat = |g: &fusedprop::Gradients<3, 4, 3>| -> Vec<f32> {
        let mut v: Vec<f32> = g.hidden.w.iter().flatten().copied().collect();
        v.extend(g.hidden.b);
        v.extend(g.output.w.iter().flatten());
        v.extend(g.output.b);
        v
    };
    let mut ws = Box::new(Workspace::<3, 4, 3>::new());
    let mut g = Box::new(fusedprop::Gradients::<3, 4, 3>::ZERO);
    let mut want = vec![0.0f64; 31];
    for r in [0..100, 100..228, 228..N] {
        let w = r.len() as f64 / N as f64;
        m.gradients(&x[r.clone()], &y[r], &mut g, &mut ws).unwrap();
        for (a, b) in want.iter_mut().zip(flat(&g)) {
            *a += w * f64::from(b);
        }
    }
    // Twice: the second time the workspace holds the first call's sums.
    for _ in 0..2 {
        m.gradients(&x, &y, &mut g, &mut ws).unwrap();
        let got = flat(&g);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                close(f64::from(g), w, scale),
                "gradient {i}: {g} against {w}"
            );
        }
    }
    // One tile after several.
    m.gradients(&x[..40], &y[..40], &mut g, &mut ws).unwrap();
    let a = flat(&g);
    m.gradients(&x[..40], &y[..40], &mut g, &mut Box::new(Workspace::new()))
        .unwrap();
    assert_eq!(a, flat(&g));
}

/// An update that would overflow in a hidden layer only (its `dL/dW = W2 d x`, 4e36 times an
/// input of 1e20) is refused, whatever the optimizer: the closed-form bound refuses and the
/// measured `dL/dz` of every layer confirm it. Nothing is written.
#[test]
fn an_update_that_overflows_below_the_last_layer_is_refused() {
    use fusedprop::{Adam, Momentum};
    let mut net = tiny([[1e-20], [1e-20]], [0.0, 0.0], [[1e18, 1e18]], [0.0]);
    let before = params(&net);
    let x = vec![[1e20f32]; 3];
    let t = vec![[0.0f32]; 3];
    assert!(net.loss(&x, &t).unwrap().is_finite());
    let mut ws = Box::new(NetWorkspace::<Tiny>::ZERO);
    let mut g = Box::new(NetGradients::<Tiny>::ZERO);
    assert!(matches!(
        net.gradients(&x, &t, &mut g, &mut ws),
        Err(Error::NonFinite {
            what: "gradient",
            ..
        })
    ));
    let mut state = OptimizerState::new();
    let e = net.train_step(&x, &t, &Sgd::new(0.01).unwrap(), &mut state, &mut ws);
    assert!(e.is_err(), "{e:?}");
    let mut state = OptimizerState::new();
    let opt = Momentum::new(0.01, 0.9).unwrap();
    assert!(net.train_step(&x, &t, &opt, &mut state, &mut ws).is_err());
    let mut state = OptimizerState::new();
    let opt = Adam::new(0.01).unwrap();
    let e = net.train_step(&x, &t, &opt, &mut state, &mut ws);
    assert!(e.is_err(), "{e:?}");
    assert_eq!(params(&net), before);
    assert_eq!(state.steps(), 0);
}
