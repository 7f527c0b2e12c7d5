//! The one error type of the crate.

use core::fmt;

/// What went wrong, and where. Every public entry point that takes data returns
/// `Result<_, Error>`; none of them panics on bad input, and a training step that returns an
/// error has left every weight exactly as it was.
///
/// # Examples
/// ```
/// use fusedprop::{Error, Mlp, Sgd, Workspace};
/// let mut m = Mlp::<4, 8, 3>::new(1);
/// let x = [[0.5; 4], [1.0; 4]];
/// match m.train_step(&x, &[0, 7], &Sgd::new(0.1)?, &mut Workspace::new()) {
///     Err(Error::LabelOutOfRange { index, label, classes }) => {
///         assert_eq!((index, label, classes), (1, 7, 3));
///     }
///     other => panic!("{other:?}"),
/// }
/// // Every error reads as a sentence (and implements `std::error::Error`):
/// let e = m.loss(&x, &[0]).unwrap_err();
/// assert_eq!(e.to_string(), "length mismatch: 1 labels for 2 samples");
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The batch has no samples.
    EmptyBatch,
    /// Two slices that must have one entry per sample have different lengths, or a slice of
    /// parameters does not have one entry per parameter.
    LengthMismatch {
        /// What the lengths belong to, e.g. `"labels"`, `"parameters"`.
        what: &'static str,
        /// The length needed: the number of samples (the length of the inputs), or of
        /// parameters for `"parameters"` and `"gradients"`, or the capacity of a
        /// [`PackedBatch`](crate::PackedBatch).
        expected: usize,
        /// The length that was given.
        found: usize,
    },
    /// A label is not a class of the model: `label >= classes`.
    LabelOutOfRange {
        /// Index of the sample in the batch.
        index: usize,
        /// The label given.
        label: u32,
        /// The number of classes (`O`).
        classes: usize,
    },
    /// A value that must be finite is NaN or infinite.
    NonFinite {
        /// Which quantity: `"input"`, `"weight"`, `"loss"`, `"gradient"`, `"logit"` ...
        what: &'static str,
        /// Index of the sample (for inputs, logits and losses) or of the parameter in
        /// [`Mlp::write_params`](crate::Mlp::write_params) order (for weights and
        /// gradients); `None` where no single index is to blame (for example a loss whose
        /// sum over the batch overflows).
        index: Option<usize>,
    },
    /// The learning rate is not finite and positive.
    InvalidLearningRate(f32),
    /// An optimizer or activation hyperparameter is out of its range.
    InvalidHyperparameter {
        /// Its name, as Keras spells it (`"momentum"`, `"beta_1"`, `"negative_slope"` ...).
        name: &'static str,
        /// The value given.
        value: f32,
    },
    /// A binary cross-entropy target is outside `[0, 1]`.
    TargetOutOfRange {
        /// Index of the sample.
        index: usize,
    },
    /// A training step was refused before it wrote a weight because the bound on its update
    /// overflows: every input, weight and loss is finite, but a weight (or an optimizer's
    /// velocity or moment) could pass `f32::MAX / 16` (see [`mlp`](crate::mlp) and
    /// [`network`](crate::network), "Refusing a step"). Smaller inputs or a smaller learning
    /// rate pass. Nothing was written, optimizer state included.
    UpdateOverflow,
    /// An argument that is not data is out of its range: a gradient check's `step` or
    /// `floor` (`gradcheck::check_gradients`, feature `std`).
    InvalidArgument {
        /// Which argument, e.g. `"step"`.
        what: &'static str,
        /// The value given.
        value: f64,
        /// What it must be, e.g. `"finite and positive"`.
        expected: &'static str,
    },
    /// A list of tensors (Keras's `get_weights()` order, or PyTorch's `state_dict`) does not
    /// fit the network.
    ShapeMismatch {
        /// Index of the tensor in the list (a wrong number of tensors is a
        /// [`Error::LengthMismatch`] of `"tensors"`).
        tensor: usize,
        /// The number of values it should have.
        expected: usize,
        /// The length it has.
        found: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::EmptyBatch => f.write_str("empty batch: at least one sample is needed"),
            Error::LengthMismatch {
                what,
                expected,
                found,
            } => match what {
                "parameters" | "gradients" => write!(
                    f,
                    "length mismatch: {found} {what} for a model of {expected} parameters"
                ),
                "samples over the capacity" => {
                    write!(f, "{found} samples over the capacity of {expected} samples")
                }
                _ => write!(f, "length mismatch: {found} {what} for {expected} samples"),
            },
            Error::LabelOutOfRange {
                index,
                label,
                classes,
            } => write!(
                f,
                "label {label} of sample {index} is out of range: the model has {classes} classes (0..{classes})"
            ),
            Error::NonFinite {
                what,
                index: Some(i),
            } => write!(f, "non-finite {what} at index {i}"),
            Error::NonFinite { what, index: None } => write!(f, "non-finite {what}"),
            Error::InvalidLearningRate(lr) => {
                write!(f, "learning rate {lr} is not finite and positive")
            }
            Error::InvalidHyperparameter { name, value } => {
                write!(f, "{name} = {value} is out of its range")
            }
            Error::TargetOutOfRange { index } => write!(
                f,
                "target of sample {index} is outside [0, 1], the range of a binary cross-entropy target"
            ),
            Error::UpdateOverflow => f.write_str(
                "the gradient bound would overflow f32 (inputs, weights and loss are finite, but an update could pass f32::MAX / 16); the step was refused and no weight or optimizer state changed",
            ),
            Error::InvalidArgument {
                what,
                value,
                expected,
            } => write!(f, "invalid {what} {value}: it must be {expected}"),
            Error::ShapeMismatch {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "tensor {tensor} has {found} values where the network needs {expected}"
            ),
        }
    }
}

impl core::error::Error for Error {}

/// Checks that `found` equals `expected`.
pub(crate) fn same_len(what: &'static str, expected: usize, found: usize) -> Result<(), Error> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}

/// Checks every label is below `classes`.
pub(crate) fn check_labels(labels: &[u32], classes: usize) -> Result<(), Error> {
    for (index, &label) in labels.iter().enumerate() {
        if label as usize >= classes {
            return Err(Error::LabelOutOfRange {
                index,
                label,
                classes,
            });
        }
    }
    Ok(())
}

/// Checks every value of every row is finite; the error names the first bad row.
pub(crate) fn check_rows<const N: usize>(
    what: &'static str,
    rows: &[[f32; N]],
) -> Result<(), Error> {
    for (index, row) in rows.iter().enumerate() {
        if !row.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFinite {
                what,
                index: Some(index),
            });
        }
    }
    Ok(())
}
