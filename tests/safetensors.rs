//! Safetensors in and out (feature `safetensors`): any network saved and loaded back bit for
//! bit in every format; PyTorch's `state_dict` of the Iris fixture (`tests/fixtures/`, copied
//! from the project's shared fixtures) giving PyTorch's logits within 1e-5; and every kind of
//! bad file refused with the error that says what is wrong, the network bit for bit unchanged.

use fusedprop::safetensors::{Format, Layout, SafetensorsError};
use fusedprop::{
    BinaryCrossEntropy, Dense, Gelu, Layer, LeakyRelu, MeanSquaredError, Network, Relu, Sigmoid,
    Silu, SoftmaxCrossEntropy, Tanh, chain, head::Head,
};
use serde_json::Value;

type Iris =
    Network<chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>], SoftmaxCrossEntropy>;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).expect("fixture readable")
}

fn bits<L: Layer, H: Head<L::Out>>(net: &Network<L, H>) -> Vec<u32> {
    let mut p = vec![0.0; L::PARAMS];
    net.write_params(&mut p).unwrap();
    p.iter().map(|v| v.to_bits()).collect()
}

/// Parameters with the awkward values a file must keep exactly: signed zeros, subnormals, the
/// extremes of `f32`, and Glorot weights.
fn edgy<L: Layer, H: Head<L::Out>>(net: &mut Network<L, H>) {
    let edge = [
        -0.0,
        0.0,
        1e-45,
        -1e-45,
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        f32::EPSILON,
        0.1,
        -1.0 / 3.0,
    ];
    let mut p = vec![0.0; L::PARAMS];
    net.write_params(&mut p).unwrap();
    for (v, e) in p.iter_mut().step_by(3).zip(edge.iter().cycle()) {
        *v = *e;
    }
    net.read_params(&p).unwrap();
}

fn round_trip<L: Layer, H: Head<L::Out>>(net: &Network<L, H>, blank: Network<L, H>) {
    let names: Vec<(String, String)> = (0..L::DEPTH)
        .map(|i| (format!("layer{i}.w"), format!("layer{i}.b")))
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    for format in [
        Format::TORCH,
        Format::KERAS,
        Format::TORCH.with_names(&pairs),
        Format::KERAS.with_names(&pairs),
    ] {
        let file = net.to_safetensors(format).unwrap();
        let mut back = blank.clone();
        back.read_safetensors(&file, format).unwrap();
        assert_eq!(bits(&back), bits(net), "{format:?}");
        // Saving again gives the same bytes.
        assert_eq!(back.to_safetensors(format).unwrap(), file);
    }
}

#[test]
fn any_network_round_trips_bit_for_bit() {
    let mut a = Iris::new(3);
    edgy(&mut a);
    round_trip(&a, Iris::ZERO);

    type Deep = chain![Dense<5, 9, Sigmoid>, Dense<9, 17, Silu>, Dense<17, 4, Gelu>, Dense<4, 1>];
    let mut b = Network::<Deep, MeanSquaredError>::new(11);
    edgy(&mut b);
    round_trip(&b, Network::ZERO);

    let mut c = Network::<Dense<33, 2>, BinaryCrossEntropy>::new(5);
    edgy(&mut c);
    round_trip(&c, Network::ZERO);

    type Leaky = chain![Dense<3, 7, LeakyRelu>, Dense<7, 2>];
    let leaky = || {
        Network::<Leaky, SoftmaxCrossEntropy>::from_layers(
            fusedprop::Chain(Dense::zero_with(LeakyRelu::new_const(0.2)), Dense::ZERO),
            SoftmaxCrossEntropy,
        )
    };
    let mut d = leaky();
    d.init_glorot(9);
    edgy(&mut d);
    round_trip(&d, leaky());
}

#[test]
fn formats_name_and_lay_out_the_tensors() {
    let net = Network::<chain![Dense<2, 3, Relu>, Dense<3, 1>], MeanSquaredError>::new(4);
    let header = |file: &[u8]| -> Value {
        let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        serde_json::from_slice(&file[8..8 + n]).unwrap()
    };
    let torch = header(&net.to_safetensors(Format::TORCH).unwrap());
    assert_eq!(torch["0.weight"]["shape"], serde_json::json!([3, 2]));
    assert_eq!(torch["0.bias"]["shape"], serde_json::json!([3]));
    assert_eq!(torch["2.weight"]["shape"], serde_json::json!([1, 3]));
    assert_eq!(torch["2.weight"]["dtype"], "F32");
    assert_eq!(torch["__metadata__"]["format"], "pt");
    let keras = header(&net.to_safetensors(Format::KERAS).unwrap());
    assert_eq!(keras["dense/kernel"]["shape"], serde_json::json!([2, 3]));
    assert_eq!(keras["dense_1/kernel"]["shape"], serde_json::json!([3, 1]));
    assert_eq!(keras["dense_1/bias"]["shape"], serde_json::json!([1]));
    assert_eq!(Format::KERAS.layout(), Layout::InOut);
    // The Keras kernel is the transpose: element [k][j] is weight [j][k].
    let file = net.to_safetensors(Format::KERAS).unwrap();
    let h = header(&file);
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let off = h["dense/kernel"]["data_offsets"][0].as_u64().unwrap() as usize;
    let data = &file[8 + n + off..];
    let k = |i: usize| f32::from_le_bytes(data[4 * i..4 * i + 4].try_into().unwrap());
    let w = net.layers().0.weights();
    for (j, row) in w.iter().enumerate() {
        for (kk, v) in row.iter().enumerate() {
            assert_eq!(k(kk * 3 + j).to_bits(), v.to_bits());
        }
    }
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

/// `safetensors.torch.save_file(model.state_dict())` of a trained PyTorch
/// `Sequential(Linear(4, 16), Tanh(), Linear(16, 8), ReLU(), Linear(8, 3))`: PyTorch's logits
/// within 1e-5 and its classes on the 30 test rows.
#[test]
fn pytorch_state_dict_gives_pytorchs_logits() {
    let mut net = Iris::ZERO;
    net.read_safetensors(&fixture("torch_iris_tanh_relu.safetensors"), Format::TORCH)
        .expect("PyTorch's file loads");
    let path = format!(
        "{}/tests/fixtures/torch_iris_tanh_relu.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut from_path = Iris::ZERO;
    from_path.load_safetensors(&path, Format::TORCH).unwrap();
    assert!(from_path == net);

    let fx: Value =
        serde_json::from_slice(&fixture("torch_iris_tanh_relu.json")).expect("fixture parses");
    let x: Vec<[f32; 4]> = fx["x_test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| floats(r).try_into().unwrap())
        .collect();
    let want = floats(&fx["test_logits"]);
    let mut z = vec![[0.0f32; 3]; x.len()];
    net.outputs(&x, &mut z).unwrap();
    let worst = z
        .iter()
        .flatten()
        .zip(&want)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-5, "logits differ from PyTorch's by {worst}");
    for (row, (xr, zr)) in x.iter().zip(want.chunks(3)).enumerate() {
        let class = (0..3).fold(0, |b, j| if zr[j] > zr[b] { j } else { b }) as u32;
        assert_eq!(net.predict_one(xr).unwrap(), class, "row {row}");
    }

    // Saved again in PyTorch's format, it loads back to the same network.
    let again = net.to_safetensors(Format::TORCH).unwrap();
    let mut back = Iris::new(1);
    back.read_safetensors(&again, Format::TORCH).unwrap();
    assert_eq!(bits(&back), bits(&net));
}

/// A safetensors file written by hand: `(name, dtype, shape, bytes)`.
fn file(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            (*name).to_string(),
            serde_json::json!({
                "dtype": dtype,
                "shape": shape,
                "data_offsets": [data.len(), data.len() + bytes.len()],
            }),
        );
        data.extend_from_slice(bytes);
    }
    let h = serde_json::to_vec(&Value::Object(header)).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

type Small = Network<chain![Dense<2, 3, Relu>, Dense<3, 2>], SoftmaxCrossEntropy>;

/// The tensors of a `Small` in PyTorch's format, with `edit` applied.
fn small_file(
    edit: impl FnOnce(&mut Vec<(&'static str, &'static str, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let mut t = vec![
        ("0.weight", "F32", vec![3, 2], f32s(&[0.5; 6])),
        ("0.bias", "F32", vec![3], f32s(&[0.25; 3])),
        ("2.weight", "F32", vec![2, 3], f32s(&[-0.5; 6])),
        ("2.bias", "F32", vec![2], f32s(&[0.0; 2])),
    ];
    edit(&mut t);
    file(&t)
}

/// Loads `bytes` into a Glorot network, checks it refuses and is unchanged, returns the error.
fn refused(bytes: &[u8]) -> SafetensorsError {
    refused_as(bytes, Format::TORCH)
}

fn refused_as(bytes: &[u8], format: Format<'_>) -> SafetensorsError {
    let mut net = Small::new(8);
    let before = bits(&net);
    let e = net.read_safetensors(bytes, format).unwrap_err();
    assert_eq!(bits(&net), before, "{e}: the network changed");
    // Every error reads as a sentence.
    assert!(!e.to_string().is_empty());
    e
}

#[test]
fn a_good_hand_written_file_loads() {
    let mut net = Small::new(8);
    net.read_safetensors(&small_file(|_| ()), Format::TORCH)
        .unwrap();
    let mut p = [0.0; 17];
    net.write_params(&mut p).unwrap();
    assert_eq!(&p[..6], &[0.5; 6]);
    assert_eq!(&p[6..9], &[0.25; 3]);
    assert_eq!(&p[9..15], &[-0.5; 6]);
}

#[test]
fn truncated_files_are_refused() {
    let good = small_file(|_| ());
    for len in [0, 1, 7] {
        match refused(&good[..len]) {
            SafetensorsError::Truncated { needed: 8, len: l } => assert_eq!(l, len),
            e => panic!("{len} bytes: {e:?}"),
        }
    }
    // Cut inside the data: the header says how long the file should be.
    for cut in [1, 4, 17 * 4 - 1] {
        let short = &good[..good.len() - cut];
        match refused(short) {
            SafetensorsError::Truncated { needed, len } => {
                assert_eq!((needed, len), (good.len() as u64, short.len()));
            }
            e => panic!("cut {cut}: {e:?}"),
        }
    }
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        refused(&long),
        SafetensorsError::TrailingBytes { expected, len } if expected == good.len() as u64 && len == long.len()
    ));
}

#[test]
fn a_header_length_past_the_end_is_refused() {
    let mut bad = small_file(|_| ());
    let len = bad.len();
    bad[..8].copy_from_slice(&(len as u64).to_le_bytes());
    assert!(matches!(
        refused(&bad),
        SafetensorsError::HeaderPastEnd { header_len, len: l } if header_len == len as u64 && l == len
    ));
    bad[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = refused(&bad);
    assert!(matches!(
        e,
        SafetensorsError::HeaderPastEnd {
            header_len: u64::MAX,
            ..
        }
    ));
    assert!(e.to_string().contains("past the end"), "{e}");
}

#[test]
fn a_header_that_is_not_the_format_is_refused() {
    for header in [
        &b"not json"[..],
        b"{\"0.weight\": 3}",
        b"{\"0.weight\": {\"dtype\": \"F32\", \"shape\": [3, 2], \"data_offsets\": [0, 20]}}",
        b"\xff\xfe{}",
    ] {
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header);
        f.extend_from_slice(&[0; 24]);
        match refused(&f) {
            SafetensorsError::InvalidHeader(_)
            | SafetensorsError::Truncated { .. }
            | SafetensorsError::TrailingBytes { .. } => {}
            e => panic!("{e:?}"),
        }
    }
    // Overlapping offsets.
    let f = small_file(|_| ());
    let n = u64::from_le_bytes(f[..8].try_into().unwrap()) as usize;
    let text = std::str::from_utf8(&f[8..8 + n])
        .unwrap()
        .replacen("[24,36]", "[20,32]", 1);
    assert!(text.contains("[20,32]"));
    let mut g = (text.len() as u64).to_le_bytes().to_vec();
    g.extend(text.as_bytes());
    g.extend(&f[8 + n..]);
    assert!(matches!(refused(&g), SafetensorsError::InvalidHeader(_)));
}

#[test]
fn a_wrong_dtype_is_refused() {
    for (dtype, bytes) in [("F64", 8), ("F16", 2), ("BF16", 2), ("I32", 4)] {
        let f = small_file(|t| t[2] = ("2.weight", dtype, vec![2, 3], vec![0; 6 * bytes]));
        match refused(&f) {
            SafetensorsError::Dtype { name, found } => {
                assert_eq!((name.as_str(), found.as_str()), ("2.weight", dtype));
            }
            e => panic!("{dtype}: {e:?}"),
        }
    }
}

#[test]
fn a_wrong_shape_is_refused() {
    // Transposed (a Keras kernel read as PyTorch's), flat, and too big.
    for shape in [vec![2, 3], vec![6], vec![1, 3, 2]] {
        let f = small_file(|t| t[0].2 = shape.clone());
        match refused(&f) {
            SafetensorsError::Shape {
                name,
                expected,
                found,
            } => {
                assert_eq!(name, "0.weight");
                assert_eq!((expected, found), (vec![3, 2], shape));
            }
            e => panic!("{e:?}"),
        }
    }
    let f = small_file(|t| t[3] = ("2.bias", "F32", vec![3], f32s(&[0.0; 3])));
    assert!(matches!(refused(&f), SafetensorsError::Shape { name, .. } if name == "2.bias"));
}

#[test]
fn missing_and_unexpected_tensors_are_refused() {
    let f = small_file(|t| {
        t.remove(3);
    });
    let e = refused(&f);
    assert!(
        matches!(&e, SafetensorsError::MissingTensor { name, found } if name == "2.bias" && found.len() == 3),
        "{e:?}"
    );
    assert!(e.to_string().contains("`0.bias`"), "{e}");
    let f = small_file(|t| t.push(("4.weight", "F32", vec![1], f32s(&[1.0]))));
    assert!(
        matches!(refused(&f), SafetensorsError::UnexpectedTensor { name } if name == "4.weight")
    );
    // A file of another format.
    let keras = Small::new(1).to_safetensors(Format::KERAS).unwrap();
    assert!(
        matches!(refused(&keras), SafetensorsError::MissingTensor { name, .. } if name == "0.weight")
    );
    let empty = file(&[]);
    assert!(
        matches!(refused(&empty), SafetensorsError::MissingTensor { name, found } if name == "0.weight" && found.is_empty())
    );
}

#[test]
fn non_finite_weights_are_refused() {
    for (v, at) in [(f32::NAN, 4), (f32::INFINITY, 0), (f32::NEG_INFINITY, 5)] {
        let mut w = [-0.5f32; 6];
        w[at] = v;
        let f = small_file(|t| t[2].3 = f32s(&w));
        match refused(&f) {
            SafetensorsError::NonFinite { name, index, value } => {
                assert_eq!((name.as_str(), index), ("2.weight", at));
                assert_eq!(value.to_bits(), v.to_bits());
            }
            e => panic!("{e:?}"),
        }
    }
    // In a Keras kernel the index is the file's, [in][out].
    let net = Small::new(1);
    let mut k = net.layers().0.keras_kernel();
    k[1][2] = f32::NAN;
    let bias = *net.layers().0.bias();
    let f = file(&[
        ("dense/kernel", "F32", vec![2, 3], f32s(k.as_flattened())),
        ("dense/bias", "F32", vec![3], f32s(&bias)),
        (
            "dense_1/kernel",
            "F32",
            vec![3, 2],
            f32s(net.layers().1.keras_kernel().as_flattened()),
        ),
        ("dense_1/bias", "F32", vec![2], f32s(net.layers().1.bias())),
    ]);
    assert!(matches!(
        refused_as(&f, Format::KERAS),
        SafetensorsError::NonFinite { name, index: 5, .. } if name == "dense/kernel"
    ));
    // Saving refuses a network that could not be loaded back.
    let net = Small::from_layers(
        fusedprop::Chain(
            Dense::from_parts([[0.0; 2]; 3], [0.0; 3], Relu),
            Dense::from_parts(
                [[0.0, f32::INFINITY, 0.0], [0.0; 3]],
                [0.0; 2],
                fusedprop::Linear,
            ),
        ),
        SoftmaxCrossEntropy,
    );
    for (format, name, index) in [
        (Format::TORCH, "2.weight", 1),
        (Format::KERAS, "dense_1/kernel", 2),
    ] {
        match net.to_safetensors(format).unwrap_err() {
            SafetensorsError::NonFinite {
                name: n, index: i, ..
            } => assert_eq!((n.as_str(), i), (name, index)),
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn names_that_do_not_fit_are_refused() {
    let good = small_file(|_| ());
    let e = refused_as(&good, Format::TORCH.with_names(&[("0.weight", "0.bias")]));
    assert!(matches!(
        e,
        SafetensorsError::NameCount {
            expected: 2,
            found: 1
        }
    ));
    let e = refused_as(
        &good,
        Format::TORCH.with_names(&[("0.weight", "0.bias"), ("0.weight", "2.bias")]),
    );
    assert!(matches!(e, SafetensorsError::DuplicateName { name } if name == "0.weight"));
    // A mapping for a model that is not a Sequential.
    let names = [("fc1.weight", "fc1.bias"), ("fc2.weight", "fc2.bias")];
    let f = small_file(|t| {
        for (e, n) in t
            .iter_mut()
            .zip(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        {
            e.0 = n;
        }
    });
    let mut net = Small::ZERO;
    net.read_safetensors(&f, Format::TORCH.with_names(&names))
        .unwrap();
    let mut plain = Small::ZERO;
    plain.read_safetensors(&good, Format::TORCH).unwrap();
    assert!(net == plain);
}

#[test]
fn io_errors_are_reported() {
    let mut net = Small::new(1);
    let e = net
        .load_safetensors("/nonexistent/fusedprop.safetensors", Format::TORCH)
        .unwrap_err();
    assert!(matches!(e, SafetensorsError::Io(_)));
    assert!(std::error::Error::source(&e).is_some());
}
