//! Weights in and out as [safetensors](https://huggingface.co/docs/safetensors) files (feature
//! `safetensors`, which implies `std`): save any [`Network`] and load it back bit for bit, load
//! the `state_dict` of a PyTorch `nn.Sequential`, or a Keras model's weights.
//!
//! ```
//! use fusedprop::safetensors::Format;
//! use fusedprop::{chain, Dense, Network, Relu, SoftmaxCrossEntropy, Tanh};
//!
//! type Net = Network<chain![Dense<4, 16, Tanh>, Dense<16, 8, Relu>, Dense<8, 3>], SoftmaxCrossEntropy>;
//! let net = Net::new(7);
//! let bytes = net.to_safetensors(Format::TORCH)?; // `0.weight` [16, 4], `0.bias` [16], `2.weight` ...
//! let mut back = Net::ZERO;
//! back.read_safetensors(&bytes, Format::TORCH)?;
//! assert!(back == net);
//! # Ok::<(), fusedprop::safetensors::SafetensorsError>(())
//! ```
//!
//! # Names and layouts
//! A [`Format`] says what the tensors are called and how a weight matrix is laid out:
//!
//! | format | names, dense layer `i` = 0, 1, 2 ... | weight tensor |
//! |---|---|---|
//! | [`Format::TORCH`] | `{2i}.weight`, `{2i}.bias`: `0.weight`, `0.bias`, `2.weight` ... | `[out, in]` |
//! | [`Format::KERAS`] | `dense/kernel`, `dense/bias`, `dense_1/kernel`, `dense_1/bias` ... | `[in, out]` |
//! | [`Format::with_names`] | the pairs `(weight, bias)` given, one per dense layer | as the format's |
//!
//! [`Format::TORCH`] is the `state_dict` of an
//! `nn.Sequential(Linear, activation, Linear, activation, ..., Linear)`: PyTorch numbers the
//! modules of a `Sequential`, and the activations, which have no parameters, take the odd
//! indices. A file saved here with it loads into such a model with `load_state_dict`:
//!
//! ```python
//! import torch
//! from safetensors.torch import load_file, save_file
//! model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(),
//!                             torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
//! model.load_state_dict(load_file("model.safetensors"))     # a file saved by fusedprop
//! save_file(model.state_dict(), "model.safetensors")         # a file for fusedprop
//! ```
//!
//! A model that is not a `Sequential`, or one with other modules between its linear layers
//! (dropout shifts the indices), names its tensors after its attributes: give the names with
//! [`Format::with_names`], e.g. `Format::TORCH.with_names(&[("fc1.weight", "fc1.bias"),
//! ("fc2.weight", "fc2.bias")])`.
//!
//! Keras has no safetensors writer of its own; these lines write a `Sequential` of `Dense`
//! layers in [`Format::KERAS`] (kernels as Keras keeps them, `[in, out]`):
//!
//! ```python
//! from safetensors.numpy import save_file
//! tensors = {}
//! for i, layer in enumerate(l for l in model.layers if l.get_weights()):
//!     name = "dense" if i == 0 else f"dense_{i}"
//!     kernel, bias = layer.get_weights()
//!     tensors[f"{name}/kernel"] = kernel.astype("float32")
//!     tensors[f"{name}/bias"] = bias.astype("float32")
//! save_file(tensors, "model.safetensors")
//! ```
//!
//! and back, into a Keras model of the same shape:
//!
//! ```python
//! from safetensors.numpy import load_file
//! t = load_file("model.safetensors")
//! for i, layer in enumerate(l for l in model.layers if l.get_weights()):
//!     name = "dense" if i == 0 else f"dense_{i}"
//!     layer.set_weights([t[f"{name}/kernel"], t[f"{name}/bias"]])
//! ```
//!
//! # What a file must hold
//! Exactly the network's tensors, each `F32` (little-endian, as safetensors stores it) and of
//! the network's shape, every value finite; metadata (`__metadata__`) is ignored. Anything
//! else is an error that names the tensor and what is wrong ([`SafetensorsError`]):
//! a truncated file, a header length past the end of the file, a header that is not the
//! format's JSON, a missing or unexpected tensor, another dtype (`F64`, `F16`, `BF16` ... are
//! refused, not converted: convert with `.float()` or `.astype("float32")` before saving), a
//! wrong shape, a NaN or infinite value. Every tensor is checked before the first weight is
//! written, so on error the network is bit for bit as it was; no input makes the loader panic
//! (fuzz target `safetensors`).
//!
//! Every dense layer here has a bias: a PyTorch `Linear(..., bias=False)` or Keras
//! `Dense(..., use_bias=False)` has no bias tensor to load; save zeros for it.
//!
//! The data is little-endian `f32`, read and written with `from_le_bytes` / `to_le_bytes`, so
//! files are the same on every target.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use ::safetensors::tensor::{Metadata, TensorView};
use ::safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::head::Head;
use crate::layer::{ActivationF64, Layer, LayerInfo};
use crate::network::Network;

/// How a weight matrix is laid out in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[out, in]`, one row per output: PyTorch's `Linear.weight`, and this crate's own.
    OutIn,
    /// `[in, out]`, one row per input: Keras's `Dense` kernel.
    InOut,
}

/// The names of a network's tensors in a file and the layout of its weights (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format<'a> {
    layout: Layout,
    names: Names<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names<'a> {
    Torch,
    Keras,
    Given(&'a [(&'a str, &'a str)]),
}

impl Format<'static> {
    /// PyTorch's `nn.Sequential` with an activation between linear layers: `0.weight`
    /// `[out, in]`, `0.bias`, `2.weight`, `2.bias` ...
    pub const TORCH: Self = Format {
        layout: Layout::OutIn,
        names: Names::Torch,
    };

    /// Keras's default names of the `Dense` layers of a first model: `dense/kernel`
    /// `[in, out]`, `dense/bias`, `dense_1/kernel`, `dense_1/bias` ...
    pub const KERAS: Self = Format {
        layout: Layout::InOut,
        names: Names::Keras,
    };
}

impl<'a> Format<'a> {
    /// The same layout with the names given: one `(weight, bias)` pair per dense layer, in
    /// order (for models that are not an `nn.Sequential`, e.g. `("fc1.weight", "fc1.bias")`).
    #[must_use]
    pub const fn with_names<'b>(self, names: &'b [(&'b str, &'b str)]) -> Format<'b> {
        Format {
            layout: self.layout,
            names: Names::Given(names),
        }
    }

    /// The layout of the weight matrices.
    #[must_use]
    pub const fn layout(&self) -> Layout {
        self.layout
    }

    /// The names of the weight and bias of dense layer `i`.
    fn names(&self, i: usize) -> (Cow<'a, str>, Cow<'a, str>) {
        match self.names {
            Names::Torch => (
                Cow::Owned(std::format!("{}.weight", 2 * i)),
                Cow::Owned(std::format!("{}.bias", 2 * i)),
            ),
            Names::Keras if i == 0 => (Cow::Borrowed("dense/kernel"), Cow::Borrowed("dense/bias")),
            Names::Keras => (
                Cow::Owned(std::format!("dense_{i}/kernel")),
                Cow::Owned(std::format!("dense_{i}/bias")),
            ),
            Names::Given(n) => (Cow::Borrowed(n[i].0), Cow::Borrowed(n[i].1)),
        }
    }

    /// Every tensor's name for a network of `depth` dense layers, weight then bias, layer by
    /// layer; checks a list of names given fits and has no name twice.
    fn all_names(&self, depth: usize) -> Result<Vec<Cow<'a, str>>, SafetensorsError> {
        if let Names::Given(n) = self.names
            && n.len() != depth
        {
            return Err(SafetensorsError::NameCount {
                expected: depth,
                found: n.len(),
            });
        }
        let mut all = Vec::with_capacity(2 * depth);
        for i in 0..depth {
            let (w, b) = self.names(i);
            all.push(w);
            all.push(b);
        }
        let mut seen = HashSet::with_capacity(all.len());
        for n in &all {
            if !seen.insert(n.as_ref()) {
                return Err(SafetensorsError::DuplicateName {
                    name: n.to_string(),
                });
            }
        }
        Ok(all)
    }

    /// The shape of dense layer `info`'s weight in this layout.
    fn weight_shape(&self, info: &LayerInfo) -> [usize; 2] {
        match self.layout {
            Layout::OutIn => [info.outputs, info.inputs],
            Layout::InOut => [info.inputs, info.outputs],
        }
    }
}

/// What is wrong with a safetensors file, or with saving one. Every variant that concerns a
/// tensor names it.
#[derive(Debug)]
#[non_exhaustive]
pub enum SafetensorsError {
    /// The file ends before what its header describes: `len` bytes where `needed` are (8 for
    /// the header's length itself).
    Truncated {
        /// The bytes the file needs.
        needed: u64,
        /// The bytes it has.
        len: usize,
    },
    /// The header's length (the first 8 bytes, little-endian) points past the end of the file.
    HeaderPastEnd {
        /// The header length the file gives.
        header_len: u64,
        /// The bytes of the file.
        len: usize,
    },
    /// The file goes on after the last tensor's data.
    TrailingBytes {
        /// The bytes the header describes.
        expected: u64,
        /// The bytes of the file.
        len: usize,
    },
    /// The header is not a valid safetensors header (not UTF-8 JSON of the format, offsets
    /// that overlap, leave gaps or disagree with a shape ...): the safetensors crate's words.
    InvalidHeader(String),
    /// A tensor the network needs is not in the file.
    MissingTensor {
        /// Its name.
        name: String,
        /// The names of the tensors the file has, sorted (to see which format it is in).
        found: Vec<String>,
    },
    /// The file has a tensor the network does not have.
    UnexpectedTensor {
        /// Its name.
        name: String,
    },
    /// A tensor is not `F32`.
    Dtype {
        /// Its name.
        name: String,
        /// Its dtype as safetensors writes it (`"F64"`, `"F16"`, `"BF16"`, `"I64"` ...).
        found: String,
    },
    /// A tensor does not have the network's shape.
    Shape {
        /// Its name.
        name: String,
        /// The shape the network needs (`[out, in]` or `[in, out]` for a weight, `[out]` for a
        /// bias).
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A value is NaN or infinite.
    NonFinite {
        /// The tensor's name.
        name: String,
        /// The value's index in the tensor, row-major as in the file.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A list of names ([`Format::with_names`]) has not one pair per dense layer.
    NameCount {
        /// The dense layers of the network.
        expected: usize,
        /// The pairs given.
        found: usize,
    },
    /// A list of names ([`Format::with_names`]) has a name twice.
    DuplicateName {
        /// The name.
        name: String,
    },
    /// Reading or writing the file failed.
    Io(std::io::Error),
}

impl fmt::Display for SafetensorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SafetensorsError::Truncated { needed, len } => write!(
                f,
                "safetensors file truncated: {len} bytes where its header needs {needed}"
            ),
            SafetensorsError::HeaderPastEnd { header_len, len } => write!(
                f,
                "safetensors header length {header_len} points past the end of a file of {len} bytes"
            ),
            SafetensorsError::TrailingBytes { expected, len } => write!(
                f,
                "safetensors file of {len} bytes goes on after the {expected} bytes its header describes"
            ),
            SafetensorsError::InvalidHeader(m) => write!(f, "invalid safetensors header: {m}"),
            SafetensorsError::MissingTensor { name, found } => {
                write!(f, "tensor `{name}` is missing; the file has ")?;
                if found.is_empty() {
                    return f.write_str("no tensors");
                }
                for (i, n) in found.iter().enumerate() {
                    write!(f, "{}`{n}`", if i == 0 { "" } else { ", " })?;
                }
                Ok(())
            }
            SafetensorsError::UnexpectedTensor { name } => {
                write!(f, "tensor `{name}` is not a tensor of the network")
            }
            SafetensorsError::Dtype { name, found } => write!(
                f,
                "tensor `{name}` is {found}, not F32 (convert it to float32 before saving)"
            ),
            SafetensorsError::Shape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}` has shape {found:?} where the network needs {expected:?}"
            ),
            SafetensorsError::NonFinite { name, index, value } => {
                write!(
                    f,
                    "tensor `{name}` has the non-finite value {value} at index {index}"
                )
            }
            SafetensorsError::NameCount { expected, found } => write!(
                f,
                "{found} pairs of tensor names for a network of {expected} dense layers"
            ),
            SafetensorsError::DuplicateName { name } => {
                write!(f, "tensor name `{name}` is given twice")
            }
            SafetensorsError::Io(e) => write!(f, "safetensors file: {e}"),
        }
    }
}

impl std::error::Error for SafetensorsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SafetensorsError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for SafetensorsError {
    fn from(e: std::io::Error) -> Self {
        SafetensorsError::Io(e)
    }
}

/// The length of the header length, in bytes.
const N_LEN: usize = 8;

/// Parses a file, turning the safetensors crate's errors into ours.
fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>, SafetensorsError> {
    let Some(head) = bytes.first_chunk::<N_LEN>() else {
        return Err(SafetensorsError::Truncated {
            needed: N_LEN as u64,
            len: bytes.len(),
        });
    };
    let header_len = u64::from_le_bytes(*head);
    if header_len > (bytes.len() - N_LEN) as u64 {
        return Err(SafetensorsError::HeaderPastEnd {
            header_len,
            len: bytes.len(),
        });
    }
    match SafeTensors::deserialize(bytes) {
        Ok(st) => Ok(st),
        Err(SafeTensorError::MetadataIncompleteBuffer) => {
            // The header is valid but its tensors do not end where the file does: say how long
            // the file should be.
            let header = &bytes[N_LEN..N_LEN + header_len as usize];
            let expected = serde_json::from_slice::<Metadata>(header)
                .map(|m| (N_LEN as u64 + header_len).saturating_add(m.data_len() as u64))
                .map_err(|e| SafetensorsError::InvalidHeader(e.to_string()))?;
            if expected > bytes.len() as u64 {
                Err(SafetensorsError::Truncated {
                    needed: expected,
                    len: bytes.len(),
                })
            } else {
                Err(SafetensorsError::TrailingBytes {
                    expected,
                    len: bytes.len(),
                })
            }
        }
        Err(e) => Err(SafetensorsError::InvalidHeader(e.to_string())),
    }
}

/// One tensor checked: `F32`, of `shape`, every value finite; its values.
fn tensor_values(
    st: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, SafetensorsError> {
    let t: TensorView<'_> = st.tensor(name).map_err(|_| {
        let mut found: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        found.sort_unstable();
        SafetensorsError::MissingTensor {
            name: name.to_string(),
            found,
        }
    })?;
    if t.dtype() != Dtype::F32 {
        return Err(SafetensorsError::Dtype {
            name: name.to_string(),
            found: t.dtype().to_string(),
        });
    }
    if t.shape() != shape {
        return Err(SafetensorsError::Shape {
            name: name.to_string(),
            expected: shape.to_vec(),
            found: t.shape().to_vec(),
        });
    }
    // The crate checked that the data is exactly `4 * product(shape)` bytes.
    let values: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(SafetensorsError::NonFinite {
            name: name.to_string(),
            index,
            value: values[index],
        });
    }
    Ok(values)
}

/// Each dense layer's description, in order.
fn layer_infos<L: Layer>(layers: &L) -> Vec<LayerInfo> {
    let mut infos = Vec::with_capacity(L::DEPTH);
    layers.describe(&mut |info: LayerInfo, _: &dyn ActivationF64| infos.push(info));
    infos
}

/// A tensor to write: little-endian `f32` bytes and a shape.
struct Tensor {
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl ::safetensors::View for &Tensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

impl<L: Layer, H: Head<L::Out>> Network<L, H> {
    /// The network as a safetensors file in `format` (module docs): each dense layer's weight
    /// and bias as `F32` tensors. With [`Format::TORCH`] the file also carries the metadata
    /// `{"format": "pt"}`, as `safetensors.torch.save_file` writes it.
    ///
    /// # Errors
    /// [`SafetensorsError::NonFinite`] if a weight is not finite (a file that could not be
    /// loaded back; only a network built with [`Dense::from_parts`](crate::Dense::from_parts)
    /// can have one), [`SafetensorsError::NameCount`] and
    /// [`SafetensorsError::DuplicateName`] for names that do not fit.
    pub fn to_safetensors(&self, format: Format<'_>) -> Result<Vec<u8>, SafetensorsError> {
        let names = format.all_names(L::DEPTH)?;
        let infos = layer_infos(&self.layers);
        let mut tensors: Vec<Tensor> = Vec::with_capacity(2 * L::DEPTH);
        let mut t = 0;
        let mut bad = None;
        self.layers.visit(&mut |s: &[f32]| {
            let info = &infos[t / 2];
            let weight = t % 2 == 0;
            if bad.is_none()
                && let Some(index) = s.iter().position(|v| !v.is_finite())
            {
                bad = Some((t, index, s[index]));
            }
            let (shape, values): (Vec<usize>, Cow<'_, [f32]>) = if !weight {
                (vec![info.outputs], Cow::Borrowed(s))
            } else if format.layout == Layout::OutIn {
                (format.weight_shape(info).to_vec(), Cow::Borrowed(s))
            } else {
                // [out][in] to [in][out].
                let (i, o) = (info.inputs, info.outputs);
                let tr: Vec<f32> = (0..i * o).map(|k| s[(k % o) * i + k / o]).collect();
                (format.weight_shape(info).to_vec(), Cow::Owned(tr))
            };
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push(Tensor { shape, data });
            t += 1;
        });
        if let Some((t, index, value)) = bad {
            // Report the index in the tensor as written.
            let index = if t % 2 == 0 && format.layout == Layout::InOut {
                let i = infos[t / 2].inputs;
                let o = infos[t / 2].outputs;
                (index % i) * o + index / i
            } else {
                index
            };
            return Err(SafetensorsError::NonFinite {
                name: names[t].to_string(),
                index,
                value,
            });
        }
        let metadata = match format.names {
            Names::Torch => Some(
                [("format".to_string(), "pt".to_string())]
                    .into_iter()
                    .collect(),
            ),
            _ => None,
        };
        ::safetensors::serialize(
            names.iter().map(|n| n.as_ref()).zip(tensors.iter()),
            metadata,
        )
        .map_err(|e| SafetensorsError::InvalidHeader(e.to_string()))
    }

    /// [`Network::to_safetensors`] into the file at `path` (created or truncated).
    ///
    /// # Errors
    /// As [`Network::to_safetensors`], and [`SafetensorsError::Io`].
    pub fn save_safetensors(
        &self,
        path: impl AsRef<Path>,
        format: Format<'_>,
    ) -> Result<(), SafetensorsError> {
        let bytes = self.to_safetensors(format)?;
        std::fs::write(path, bytes)?;
        Ok(())
    }

    /// Sets every weight from a safetensors file in `format` (module docs): exactly the
    /// network's tensors, `F32`, of its shapes, finite.
    ///
    /// ```
    /// use fusedprop::safetensors::{Format, SafetensorsError};
    /// use fusedprop::{chain, Dense, Network, Relu, SoftmaxCrossEntropy};
    ///
    /// type Net = Network<chain![Dense<2, 4, Relu>, Dense<4, 2>], SoftmaxCrossEntropy>;
    /// let file = Net::new(1).to_safetensors(Format::KERAS)?;
    /// let mut net = Net::new(2);
    /// let before = net.clone();
    /// // A Keras file read as PyTorch's: nothing is written.
    /// let e = net.read_safetensors(&file, Format::TORCH).unwrap_err();
    /// assert!(matches!(&e, SafetensorsError::MissingTensor { name, .. } if name == "0.weight"));
    /// assert!(net == before);
    /// net.read_safetensors(&file, Format::KERAS)?;
    /// assert!(net == Net::new(1));
    /// # Ok::<(), SafetensorsError>(())
    /// ```
    ///
    /// # Errors
    /// A [`SafetensorsError`] that says what is wrong: [`SafetensorsError::Truncated`],
    /// [`SafetensorsError::HeaderPastEnd`], [`SafetensorsError::TrailingBytes`],
    /// [`SafetensorsError::InvalidHeader`], [`SafetensorsError::MissingTensor`],
    /// [`SafetensorsError::UnexpectedTensor`], [`SafetensorsError::Dtype`],
    /// [`SafetensorsError::Shape`], [`SafetensorsError::NonFinite`], and
    /// [`SafetensorsError::NameCount`] or [`SafetensorsError::DuplicateName`] for names that do
    /// not fit the network. Every tensor is checked before the first weight is written: on
    /// error the network is bit for bit as it was.
    pub fn read_safetensors(
        &mut self,
        bytes: &[u8],
        format: Format<'_>,
    ) -> Result<(), SafetensorsError> {
        let names = format.all_names(L::DEPTH)?;
        let st = parse(bytes)?;
        let infos = layer_infos(&self.layers);
        // Every tensor checked and decoded, in `write_params` order, before any write.
        let mut params = Vec::with_capacity(L::PARAMS);
        for (info, pair) in infos.iter().zip(names.chunks_exact(2)) {
            let w = tensor_values(&st, &pair[0], &format.weight_shape(info))?;
            match format.layout {
                Layout::OutIn => params.extend_from_slice(&w),
                Layout::InOut => {
                    let (i, o) = (info.inputs, info.outputs);
                    params.extend((0..i * o).map(|k| w[(k % i) * o + k / i]));
                }
            }
            params.extend(tensor_values(&st, &pair[1], &[info.outputs])?);
        }
        let wanted: HashSet<&str> = names.iter().map(|n| n.as_ref()).collect();
        let mut extra: Vec<&str> = st
            .names()
            .into_iter()
            .filter(|n| !wanted.contains(n))
            .collect();
        extra.sort_unstable();
        if let Some(name) = extra.first() {
            return Err(SafetensorsError::UnexpectedTensor {
                name: name.to_string(),
            });
        }
        let mut at = 0;
        self.layers.visit_mut(&mut |s: &mut [f32]| {
            s.copy_from_slice(&params[at..at + s.len()]);
            at += s.len();
        });
        Ok(())
    }

    /// [`Network::read_safetensors`] from the file at `path`.
    ///
    /// # Errors
    /// As [`Network::read_safetensors`], and [`SafetensorsError::Io`]. On error the network
    /// is unchanged.
    pub fn load_safetensors(
        &mut self,
        path: impl AsRef<Path>,
        format: Format<'_>,
    ) -> Result<(), SafetensorsError> {
        let bytes = std::fs::read(path)?;
        self.read_safetensors(&bytes, format)
    }
}
