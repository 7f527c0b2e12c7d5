//! Arbitrary bytes into `Network::read_safetensors`, in every format.
//!
//! The first byte picks the network and the format, the rest is the file. Invariants:
//! - no panic, whatever the bytes;
//! - `Err` leaves the network bit for bit as it was;
//! - `Ok` means the file is exactly the network's tensors (no other name), each `F32`, of the
//!   network's shape in the format's layout, finite, and the network now holds them bit for
//!   bit (checked against the tensors read straight from the file by the safetensors crate,
//!   transposed by hand for the Keras layout);
//! - after an `Ok`, saving in the same format and loading again gives the same network.
#![no_main]

use fusedprop::safetensors::{Format, Layout};
use fusedprop::{Dense, Layer, Network, Relu, SoftmaxCrossEntropy, Tanh, chain, head::Head};
use libfuzzer_sys::fuzz_target;
use safetensors::{Dtype, SafeTensors};

type Iris = chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>];
type Small = chain![Dense<2, 3, Relu>, Dense<3, 2>];

const NAMES: [(&str, &str); 2] = [("fc1.weight", "fc1.bias"), ("fc2.weight", "fc2.bias")];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let format = match pick % 4 {
        0 => Format::TORCH,
        1 => Format::KERAS,
        2 => Format::TORCH.with_names(&NAMES),
        _ => Format::KERAS.with_names(&NAMES),
    };
    let given = if pick % 4 >= 2 {
        Some(&NAMES[..])
    } else {
        None
    };
    let seed = u64::from(pick / 8);
    // Iris (4-16-8-3) for the two plain formats, the two-layer network for all four.
    if pick % 8 < 2 {
        check(
            Network::<Iris, SoftmaxCrossEntropy>::new(seed),
            file,
            format,
            given,
        );
    } else {
        check(
            Network::<Small, SoftmaxCrossEntropy>::new(seed),
            file,
            format,
            given,
        );
    }
});

fn params<L: Layer, H: Head<L::Out>>(net: &Network<L, H>) -> Vec<u32> {
    let mut p = vec![0.0; L::PARAMS];
    net.write_params(&mut p).unwrap();
    p.iter().map(|v| v.to_bits()).collect()
}

fn check<L: Layer, H: Head<L::Out>>(
    mut net: Network<L, H>,
    file: &[u8],
    format: Format<'_>,
    given: Option<&[(&str, &str)]>,
) {
    let before = params(&net);
    match net.read_safetensors(file, format) {
        Err(e) => {
            assert_eq!(params(&net), before, "{e}: the network changed");
            assert!(!e.to_string().is_empty());
        }
        Ok(()) => {
            let st = SafeTensors::deserialize(file).expect("accepted, so a valid file");
            let got = params(&net);
            let mut at = 0;
            let mut layer = 0;
            let mut wanted = Vec::new();
            net.visit_layers(|info, _| {
                let (i, o) = (info.inputs, info.outputs);
                let (wn, bn) = match (given, format.layout()) {
                    (Some(n), _) => (n[layer].0.to_string(), n[layer].1.to_string()),
                    (None, Layout::OutIn) => (
                        format!("{}.weight", 2 * layer),
                        format!("{}.bias", 2 * layer),
                    ),
                    (None, Layout::InOut) if layer == 0 => {
                        ("dense/kernel".into(), "dense/bias".into())
                    }
                    (None, Layout::InOut) => (
                        format!("dense_{layer}/kernel"),
                        format!("dense_{layer}/bias"),
                    ),
                };
                let w = st.tensor(&wn).expect("weight in the file");
                let b = st.tensor(&bn).expect("bias in the file");
                assert_eq!((w.dtype(), b.dtype()), (Dtype::F32, Dtype::F32));
                let shape = if format.layout() == Layout::OutIn {
                    [o, i]
                } else {
                    [i, o]
                };
                assert_eq!(w.shape(), shape);
                assert_eq!(b.shape(), [o]);
                let val = |d: &[u8], k: usize| {
                    u32::from_le_bytes(d[4 * k..4 * k + 4].try_into().unwrap())
                };
                for j in 0..o {
                    for k in 0..i {
                        let file_index = if format.layout() == Layout::OutIn {
                            j * i + k
                        } else {
                            k * o + j
                        };
                        let v = val(w.data(), file_index);
                        assert!(f32::from_bits(v).is_finite());
                        assert_eq!(got[at + j * i + k], v, "weight [{j}][{k}] of layer {layer}");
                    }
                }
                at += i * o;
                for j in 0..o {
                    let v = val(b.data(), j);
                    assert!(f32::from_bits(v).is_finite());
                    assert_eq!(got[at + j], v);
                }
                at += o;
                wanted.push(wn);
                wanted.push(bn);
                layer += 1;
            });
            let mut names: Vec<&str> = st.names();
            names.sort_unstable();
            wanted.sort_unstable();
            assert_eq!(names, wanted, "exactly the network's tensors");
            let again = net.to_safetensors(format).expect("a loaded network saves");
            let mut back = net.clone();
            back.init_glorot(99);
            back.read_safetensors(&again, format)
                .expect("a saved network loads");
            assert_eq!(params(&back), got);
        }
    }
}
