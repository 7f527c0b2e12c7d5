//! Conformance with TensorFlow: `tests/tf_iris_seed7.json` is TensorFlow 2.21 / Keras 3
//! running the reference Iris program (copied from the project's shared fixtures). From its
//! initial weights, fusedprop must reproduce every one of its 1000 losses within 1e-5, its
//! first gradients within 1e-5 and its final weights and test probabilities within 1e-4.

#[path = "../examples/support/data.rs"]
mod data;

use fusedprop::{Gradients, Mlp, Sgd, Workspace};
use serde_json::Value;

const FIXTURE: &str = include_str!("tf_iris_seed7.json");

fn matrix<const R: usize, const C: usize>(v: &Value) -> [[f32; C]; R] {
    let rows = v.as_array().expect("matrix");
    assert_eq!(rows.len(), R);
    let mut m = [[0.0; C]; R];
    for (r, row) in m.iter_mut().zip(rows) {
        let row = row.as_array().expect("row");
        assert_eq!(row.len(), C);
        for (x, v) in r.iter_mut().zip(row) {
            *x = v.as_f64().expect("number") as f32;
        }
    }
    m
}

fn vector<const N: usize>(v: &Value) -> [f32; N] {
    let items = v.as_array().expect("vector");
    assert_eq!(items.len(), N);
    let mut out = [0.0; N];
    for (x, v) in out.iter_mut().zip(items) {
        *x = v.as_f64().expect("number") as f32;
    }
    out
}

fn model_from(v: &Value) -> Mlp<4, 32, 3> {
    Mlp::from_keras(
        &matrix::<4, 32>(&v["dense_kernel"]),
        vector::<32>(&v["dense_bias"]),
        &matrix::<32, 3>(&v["dense_1_kernel"]),
        vector::<3>(&v["dense_1_bias"]),
    )
    .expect("finite fixture weights")
}

fn max_diff<'a>(a: impl IntoIterator<Item = &'a f32>, b: impl IntoIterator<Item = &'a f32>) -> f32 {
    a.into_iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

struct Setup {
    fixture: Value,
    train_x: Vec<[f32; 4]>,
    train_y: Vec<u32>,
    test_x: Vec<[f32; 4]>,
}

fn setup() -> Setup {
    let fixture: Value = serde_json::from_str(FIXTURE).expect("fixture parses");
    let (train_x, train_y, test_x, _) = data::iris_split().expect("data/ is readable");
    // The fixture's split is the repository's split.
    let idx: Vec<u64> = fixture["train_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(idx.len(), train_x.len());
    let (all_x, _) = data::read_csv::<4>(&data::data_dir().join("iris.csv")).unwrap();
    for (i, row) in idx.iter().zip(&train_x) {
        assert_eq!(&all_x[*i as usize], row);
    }
    Setup {
        fixture,
        train_x,
        train_y,
        test_x,
    }
}

#[test]
fn first_gradients_match_tensorflow() {
    let s = setup();
    let model = model_from(&s.fixture["initial"]);
    let mut g = Gradients::ZERO;
    let mut ws = Workspace::new();
    let loss = model
        .gradients(&s.train_x, &s.train_y, &mut g, &mut ws)
        .unwrap();
    let tf = &s.fixture["first_gradients"];
    let k1 = Mlp::<4, 32, 3>::from_weights(g.hidden.w, g.hidden.b, g.output.w, g.output.b).unwrap();
    let d1 = max_diff(
        k1.hidden().keras_kernel().iter().flatten(),
        matrix::<4, 32>(&tf["dense_kernel"]).iter().flatten(),
    );
    let d2 = max_diff(&g.hidden.b, &vector::<32>(&tf["dense_bias"]));
    let d3 = max_diff(
        k1.output().keras_kernel().iter().flatten(),
        matrix::<32, 3>(&tf["dense_1_kernel"]).iter().flatten(),
    );
    let d4 = max_diff(&g.output.b, &vector::<3>(&tf["dense_1_bias"]));
    for (name, d) in [
        ("dense_kernel", d1),
        ("dense_bias", d2),
        ("dense_1_kernel", d3),
        ("dense_1_bias", d4),
    ] {
        assert!(d <= 1e-5, "{name}: max |ours - TF| = {d:e}");
    }
    let tf_loss = s.fixture["loss"][0].as_f64().unwrap() as f32;
    assert!(
        (loss - tf_loss).abs() <= 1e-5,
        "loss {loss} vs TF {tf_loss}"
    );
}

#[test]
fn thousand_epochs_match_tensorflow_loss_by_loss() {
    let s = setup();
    let mut model = model_from(&s.fixture["initial"]);
    let mut ws = Workspace::new();
    let sgd = Sgd::new(s.fixture["learning_rate"].as_f64().unwrap() as f32).unwrap();
    let tf_losses = s.fixture["loss"].as_array().unwrap();
    assert_eq!(tf_losses.len(), 1000);
    let mut worst = (0.0f32, 0usize);
    for (epoch, tf) in tf_losses.iter().enumerate() {
        let loss = model
            .train_step(&s.train_x, &s.train_y, &sgd, &mut ws)
            .unwrap();
        let d = (loss - tf.as_f64().unwrap() as f32).abs();
        if d > worst.0 {
            worst = (d, epoch);
        }
    }
    assert!(
        worst.0 <= 1e-5,
        "loss of epoch {} differs from TensorFlow's by {:e}",
        worst.1 + 1,
        worst.0
    );

    let fin = model_from(&s.fixture["final"]);
    let dw = max_diff(
        model
            .hidden()
            .weights()
            .iter()
            .flatten()
            .chain(model.hidden().bias()),
        fin.hidden()
            .weights()
            .iter()
            .flatten()
            .chain(fin.hidden().bias()),
    );
    let dv = max_diff(
        model
            .output()
            .weights()
            .iter()
            .flatten()
            .chain(model.output().bias()),
        fin.output()
            .weights()
            .iter()
            .flatten()
            .chain(fin.output().bias()),
    );
    assert!(
        dw <= 1e-4 && dv <= 1e-4,
        "final weights differ: {dw:e}, {dv:e}"
    );

    let mut proba = vec![[0.0f32; 3]; s.test_x.len()];
    model.predict_proba(&s.test_x, &mut proba).unwrap();
    let tf_proba: Vec<[f32; 3]> = s.fixture["test_probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(vector::<3>)
        .collect();
    let dp = max_diff(proba.iter().flatten(), tf_proba.iter().flatten());
    assert!(dp <= 1e-4, "test probabilities differ by {dp:e}");
}
