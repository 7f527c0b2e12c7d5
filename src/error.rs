//! The one error type of the crate.

use core::fmt;

/// What went wrong, and where. Every public entry point that takes data returns
/// `Result<_, Error>`; none of them panics on bad input, and a training step that returns an
/// error has left every weight exactly as it was.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The batch has no samples.
    EmptyBatch,
    /// Two slices that must have one entry per sample have different lengths.
    LengthMismatch {
        /// What the lengths belong to, e.g. `"labels"`.
        what: &'static str,
        /// The number of samples (the length of the inputs).
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
        /// [`Mlp::params`](crate::Mlp) order (for weights and gradients); `None` where no
        /// single index is to blame (for example a gradient whose size could overflow).
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
    /// Every value of the step is finite, but the bound on its update could overflow `f32`
    /// (a weight or an optimizer's moment); the step was refused and nothing was written.
    UpdateOverflow,
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
            } => write!(f, "length mismatch: {found} {what} for {expected} samples"),
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
            } => write!(f, "non-finite {what} at index {i}; the step was refused"),
            Error::NonFinite { what, index: None } => {
                write!(f, "non-finite {what}; the step was refused")
            }
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
                "the update's bound would overflow f32 (huge inputs or weights); the step was refused and nothing was written",
            ),
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
