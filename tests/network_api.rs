//! `Network`'s own API (src/network.rs) against independent arithmetic, on one small
//! three-layer network (3-4-5-2, quick to build, for the mutation run of .cargo/mutants.toml):
//! the flat parameter layout and Keras's and PyTorch's, the refusals (wrong lengths,
//! non-finite values) with the index they name and nothing written, the optimizer state's
//! equality, clone and step count, the FLOP formula, the Keras-style summary, and the results
//! of a network whose weights, biases and inputs are small dyadic numbers, so that every
//! forward value, loss and gradient is exact in `f32` and equal to the `f64` oracle bit for
//! bit whatever the lane width or the order of the sums.

mod support;

use core::ops::ControlFlow;

use fusedprop::{
    Chain, Dense, Error, FitConfig, FitData, FitWorkspace, Linear, MeanSquaredError, Momentum,
    NetGradients, NetWorkspace, Network, OptimizerState, PackedBatch, Relu, Sgd,
    SoftmaxCrossEntropy, TILE_SAMPLES, chain,
};
use support::net::{NetOracle, inputs, params64, targets};

/// Three layers, none square: a transposition or a layer index mistaken shows.
type E = chain![Dense<3, 4, Relu>, Dense<4, 5, Relu>, Dense<5, 2>];
type Clf = Network<E, SoftmaxCrossEntropy>;
type Reg = Network<E, MeanSquaredError>;

/// `3 * 4 + 4`, `4 * 5 + 5`, `5 * 2 + 2`.
const PARAMS: usize = 16 + 25 + 12;
/// Each layer's (inputs, outputs).
const SHAPES: [(usize, usize); 3] = [(3, 4), (4, 5), (5, 2)];

/// Weights in {-1, 0, 1}; biases 1/2 in the first layer and 1/4 in the second, so that no
/// pre-activation of a ReLU is ever 0 (inputs are integers: the first layer's `z` is an
/// integer plus 1/2, the second's a multiple of 1/2 plus 1/4), and 1/4 and -3/4 in the last.
fn exact_params() -> Vec<f32> {
    let mut p = Vec::with_capacity(PARAMS);
    let biases: [&[f32]; 3] = [&[0.5; 4], &[0.25; 5], &[0.25, -0.75]];
    for (l, &(i, o)) in SHAPES.iter().enumerate() {
        for j in 0..o {
            for k in 0..i {
                p.push(((j * 7 + k * 3 + l * 5 + j * k + 2) % 3) as f32 - 1.0);
            }
        }
        p.extend_from_slice(biases[l]);
    }
    assert_eq!(p.len(), PARAMS);
    p
}

/// Integer inputs in [-2, 2].
fn exact_x(n: usize) -> Vec<[f32; 3]> {
    (0..n)
        .map(|s| {
            core::array::from_fn(|i| (((s as u64 * 2_654_435_761) >> (i * 5 + 3)) % 5) as f32 - 2.0)
        })
        .collect()
}

fn net_from<H: fusedprop::Head<fusedprop::Dim<2>> + fusedprop::optim::ConstZero>(
    p: &[f32],
) -> Network<E, H> {
    let mut net = Network::<E, H>::ZERO;
    net.read_params(p).unwrap();
    net
}

fn params<H: fusedprop::Head<fusedprop::Dim<2>>>(net: &Network<E, H>) -> Vec<f32> {
    let mut p = vec![f32::NAN; PARAMS];
    net.write_params(&mut p).unwrap();
    p
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

/// The forward pass in `f64`, written here from the flat layout (`[out][in]` then biases).
fn forward64(p: &[f32], x: &[f32; 3]) -> Vec<f64> {
    let mut a: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let mut at = 0;
    for (l, &(i, o)) in SHAPES.iter().enumerate() {
        let z: Vec<f64> = (0..o)
            .map(|j| {
                f64::from(p[at + i * o + j])
                    + (0..i)
                        .map(|k| f64::from(p[at + j * i + k]) * a[k])
                        .sum::<f64>()
            })
            .collect();
        at += i * o + o;
        a = if l + 1 < SHAPES.len() {
            z.iter().map(|&v| v.max(0.0)).collect()
        } else {
            z
        };
    }
    a
}

/// The first class of largest logit.
fn argmax(z: &[f64]) -> u32 {
    let mut best = 0;
    for (c, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = c;
        }
    }
    best as u32
}

/// Labels: the predicted class for two samples in three, the other class for the third.
fn labels(x: &[[f32; 3]], p: &[f32]) -> Vec<u32> {
    x.iter()
        .enumerate()
        .map(|(s, r)| {
            let c = argmax(&forward64(p, r));
            if s % 3 == 2 { 1 - c } else { c }
        })
        .collect()
}

fn mse_targets(n: usize) -> Vec<[f32; 2]> {
    (0..n)
        .map(|s| [(s % 7) as f32 - 3.0, (s % 4) as f32])
        .collect()
}

#[test]
fn params_round_trip_in_the_documented_layout() {
    let p = exact_params();
    let net: Clf = net_from(&p);
    assert_eq!(bits(&params(&net)), bits(&p));
    // The layout: `[out][in]` row-major then the biases, layer by layer, as `from_parts`
    // takes them.
    let w1: [[f32; 3]; 4] = core::array::from_fn(|j| core::array::from_fn(|k| p[j * 3 + k]));
    let b1: [f32; 4] = core::array::from_fn(|j| p[12 + j]);
    let w2: [[f32; 4]; 5] = core::array::from_fn(|j| core::array::from_fn(|k| p[16 + j * 4 + k]));
    let b2: [f32; 5] = core::array::from_fn(|j| p[36 + j]);
    let w3: [[f32; 5]; 2] = core::array::from_fn(|j| core::array::from_fn(|k| p[41 + j * 5 + k]));
    let b3: [f32; 2] = core::array::from_fn(|j| p[51 + j]);
    let built: Clf = Network::from_layers(
        Chain(
            Dense::from_parts(w1, b1, Relu),
            Chain(
                Dense::from_parts(w2, b2, Relu),
                Dense::from_parts(w3, b3, Linear),
            ),
        ),
        SoftmaxCrossEntropy,
    );
    assert!(built == net);
    assert_eq!(bits(&params(&built)), bits(&p));
    let again: Clf = Network::from_layers(net.layers().clone(), SoftmaxCrossEntropy);
    assert!(again == net);
    assert_eq!(Clf::PARAMS, PARAMS);
}

#[test]
fn wrong_lengths_are_refused_and_nothing_is_written() {
    let p = exact_params();
    let mut net: Clf = net_from(&p);
    for len in [0, PARAMS - 1, PARAMS + 1] {
        let mut out = vec![7.0f32; len];
        assert_eq!(
            net.write_params(&mut out),
            Err(Error::LengthMismatch {
                what: "parameters",
                expected: PARAMS,
                found: len
            })
        );
        assert!(out.iter().all(|&v| v == 7.0));
        let mut g = vec![7.0f32; len];
        assert_eq!(
            NetGradients::<E>::ZERO.write_flat(&mut g),
            Err(Error::LengthMismatch {
                what: "parameters",
                expected: PARAMS,
                found: len
            })
        );
        assert!(g.iter().all(|&v| v == 7.0));
        assert_eq!(
            net.read_params(&vec![1.0; len]),
            Err(Error::LengthMismatch {
                what: "parameters",
                expected: PARAMS,
                found: len
            })
        );
    }
    assert_eq!(bits(&params(&net)), bits(&p));
    // A non-finite value: its index, and the network unchanged.
    for (i, bad) in [
        (0, f32::NAN),
        (20, f32::INFINITY),
        (PARAMS - 1, f32::NEG_INFINITY),
    ] {
        let mut q = vec![1.0; PARAMS];
        q[i] = bad;
        q[PARAMS - 1 - i / 2] = if i == PARAMS - 1 { bad } else { f32::NAN };
        let first = q.iter().position(|v| !v.is_finite()).unwrap();
        assert_eq!(
            net.read_params(&q),
            Err(Error::NonFinite {
                what: "weight",
                index: Some(first)
            })
        );
        assert_eq!(bits(&params(&net)), bits(&p));
    }
}

#[test]
fn check_weights_names_the_first_bad_weight() {
    let p = exact_params();
    let net: Clf = net_from(&p);
    assert_eq!(net.check_weights(), Ok(()));
    // A NaN in the second layer's weights, row 2 column 3: index 16 + 2 * 4 + 3.
    let mut w2 = [[0.5f32; 4]; 5];
    w2[2][3] = f32::NAN;
    let bad: Clf = Network::from_layers(
        Chain(
            Dense::from_parts([[1.0; 3]; 4], [0.0; 4], Relu),
            Chain(
                Dense::from_parts(w2, [0.0; 5], Relu),
                Dense::from_parts([[1.0; 5]; 2], [f32::INFINITY, 0.0], Linear),
            ),
        ),
        SoftmaxCrossEntropy,
    );
    let e = Err(Error::NonFinite {
        what: "weight",
        index: Some(27),
    });
    assert_eq!(bad.check_weights(), e);
    #[cfg(feature = "std")]
    assert_eq!(bad.to_rust_source("M"), e.map(|()| String::new()));
}

/// Keras's tensors of the exact parameters: each kernel `[in][out]`, then the bias.
fn keras_tensors(p: &[f32]) -> Vec<Vec<f32>> {
    let mut t = Vec::new();
    let mut at = 0;
    for &(i, o) in &SHAPES {
        let mut kernel = vec![0.0; i * o];
        for j in 0..o {
            for k in 0..i {
                kernel[k * o + j] = p[at + j * i + k];
            }
        }
        t.push(kernel);
        t.push(p[at + i * o..at + i * o + o].to_vec());
        at += i * o + o;
    }
    t
}

/// PyTorch's tensors: each weight `[out][in]` (the flat layout's), then the bias.
fn torch_tensors(p: &[f32]) -> Vec<Vec<f32>> {
    let mut t = Vec::new();
    let mut at = 0;
    for &(i, o) in &SHAPES {
        t.push(p[at..at + i * o].to_vec());
        t.push(p[at + i * o..at + i * o + o].to_vec());
        at += i * o + o;
    }
    t
}

fn refs(t: &[Vec<f32>]) -> Vec<&[f32]> {
    t.iter().map(Vec::as_slice).collect()
}

#[test]
fn keras_and_torch_tensors_are_read_in_their_layouts() {
    // Distinct values: every parameter is its own index.
    let p: Vec<f32> = (0..PARAMS).map(|v| v as f32).collect();
    let mut net = Clf::new(3);
    net.read_keras(&refs(&keras_tensors(&p))).unwrap();
    assert_eq!(bits(&params(&net)), bits(&p));
    let mut net = Clf::new(3);
    net.read_torch(&refs(&torch_tensors(&p))).unwrap();
    assert_eq!(bits(&params(&net)), bits(&p));
}

#[test]
fn keras_and_torch_errors_name_the_tensor_and_the_weight() {
    let p: Vec<f32> = (0..PARAMS).map(|v| v as f32 + 0.5).collect();
    let mut net = Clf::new(4);
    let before = bits(&params(&net));
    // The number of tensors: two per layer.
    for n in [0, 1, 4, 5, 7] {
        let t: Vec<Vec<f32>> = keras_tensors(&p).into_iter().cycle().take(n).collect();
        let want = Err(Error::LengthMismatch {
            what: "tensors",
            expected: 6,
            found: n,
        });
        assert_eq!(net.read_keras(&refs(&t)), want);
        assert_eq!(net.read_torch(&refs(&t)), want);
    }
    // A tensor of the wrong size: the first one, whichever it is.
    for (t, len) in [(0, 12), (1, 4), (2, 20), (3, 5), (4, 10), (5, 2)] {
        for wrong in [len - 1, len + 1] {
            let mut k = keras_tensors(&p);
            k[t].resize(wrong, 1.0);
            if t < 5 {
                k[5].push(1.0);
            }
            let want = Err(Error::ShapeMismatch {
                tensor: t,
                expected: len,
                found: wrong,
            });
            assert_eq!(net.read_keras(&refs(&k)), want);
            assert_eq!(net.read_torch(&refs(&k)), want);
        }
    }
    // A non-finite value: its index in `write_params` order. Keras's kernel of the second
    // layer (4 inputs, 5 outputs) at `[k = 2][j = 3]`, position 13, is weight `[3][2]`:
    // 16 + 3 * 4 + 2; PyTorch's position 13 is weight 16 + 13.
    let mut k = keras_tensors(&p);
    k[2][13] = f32::NAN;
    let nf = |i| {
        Err(Error::NonFinite {
            what: "weight",
            index: Some(i),
        })
    };
    assert_eq!(net.read_keras(&refs(&k)), nf(30));
    assert_eq!(net.read_torch(&refs(&k)), nf(29));
    // The first layer's kernel at `[k = 1][j = 2]` (position 6): weight `[2][1]`, 7.
    let mut k = keras_tensors(&p);
    k[0][6] = f32::INFINITY;
    k[4][1] = f32::NAN;
    assert_eq!(net.read_keras(&refs(&k)), nf(7));
    assert_eq!(net.read_torch(&refs(&k)), nf(6));
    // Biases are not transposed: the first layer's third bias is 12 + 2; the last
    // layer's second, 16 + 25 + 10 + 1.
    for (t, i, want) in [(1, 2, 14), (5, 1, 52), (3, 4, 16 + 24)] {
        let mut k = keras_tensors(&p);
        k[t][i] = f32::NEG_INFINITY;
        assert_eq!(net.read_keras(&refs(&k)), nf(want));
        assert_eq!(net.read_torch(&refs(&k)), nf(want));
    }
    // The last layer's kernel (5 inputs, 2 outputs) at `[k = 4][j = 1]`, position 9: weight
    // `[1][4]`, 41 + 5 + 4.
    let mut k = keras_tensors(&p);
    k[4][9] = f32::NAN;
    assert_eq!(net.read_keras(&refs(&k)), nf(50));
    assert_eq!(net.read_torch(&refs(&k)), nf(50));
    assert_eq!(bits(&params(&net)), before);
}

#[test]
fn step_flop_is_the_documented_formula() {
    let net = Clf::new(1);
    // First layer 4 I O, the others 6 I O, per sample.
    let per = 4 * 3 * 4 + 6 * 4 * 5 + 6 * 5 * 2;
    for n in [0usize, 1, 7, 1000] {
        assert_eq!(net.step_flop(n), (per * n) as u64);
    }
}

#[test]
fn init_glorot_is_new_and_draws_every_layer() {
    let a = Clf::new(11);
    let mut b = Clf::ZERO;
    b.init_glorot(11);
    assert!(a == b);
    let p = params(&a);
    // Glorot-uniform weights, zero biases, in each layer.
    let mut at = 0;
    for &(i, o) in &SHAPES {
        // Glorot's limit, with a margin for its rounding to `f32`.
        let limit = (6.0 / (i + o) as f64).sqrt() * (1.0 + 1e-6);
        let w = &p[at..at + i * o];
        assert!(w.iter().all(|&v| f64::from(v).abs() <= limit));
        assert!(w.iter().filter(|&&v| v != 0.0).count() == i * o);
        assert!(p[at + i * o..at + i * o + o].iter().all(|&v| v == 0.0));
        at += i * o + o;
    }
    assert!(Clf::new(12) != a);
}

#[test]
fn visit_layers_describes_each_layer() {
    let net = Clf::ZERO;
    let mut seen = Vec::new();
    net.visit_layers(|info, act| {
        seen.push((
            info.inputs,
            info.outputs,
            info.activation,
            info.params,
            act.eval(-1.0),
        ));
    });
    assert_eq!(
        seen,
        [
            (3, 4, "relu", 16, 0.0),
            (4, 5, "relu", 25, 0.0),
            (5, 2, "linear", 12, -1.0)
        ]
    );
}

#[test]
fn display_is_the_keras_summary() {
    let net = Clf::ZERO;
    let thin = "-".repeat(65);
    let thick = "=".repeat(65);
    let row = |name: &str, shape: &str, n: usize| format!("{name:<28}{shape:<22}{n:>15}\n");
    let header = format!(
        "{:<28}{:<22}{:>15}\n",
        "Layer (type)", "Output Shape", "Param #"
    );
    let want = format!(
        "Model: \"Network\"\n{thin}\n{header}{thick}\n{}{}{}{thick}\nTotal params: 53\n\
         Trainable params: 53\nNon-trainable params: 0\n\
         Loss head: softmax + sparse categorical cross-entropy",
        row("dense (Dense, relu)", "(None, 4)", 16),
        row("dense_1 (Dense, relu)", "(None, 5)", 25),
        row("dense_2 (Dense, linear)", "(None, 2)", 12),
    );
    assert_eq!(format!("{net}"), want);
    let reg = Reg::ZERO;
    assert!(format!("{reg}").ends_with("\nLoss head: mean squared error"));
}

#[test]
fn debug_formats_name_their_type() {
    let net = Clf::ZERO;
    let d = format!("{net:?}");
    assert!(d.starts_with("Network { layers: "), "{d}");
    assert!(d.ends_with(", head: SoftmaxCrossEntropy }"), "{d}");
    assert_eq!(format!("{:?}", NetWorkspace::<E>::new()), "NetWorkspace");
    let st = OptimizerState::<E, Sgd>::new();
    let d = format!("{st:?}");
    assert!(d.starts_with("OptimizerState { step: 0, layers: "), "{d}");
    let g = format!("{:?}", NetGradients::<E>::ZERO);
    assert!(g.starts_with("NetGradients { g: "), "{g}");
}

#[cfg(feature = "std")]
#[test]
fn rust_source_names_the_shape_and_every_weight() {
    let p = exact_params();
    let net: Clf = net_from(&p);
    let src = net.to_rust_source("MODEL").unwrap();
    assert!(src.starts_with("// Generated by fusedprop's `Network::to_rust_source`"));
    assert!(src.contains(
        "/// A fusedprop network, 3-4-5-2 (relu, relu, linear), softmax + sparse categorical \
         cross-entropy, 53 parameters.\n"
    ));
    assert!(src.contains("pub static MODEL: ::fusedprop::Network<\n    "));
    assert!(src.ends_with(",\n    ::fusedprop::SoftmaxCrossEntropy,\n);\n"));
}

/// The results of the exact network: outputs, probabilities, classes, loss, gradients.
#[test]
fn exact_network_results_are_the_oracles() {
    let n = 64;
    let p = exact_params();
    let x = exact_x(n);
    let reg: Reg = net_from(&p);
    let clf: Clf = net_from(&p);
    let z: Vec<Vec<f64>> = x.iter().map(|r| forward64(&p, r)).collect();

    let mut out = vec![[f32::NAN; 2]; n];
    reg.outputs(&x, &mut out).unwrap();
    let mut proba = vec![[f32::NAN; 2]; n];
    reg.predict_proba(&x, &mut proba).unwrap();
    for s in 0..n {
        for j in 0..2 {
            assert_eq!(f64::from(out[s][j]), z[s][j], "output {s} {j}");
            assert_eq!(proba[s][j].to_bits(), out[s][j].to_bits());
        }
    }
    let mut out2 = vec![[f32::NAN; 2]; n];
    clf.outputs(&x, &mut out2).unwrap();
    assert_eq!(out, out2);
    // Softmax probabilities within the table's tolerance.
    clf.predict_proba(&x, &mut proba).unwrap();
    for s in 0..n {
        let m = z[s][0].max(z[s][1]);
        let e: Vec<f64> = z[s].iter().map(|v| (v - m).exp()).collect();
        for j in 0..2 {
            let want = e[j] / (e[0] + e[1]);
            support::assert_close(
                f64::from(proba[s][j]),
                want,
                1.0,
                support::SOFTMAX,
                &format!("probability {s} {j}"),
            );
        }
    }
    // Classes, one by one and in lanes; both classes occur.
    let want: Vec<u32> = z.iter().map(|z| argmax(z)).collect();
    assert!(want.contains(&0) && want.contains(&1));
    let mut classes = vec![9u32; n];
    clf.predict(&x, &mut classes).unwrap();
    assert_eq!(classes, want);
    for s in 0..n {
        assert_eq!(clf.predict_one(&x[s]), Ok(want[s]), "sample {s}");
    }
    // Accuracy: a third of the labels are wrong.
    let y = labels(&x, &p);
    let hits = y.iter().zip(&want).filter(|(a, b)| a == b).count();
    assert!(hits != n && hits != 0 && 2 * hits != n);
    assert_eq!(
        clf.accuracy(&x, &y).unwrap().to_bits(),
        (hits as f32 / n as f32).to_bits()
    );

    // The mean squared error, exact (a power-of-two batch), and its gradients, exact too.
    let t = mse_targets(n);
    let loss = reg.loss(&x, &t).unwrap();
    let oracle = NetOracle::new(&reg);
    let (want_loss, want_g) = oracle.gradients(&params64(&reg), &inputs(&x), &targets(&t));
    assert_eq!(f64::from(loss), want_loss);
    assert!(want_loss > 1.0);
    let mut g = Box::new(NetGradients::<E>::ZERO);
    let mut ws = Box::new(NetWorkspace::<E>::new());
    let gl = reg.gradients(&x, &t, &mut g, &mut ws).unwrap();
    assert_eq!(gl.to_bits(), loss.to_bits());
    let mut flat = vec![f32::NAN; PARAMS];
    g.write_flat(&mut flat).unwrap();
    for (i, (&got, &want)) in flat.iter().zip(&want_g).enumerate() {
        assert_eq!(f64::from(got), want, "gradient {i}");
    }
    assert!(flat.iter().filter(|&&v| v != 0.0).count() > PARAMS / 2);
    // Clone and equality of gradients.
    let g2 = (*g).clone();
    assert!(g2 == *g);
    assert!(*g != NetGradients::<E>::ZERO);
    assert!(NetGradients::<E>::ZERO == NetGradients::<E>::default());
}

/// Errors name the first bad sample, over blocks and tiles, and write nothing they promise
/// not to.
#[test]
fn errors_name_the_sample() {
    let p = exact_params();
    let clf: Clf = net_from(&p);
    let reg: Reg = net_from(&p);
    let n = TILE_SAMPLES + 40;
    let mut x = exact_x(n);
    let bad_in = |i| {
        Some(Error::NonFinite {
            what: "input",
            index: Some(i),
        })
    };
    let t = mse_targets(n);
    let y = labels(&x, &p);
    for s in [37, TILE_SAMPLES + 37] {
        let keep = x[s];
        x[s][1] = f32::NAN;
        x[n - 1][0] = f32::INFINITY;
        let mut out = vec![[0.0f32; 2]; n];
        assert_eq!(clf.outputs(&x, &mut out).err(), bad_in(s));
        assert_eq!(clf.predict_proba(&x, &mut out).err(), bad_in(s));
        let mut c = vec![0u32; n];
        assert_eq!(clf.predict(&x, &mut c).err(), bad_in(s));
        assert_eq!(clf.accuracy(&x, &y).err(), bad_in(s));
        assert_eq!(reg.loss(&x, &t).err(), bad_in(s));
        assert_eq!(clf.loss(&x, &y).err(), bad_in(s));
        assert_eq!(clf.predict_one(&x[s]).err(), bad_in(0));
        x[s] = keep;
        x[n - 1] = exact_x(n)[n - 1];
    }
    assert_eq!(
        clf.predict_one(&[0.0, -f32::INFINITY, 1.0]).err(),
        bad_in(0)
    );
    // Zeros (`0 ^ 0x7fff_ffff` would look infinite).
    assert_eq!(
        clf.predict_one(&[0.0, 0.0, 0.0]),
        Ok(argmax(&forward64(&p, &[0.0; 3])))
    );
    // A loss that overflows: a huge target.
    for s in [37, TILE_SAMPLES + 37] {
        let mut t = t.clone();
        t[s][1] = 1e30;
        t[n - 1][0] = 1e30;
        assert_eq!(
            reg.loss(&x, &t).err(),
            Some(Error::NonFinite {
                what: "loss",
                index: Some(s)
            })
        );
    }
    // Outputs that overflow from finite inputs: weights of 1e20, zero biases, and one sample
    // of ones among zeros.
    let mut big = vec![1e20f32; PARAMS];
    for r in [12..16, 36..41, 51..53] {
        big[r].fill(0.0);
    }
    let huge: Clf = net_from(&big);
    let mut x = vec![[0.0f32; 3]; n];
    let mut out = vec![[0.0f32; 2]; n];
    let mut c = vec![0u32; n];
    huge.outputs(&x, &mut out).unwrap();
    for s in [37, TILE_SAMPLES + 37] {
        x[s] = [1.0; 3];
        let e = Some(Error::NonFinite {
            what: "output",
            index: Some(s),
        });
        assert_eq!(huge.outputs(&x, &mut out).err(), e);
        assert_eq!(huge.predict_proba(&x, &mut out).err(), e);
        assert_eq!(huge.predict(&x, &mut c).err(), e);
        assert_eq!(huge.accuracy(&x, &vec![0; n]).err(), e);
        assert_eq!(
            huge.predict_one(&x[s]),
            Err(Error::NonFinite {
                what: "output",
                index: Some(0)
            })
        );
        x[s] = [0.0; 3];
    }
    // Lengths.
    let x = exact_x(5);
    let mut out = vec![[0.0f32; 2]; 4];
    let lm = |what, expected, found| {
        Some(Error::LengthMismatch {
            what,
            expected,
            found,
        })
    };
    assert_eq!(clf.outputs(&x, &mut out).err(), lm("outputs", 5, 4));
    assert_eq!(clf.predict_proba(&x, &mut out).err(), lm("outputs", 5, 4));
    assert_eq!(clf.predict(&x, &mut [0; 6]).err(), lm("outputs", 5, 6));
    assert_eq!(clf.accuracy(&x, &[0; 6]).err(), lm("labels", 5, 6));
    assert_eq!(clf.accuracy(&[], &[]), Err(Error::EmptyBatch));
    assert_eq!(
        clf.accuracy(&x, &[0, 1, 2, 0, 0]),
        Err(Error::LabelOutOfRange {
            index: 2,
            label: 2,
            classes: 2
        })
    );
}

fn momentum_state_values(st: &OptimizerState<E, Momentum>) -> Vec<f32> {
    let mut v = Vec::new();
    st.visit(|s| v.extend_from_slice(s));
    v
}

#[test]
fn optimizer_state_counts_compares_and_clones() {
    let x = exact_x(20);
    let p = exact_params();
    let y = labels(&x, &p);
    let mut net = Clf::new(5);
    let mut twin = Clf::new(6);
    let m = Momentum::new(0.05, 0.9).unwrap();
    let mut st = OptimizerState::<E, Momentum>::new();
    let mut st2 = OptimizerState::<E, Momentum>::default();
    let mut ws = Box::new(NetWorkspace::<E>::default());
    assert!(st == st2);
    assert_eq!(st.steps(), 0);
    let v0 = momentum_state_values(&st);
    assert_eq!(v0.len(), PARAMS);
    assert!(v0.iter().all(|&v| v == 0.0));

    let before = net.loss(&x, &y).unwrap();
    let l = net.train_step(&x, &y, &m, &mut st, &mut ws).unwrap();
    assert_eq!(l.to_bits(), before.to_bits());
    assert_eq!(st.steps(), 1);
    let v1 = momentum_state_values(&st);
    assert_eq!(v1.len(), PARAMS);
    assert!(v1.iter().filter(|&&v| v != 0.0).count() > PARAMS / 2);
    let c = st.clone();
    assert!(c == st);
    assert_eq!(c.steps(), 1);
    assert_eq!(bits(&momentum_state_values(&c)), bits(&v1));
    assert!(st != st2);
    // The same step count, other velocities: not equal.
    twin.train_step(&x, &y, &m, &mut st2, &mut ws).unwrap();
    assert_eq!(st2.steps(), 1);
    assert!(st != st2);
    // The same velocities (SGD has none), other step counts: not equal.
    let sgd = Sgd::new(0.05).unwrap();
    let mut s1 = OptimizerState::<E, Sgd>::new();
    let mut s2 = OptimizerState::<E, Sgd>::new();
    net.train_step(&x, &y, &sgd, &mut s1, &mut ws).unwrap();
    assert!(s1 != s2);
    net.train_step(&x, &y, &sgd, &mut s2, &mut ws).unwrap();
    assert!(s1 == s2);
    net.train_step(&x, &y, &sgd, &mut s2, &mut ws).unwrap();
    assert_eq!(s2.steps(), 2);
    assert!(s1 != s2);

    // A refused step counts nothing and changes nothing.
    let mut bad = x.clone();
    bad[3][0] = f32::NAN;
    let w = params(&net);
    let c = st.clone();
    assert_eq!(
        net.train_step(&bad, &y, &m, &mut st, &mut ws),
        Err(Error::NonFinite {
            what: "input",
            index: Some(3)
        })
    );
    assert_eq!(st.steps(), 1);
    assert!(st == c);
    assert_eq!(bits(&params(&net)), bits(&w));
}

#[test]
fn packed_and_given_gradient_steps() {
    let n = 32;
    let x = exact_x(n);
    let p = exact_params();
    let y = labels(&x, &p);
    let sgd = Sgd::new(0.1).unwrap();
    let mut ws = Box::new(NetWorkspace::<E>::new());

    // Packed: the loss before the step and the weights of `train_step`, bit for bit.
    let mut a = Clf::new(8);
    let mut b = a.clone();
    let batch = PackedBatch::<3, 8>::from_rows(&x, &y).unwrap();
    let before = a.loss(&x, &y).unwrap();
    let (mut sa, mut sb) = (OptimizerState::new(), OptimizerState::new());
    let la = a.train_step_packed(&batch, &sgd, &mut sa, &mut ws).unwrap();
    let lb = b.train_step(&x, &y, &sgd, &mut sb, &mut ws).unwrap();
    assert_eq!(la.to_bits(), before.to_bits());
    assert_eq!(lb.to_bits(), before.to_bits());
    assert!(a == b);
    assert!(a != Clf::new(8));

    // Given output gradients: SGD moves the last layer's biases by `-lr` times the sum of
    // `dy` over the batch; dyadic values, exact.
    let mut net: Reg = net_from(&p);
    let dy: Vec<[f32; 2]> = (0..n)
        .map(|s| [(s % 3) as f32 * 0.125, -((s % 5) as f32) * 0.25])
        .collect();
    let mut st = OptimizerState::<E, Sgd>::new();
    let sgd = Sgd::new(0.5).unwrap();
    net.train_step_with_output_grad(&x, &dy, &sgd, &mut st, &mut ws)
        .unwrap();
    assert_eq!(st.steps(), 1);
    let after = params(&net);
    for j in 0..2 {
        let sum: f64 = dy.iter().map(|r| f64::from(r[j])).sum();
        let want = f64::from(p[51 + j]) - 0.5 * sum;
        assert_eq!(f64::from(after[51 + j]), want, "bias {j}");
    }
    // Refusals: nothing changes.
    let w = bits(&params(&net));
    let c = st.clone();
    assert_eq!(
        net.train_step_with_output_grad(&[], &[], &sgd, &mut st, &mut ws),
        Err(Error::EmptyBatch)
    );
    assert_eq!(
        net.train_step_with_output_grad(&x, &dy[1..], &sgd, &mut st, &mut ws),
        Err(Error::LengthMismatch {
            what: "output gradients",
            expected: n,
            found: n - 1
        })
    );
    let mut bad = dy.clone();
    bad[19][1] = f32::INFINITY;
    bad[25][0] = f32::NAN;
    assert_eq!(
        net.train_step_with_output_grad(&x, &bad, &sgd, &mut st, &mut ws),
        Err(Error::NonFinite {
            what: "output gradient",
            index: Some(19)
        })
    );
    assert_eq!(bits(&params(&net)), w);
    assert!(st == c);
}

/// `fit` steps through `train_step_blocks`, and its validation through the loss and
/// accuracy of one pass: as `train_step` on each batch, as `loss` and `accuracy`.
#[test]
fn fit_trains_as_train_step_and_validates_as_loss_and_accuracy() {
    let n = 70;
    let x = exact_x(n);
    let p = exact_params();
    let y = labels(&x, &p);
    let vx = exact_x(45)[5..].to_vec();
    let vy = labels(&vx, &p);
    let sgd = Sgd::new(0.05).unwrap();
    let mut net = Clf::new(9);
    let mut twin = net.clone();
    let mut st = OptimizerState::new();
    let mut ws = Box::new(FitWorkspace::<E, SoftmaxCrossEntropy, 8>::new());
    let mut order = vec![0; n];
    let mut logs = Vec::new();
    net.fit(
        FitData::new(&x, &y, &mut order).validation(&vx, &vy),
        &sgd,
        &mut st,
        &mut ws,
        &FitConfig::new(32, 1),
        |log| {
            logs.push((log.val_loss, log.val_accuracy, log.steps));
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    let mut st2 = OptimizerState::new();
    let mut nws = Box::new(NetWorkspace::<E>::new());
    for (a, b) in [(0, 32), (32, 64), (64, 70)] {
        twin.train_step(&x[a..b], &y[a..b], &sgd, &mut st2, &mut nws)
            .unwrap();
    }
    assert!(net == twin);
    assert_eq!(st.steps(), 3);
    let acc = twin.accuracy(&vx, &vy).unwrap();
    assert!(acc > 0.0 && acc < 1.0 && acc != 0.5);
    assert_eq!(logs, [(Some(twin.loss(&vx, &vy).unwrap()), Some(acc), 3)]);

    // Mean squared error: a validation loss and no accuracy.
    let t = mse_targets(n);
    let vt = mse_targets(40);
    let mut reg = Reg::new(9);
    let mut twin = reg.clone();
    let mut st = OptimizerState::new();
    let mut ws = Box::new(FitWorkspace::<E, MeanSquaredError, 8>::new());
    let mut logs = Vec::new();
    reg.fit(
        FitData::new(&x, &t, &mut order).validation(&vx, &vt),
        &sgd,
        &mut st,
        &mut ws,
        &FitConfig::new(32, 1),
        |log| {
            logs.push((log.val_loss, log.val_accuracy));
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    let mut st2 = OptimizerState::new();
    for (a, b) in [(0, 32), (32, 64), (64, 70)] {
        twin.train_step(&x[a..b], &t[a..b], &sgd, &mut st2, &mut nws)
            .unwrap();
    }
    assert!(reg == twin);
    assert_eq!(logs, [(Some(twin.loss(&vx, &vt).unwrap()), None)]);
}

#[test]
fn zero_rows_are_zero() {
    let z = fusedprop::network::zero_input::<E>();
    assert_eq!(z, [0.0; 3]);
    assert_eq!(fusedprop::network::zero_output::<E>(), [0.0; 2]);
}

/// `Mlp::gradients` is the network's gradients in the workspace: the loss is `Mlp::loss`'s,
/// bit for bit, and the gradients those of the same network as a `Network` (`Mlp::new`
/// draws as `Network::new`), on a batch of two tiles.
#[test]
fn mlp_gradients_are_the_networks() {
    let n = TILE_SAMPLES + 9;
    let x = exact_x(n);
    let y: Vec<u32> = (0..n).map(|s| (s % 2) as u32).collect();
    let m = fusedprop::Mlp::<3, 4, 2>::new(21);
    let mut g = Box::new(fusedprop::Gradients::<3, 4, 2>::ZERO);
    let mut ws = Box::new(fusedprop::Workspace::<3, 4, 2>::new());
    let loss = m.gradients(&x, &y, &mut g, &mut ws).unwrap();
    assert_eq!(loss.to_bits(), m.loss(&x, &y).unwrap().to_bits());
    let mut flat = vec![0.0f32; 3 * 4 + 4 + 4 * 2 + 2];
    g.write_flat(&mut flat).unwrap();
    assert!(flat.iter().filter(|&&v| v != 0.0).count() > flat.len() / 2);
}
