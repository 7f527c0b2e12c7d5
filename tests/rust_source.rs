//! `Network::to_rust_source`: a trained model written as Rust source compiles into a `static`
//! that is bit for bit the model.
//!
//! The files in `tests/generated/` are that source, committed and `include!`d here, so this
//! test compiles them: `MODEL` is PyTorch's Iris network (`tests/fixtures/`, read with the
//! safetensors loader, so the same bits on every target, FMA or not), `EDGE` a network of
//! every other activation with the values a decimal must keep exactly (signed zeros,
//! subnormals, the extremes of `f32`). Each test checks the `static` equals the network bit
//! for bit and that writing the network again gives the committed file, byte for byte.
//!
//! After a deliberate change of the output, regenerate the files with
//!
//! ```sh
//! FUSEDPROP_REGENERATE=1 cargo test --features safetensors --test rust_source
//! ```

use fusedprop::safetensors::Format;
use fusedprop::{
    BinaryCrossEntropy, Chain, Dense, Gelu, Layer, LeakyRelu, MeanSquaredError, Network, Relu,
    Sigmoid, Silu, SoftmaxCrossEntropy, Tanh, chain, head::Head,
};

include!("generated/iris_tanh_relu.rs");
include!("generated/edge.rs");
include!("generated/tiny.rs");

fn bits<L: Layer, H: Head<L::Out>>(net: &Network<L, H>) -> Vec<u32> {
    let mut p = vec![0.0; L::PARAMS];
    net.write_params(&mut p).unwrap();
    p.iter().map(|v| v.to_bits()).collect()
}

/// Compares `net`'s source with the committed file (or writes it, to regenerate).
fn same_source<L: Layer, H: Head<L::Out>>(net: &Network<L, H>, name: &str, file: &str) {
    let src = net.to_rust_source(name).unwrap();
    let path = format!("{}/tests/generated/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("FUSEDPROP_REGENERATE").is_some() {
        std::fs::write(&path, &src).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        src == committed,
        "{file} is not what to_rust_source writes now; regenerate it (see this test's docs)"
    );
}

type Iris =
    Network<chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>], SoftmaxCrossEntropy>;

fn iris() -> Iris {
    let path = format!(
        "{}/tests/fixtures/torch_iris_tanh_relu.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut net = Iris::ZERO;
    net.load_safetensors(path, Format::TORCH).unwrap();
    net
}

#[test]
fn pytorchs_iris_model_as_a_static_is_bit_for_bit() {
    let net = iris();
    same_source(&net, "MODEL", "iris_tanh_relu.rs");
    assert_eq!(bits(&MODEL), bits(&net));
    assert!(MODEL == net);
    // And it predicts as the network does.
    for x in [
        [5.1, 3.5, 1.4, 0.2],
        [6.2, 2.9, 4.3, 1.3],
        [7.7, 3.0, 6.1, 2.3],
    ] {
        assert_eq!(MODEL.predict_one(&x).unwrap(), net.predict_one(&x).unwrap());
    }
    let x = [
        [5.1, 3.5, 1.4, 0.2],
        [6.2, 2.9, 4.3, 1.3],
        [7.7, 3.0, 6.1, 2.3],
    ];
    let mut c = [0; 3];
    MODEL.predict(&x, &mut c).unwrap();
    assert_eq!(c, [0, 1, 2]);
}

type Edge = chain![
    Dense<3, 5, LeakyRelu>,
    Dense<5, 4, Sigmoid>,
    Dense<4, 6, Silu>,
    Dense<6, 2, Gelu>
];

/// Glorot weights with the awkward values put in, deterministic on every target.
fn edge() -> Network<Edge, MeanSquaredError> {
    let mut net = Network::<Edge, MeanSquaredError>::from_layers(
        Chain(
            Dense::zero_with(LeakyRelu::new_const(0.3)),
            Chain(Dense::ZERO, Chain(Dense::ZERO, Dense::ZERO)),
        ),
        MeanSquaredError,
    );
    net.init_glorot(12);
    let mut p = vec![0.0; <Edge as Layer>::PARAMS];
    net.write_params(&mut p).unwrap();
    let awkward = [
        -0.0,
        0.0,
        1e-45,
        -1e-45,
        1.1754942e-38, // the largest subnormal
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        f32::EPSILON,
        0.1,
        -1.0 / 3.0,
        16777217.0, // rounds to 2^24
        core::f32::consts::PI,
        1.0e-7,
        123456.79,
    ];
    for (v, a) in p.iter_mut().step_by(2).zip(awkward) {
        *v = a;
    }
    net.read_params(&p).unwrap();
    net
}

#[test]
fn awkward_values_and_every_activation_round_trip() {
    let net = edge();
    same_source(&net, "EDGE", "edge.rs");
    assert_eq!(bits(&EDGE), bits(&net));
    assert_eq!(EDGE.layers().0.activation().slope(), 0.3);
    let tiny = Network::<Dense<2, 1>, BinaryCrossEntropy>::new(5);
    same_source(&tiny, "TINY", "tiny.rs");
    assert_eq!(bits(&TINY), bits(&tiny));
}

#[test]
fn non_finite_weights_are_not_written() {
    let net = Network::<Dense<2, 2>, SoftmaxCrossEntropy>::from_layers(
        Dense::from_parts([[0.0, f32::NAN], [0.0; 2]], [0.0; 2], fusedprop::Linear),
        SoftmaxCrossEntropy,
    );
    assert_eq!(
        net.to_rust_source("BAD").unwrap_err(),
        fusedprop::Error::NonFinite {
            what: "weight",
            index: Some(1)
        }
    );
}
