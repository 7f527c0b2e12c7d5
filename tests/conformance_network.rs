//! Conformance of [`Network`] with TensorFlow 2.21 / Keras 3, step by step, on the fixtures in
//! `tests/fixtures/` (copied from the project's shared fixtures; their README there gives the
//! exact math): deeper networks, tanh and sigmoid, MSE and binary cross-entropy, momentum,
//! Nesterov, Adam and AdamW. Every step's loss must be within 1e-5 of TensorFlow's, the final
//! weights and the test outputs within 1e-4.

use fusedprop::{
    Adam, BinaryCrossEntropy, Dense, Head, Layer, MeanSquaredError, Momentum, NetWorkspace,
    Network, OptimizerState, Relu, Sigmoid, SoftmaxCrossEntropy, Tanh, chain,
};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture parses")
}

fn floats(v: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Number(n) => out.push(n.as_f64().expect("number") as f32),
            _ => panic!("not a number: {v}"),
        }
    }
    walk(v, &mut out);
    out
}

fn rows<const N: usize>(v: &Value) -> Vec<[f32; N]> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let f = floats(r);
            f.try_into().expect("row width")
        })
        .collect()
}

fn labels(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("labels")
        .iter()
        .map(|l| l.as_u64().expect("label") as u32)
        .collect()
}

/// Keras weights `[kernel_0, bias_0, ...]` as flat tensors.
fn tensors(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().expect("weights").iter().map(floats).collect()
}

fn keras_flat<L: Layer, H: Head<L::Out>>(net: &Network<L, H>) -> Vec<f32> {
    // Our order is [out][in] per kernel; compare against Keras's [in][out] by transposing.
    let mut ours = vec![0.0; L::PARAMS];
    net.write_params(&mut ours).unwrap();
    let mut keras = Vec::with_capacity(L::PARAMS);
    let mut at = 0;
    net.visit_layers(|info, _| {
        let (i, o) = (info.inputs, info.outputs);
        for k in 0..i {
            for j in 0..o {
                keras.push(ours[at + j * i + k]);
            }
        }
        at += i * o;
        keras.extend_from_slice(&ours[at..at + o]);
        at += o;
    });
    keras
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max)
}

/// Replays a fixture: builds the network from `initial`, trains it step by step with `opt`,
/// and checks every loss, the final weights and the test outputs.
macro_rules! replay {
    ($fx:expr, $layers:ty, $head:ty, $opt:expr, $x:ident: $xi:literal, $y:ident: $yk:tt) => {{
        let fx: Value = $fx;
        let x = rows::<$xi>(&fx["x_train"]);
        let xt = rows::<$xi>(&fx["x_test"]);
        let y = replay!(@targets $yk, &fx["y_train"]);
        let init = tensors(&fx["initial"]);
        let init: Vec<&[f32]> = init.iter().map(Vec::as_slice).collect();
        let mut net = Network::<$layers, $head>::ZERO;
        net.read_keras(&init).expect("initial weights load");
        let opt = $opt;
        let mut state = OptimizerState::new();
        let mut ws = NetWorkspace::new();
        let want = floats(&fx["losses"]);
        let mut worst = 0.0f64;
        for (step, &w) in want.iter().enumerate() {
            let got = net.train_step(&x, &y, &opt, &mut state, &mut ws).expect("step");
            let d = (f64::from(got) - f64::from(w)).abs();
            worst = worst.max(d);
            assert!(d <= 1e-5, "step {step}: loss {got}, TensorFlow {w}");
        }
        assert_eq!(state.steps(), want.len() as u64);
        let fin = floats(&fx["final"]);
        let wd = max_diff(&keras_flat(&net), &fin);
        assert!(wd <= 1e-4, "final weights differ by {wd}");
        let mut out = vec![Default::default(); xt.len()];
        net.predict_proba(&xt, &mut out).expect("test outputs");
        let out: Vec<f32> = out.iter().flat_map(|r| r.iter().copied()).collect();
        let od = max_diff(&out, &floats(&fx["test_outputs"]));
        assert!(od <= 1e-4, "test outputs differ by {od}");
        eprintln!("worst loss difference {worst:e}, weights {wd:e}, outputs {od:e}");
        net
    }};
    (@targets labels, $v:expr) => { labels($v) };
    (@targets rows, $v:expr) => { rows::<1>($v) };
}

#[test]
fn iris_deep_tanh_relu_adam() {
    replay!(
        load("tf_iris_deep_adam.json"),
        chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>],
        SoftmaxCrossEntropy,
        Adam::new(0.01).unwrap(),
        x: 4,
        y: labels
    );
}

#[test]
fn iris_momentum() {
    replay!(
        load("tf_iris_momentum.json"),
        chain![Dense<4, 32, Relu>, Dense<32, 3>],
        SoftmaxCrossEntropy,
        Momentum::new(0.01, 0.9).unwrap(),
        x: 4,
        y: labels
    );
}

#[test]
fn diabetes_sigmoid_relu_mse_nesterov() {
    replay!(
        load("tf_diabetes_mse.json"),
        chain![Dense<10, 32, Sigmoid>, Dense<32, 16, Relu>, Dense<16, 1>],
        MeanSquaredError,
        Momentum::nesterov(0.01, 0.9).unwrap(),
        x: 10,
        y: rows
    );
}

#[test]
fn cancer_binary_cross_entropy_adamw() {
    replay!(
        load("tf_cancer_bce.json"),
        chain![Dense<30, 16, Relu>, Dense<16, 1>],
        BinaryCrossEntropy,
        Adam::adamw(0.002, 0.01).unwrap(),
        x: 30,
        y: rows
    );
}

/// Mini-batches in row order (`tf_iris_minibatch.json`: batch 32, the last of each epoch 24),
/// one `train_step` per batch: every step's loss within 1e-5, final weights within 1e-4.
#[test]
fn iris_minibatches_in_order() {
    let fx = load("tf_iris_minibatch.json");
    let x = rows::<4>(&fx["x_train"]);
    let y = labels(&fx["y_train"]);
    let init = tensors(&fx["initial"]);
    let init: Vec<&[f32]> = init.iter().map(Vec::as_slice).collect();
    type L = chain![Dense<4, 32, Relu>, Dense<32, 3>];
    let mut net = Network::<L, SoftmaxCrossEntropy>::ZERO;
    net.read_keras(&init).expect("initial weights load");
    let sgd = fusedprop::Sgd::new(0.01).unwrap();
    let (mut state, mut ws) = (OptimizerState::new(), NetWorkspace::new());
    let want = floats(&fx["losses"]);
    let per_epoch = x.len().div_ceil(32);
    for (step, &w) in want.iter().enumerate() {
        let b = step % per_epoch;
        let r = b * 32..((b + 1) * 32).min(x.len());
        let got = net
            .train_step(&x[r.clone()], &y[r], &sgd, &mut state, &mut ws)
            .expect("step");
        assert!(
            (f64::from(got) - f64::from(w)).abs() <= 1e-5,
            "step {step}: loss {got}, TensorFlow {w}"
        );
    }
    let wd = max_diff(&keras_flat(&net), &floats(&fx["final"]));
    assert!(wd <= 1e-4, "final weights differ by {wd}");
}

/// Weights saved by PyTorch (`safetensors.torch.save_file` of an `nn.Sequential`, names
/// `0.weight` ...): read with `read_torch` into 4-16-8-3 tanh/relu, PyTorch's logits within
/// 1e-5 on its 30 test rows. The safetensors file is parsed here by hand (8-byte header
/// length, JSON header, little-endian f32 data).
#[test]
fn pytorch_weights_give_pytorchs_logits() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(format!("{dir}/torch_iris_tanh_relu.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let tensor = |name: &str| -> Vec<f32> {
        let t = &header[name];
        assert_eq!(t["dtype"], "F32");
        let (a, b) = (
            t["data_offsets"][0].as_u64().unwrap() as usize,
            t["data_offsets"][1].as_u64().unwrap() as usize,
        );
        data[a..b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let names = [
        "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias",
    ];
    let t: Vec<Vec<f32>> = names.iter().map(|n| tensor(n)).collect();
    let t: Vec<&[f32]> = t.iter().map(Vec::as_slice).collect();
    let mut net = Network::<
        chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>],
        SoftmaxCrossEntropy,
    >::ZERO;
    net.read_torch(&t).expect("PyTorch weights load");
    let fx = load("torch_iris_tanh_relu.json");
    let x = rows::<4>(&fx["x_test"]);
    let mut z = vec![[0.0f32; 3]; x.len()];
    net.outputs(&x, &mut z).unwrap();
    let z: Vec<f32> = z.iter().flatten().copied().collect();
    let d = max_diff(&z, &floats(&fx["test_logits"]));
    assert!(d <= 1e-5, "logits differ by {d}");
    let mut classes = vec![0u32; x.len()];
    net.predict(&x, &mut classes).unwrap();
    let want: Vec<u32> = fx["test_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = floats(r);
            (0..3).fold(0, |b, j| if r[j] > r[b] { j } else { b }) as u32
        })
        .collect();
    assert_eq!(classes, want);
}

/// The same fixture through `Network::fit` (batch 32, rows in order, the last batch of each
/// epoch 24 as Keras keeps it, 50 epochs = 200 steps): every step's loss within 1e-5, final
/// weights within 1e-4, and bit for bit the hand-written loop of `train_step`s above.
#[test]
fn iris_minibatches_through_fit() {
    use core::ops::ControlFlow;
    use fusedprop::{BatchLog, FitConfig, FitData, FitWorkspace};
    let fx = load("tf_iris_minibatch.json");
    let x = rows::<4>(&fx["x_train"]);
    let y = labels(&fx["y_train"]);
    let init = tensors(&fx["initial"]);
    let init: Vec<&[f32]> = init.iter().map(Vec::as_slice).collect();
    type L = chain![Dense<4, 32, Relu>, Dense<32, 3>];
    let mut net = Network::<L, SoftmaxCrossEntropy>::ZERO;
    net.read_keras(&init).expect("initial weights load");
    let mut by_hand = net.clone();
    let sgd = fusedprop::Sgd::new(0.01).unwrap();
    let want = floats(&fx["losses"]);
    let per_epoch = x.len().div_ceil(32);
    assert_eq!(want.len() % per_epoch, 0);

    let (mut state, mut ws) = (
        OptimizerState::new(),
        Box::new(FitWorkspace::<L, _, 2>::ZERO),
    );
    let mut order = vec![0; x.len()];
    let mut steps: Vec<BatchLog> = Vec::new();
    let mut record = |b: &BatchLog| steps.push(*b);
    let config = FitConfig::new(32, want.len() / per_epoch);
    let data = FitData::new(&x, &y, &mut order).on_batch(&mut record);
    let summary = net
        .fit(data, &sgd, &mut state, &mut ws, &config, |_| {
            ControlFlow::Continue(())
        })
        .expect("fit");
    assert_eq!(summary.epochs, want.len() / per_epoch);
    assert_eq!(steps.len(), want.len());
    assert_eq!(state.steps(), want.len() as u64);
    for (step, (got, &w)) in steps.iter().zip(&want).enumerate() {
        assert_eq!(
            got.size,
            if step % per_epoch == per_epoch - 1 {
                24
            } else {
                32
            }
        );
        assert!(
            (f64::from(got.loss) - f64::from(w)).abs() <= 1e-5,
            "step {step}: loss {}, TensorFlow {w}",
            got.loss
        );
    }
    let wd = max_diff(&keras_flat(&net), &floats(&fx["final"]));
    assert!(wd <= 1e-4, "final weights differ by {wd}");

    let (mut st2, mut ws2) = (OptimizerState::new(), NetWorkspace::new());
    for (step, got) in steps.iter().enumerate() {
        let b = step % per_epoch;
        let r = b * 32..((b + 1) * 32).min(x.len());
        let l = by_hand
            .train_step(&x[r.clone()], &y[r], &sgd, &mut st2, &mut ws2)
            .unwrap();
        assert_eq!(l.to_bits(), got.loss.to_bits(), "step {step}");
    }
    assert!(by_hand == net, "fit and the loop of train_step differ");
    assert!(st2 == state);
}
