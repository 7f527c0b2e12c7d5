//! [`PackedBatch`]: a training batch transposed once into the kernels' feature-major lanes.
//!
//! [`Mlp::train_step`](crate::Mlp::train_step) takes rows, `&[[f32; I]]`, and transposes each
//! block of sixteen samples into lanes (feature `k` of sixteen samples in one register) on
//! every step, checking every input for NaN and infinity as it goes. For full-batch training
//! the batch never changes, so [`PackedBatch`] does that work once: it holds the inputs in
//! lanes, the labels as lane values, and what the step-refusal check needs to know about the
//! inputs (their largest magnitude). [`Mlp::train_step_packed`](crate::Mlp::train_step_packed)
//! then runs the same kernels on it, giving bit for bit the result of `train_step` on the rows.
//!
//! Its capacity is a const generic in *blocks* of [`BLOCK_SAMPLES`](crate::BLOCK_SAMPLES)
//! (sixteen) samples, because stable Rust cannot size an array by `N / 16`: a
//! `PackedBatch<I, B>` holds up to `16 * B` samples and needs no heap. Build large ones in
//! place (`Box::new(PackedBatch::ZERO)` or a `static`).

use core::fmt;

use crate::error::{Error, same_len};
use crate::lanes::{self, LANES, Lane};

/// A batch of up to `16 * B` samples of `I` features with their labels, stored feature-major
/// in SIMD lanes, validated once.
///
/// # Examples
/// ```
/// use fusedprop::{Mlp, PackedBatch, Sgd, Workspace};
///
/// let x = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]];
/// let y = [0, 1, 2];
/// let batch = PackedBatch::<4, 1>::from_rows(&x, &y)?; // one block: up to 16 samples
/// let mut model = Mlp::<4, 32, 3>::new(7);
/// let mut twin = model.clone();
/// let mut ws = Workspace::new();
/// let sgd = Sgd::new(0.01)?;
/// let a = model.train_step_packed(&batch, &sgd, &mut ws)?;
/// let b = twin.train_step(&x, &y, &sgd, &mut ws)?;
/// assert_eq!(a, b); // the same kernels, bit for bit
/// assert_eq!(model, twin);
/// # Ok::<(), fusedprop::Error>(())
/// ```
#[derive(Clone)]
pub struct PackedBatch<const I: usize, const B: usize> {
    pub(crate) x: [[Lane; I]; B],
    /// Labels as floats, `-1` in the lanes past the last sample.
    pub(crate) y: [Lane; B],
    pub(crate) n: usize,
    /// Lane-wise maximum of `|x|` over the samples.
    pub(crate) max_x: Lane,
    /// The first label that `f32` does not hold exactly (`>= 2^24`), with its index: the
    /// labels are stored as floats, and a [`LabelOutOfRange`](Error::LabelOutOfRange) must
    /// report the label the caller passed (such a label is always out of range).
    pub(crate) inexact_label: Option<(usize, u32)>,
}

impl<const I: usize, const B: usize> PackedBatch<I, B> {
    /// An empty batch, as a `const` for statics and in-place construction.
    pub const ZERO: Self = Self {
        x: [[Lane::ZERO; I]; B],
        y: [Lane::ZERO; B],
        n: 0,
        max_x: Lane::ZERO,
        inexact_label: None,
    };

    /// The most samples the batch can hold: `16 * B`.
    pub const CAPACITY: usize = B * LANES;

    /// A packed copy of `x` and `labels`.
    ///
    /// # Errors
    /// As [`PackedBatch::fill`].
    pub fn from_rows(x: &[[f32; I]], labels: &[u32]) -> Result<Self, Error> {
        let mut b = Self::ZERO;
        b.fill(x, labels)?;
        Ok(b)
    }

    /// Replaces the contents with `x` and `labels`. Labels are checked against the model's
    /// class count when the batch is used.
    ///
    /// # Errors
    /// [`Error::EmptyBatch`]; [`Error::LengthMismatch`] if `labels.len() != x.len()` or if
    /// `x.len()` exceeds [`PackedBatch::CAPACITY`] (`what: "samples over the capacity"`,
    /// `expected` the capacity); [`Error::NonFinite`] (`"input"`, the sample's index) for a
    /// NaN or infinite input. On error the batch is left empty.
    ///
    /// ```
    /// use fusedprop::{Error, PackedBatch};
    /// let mut b = PackedBatch::<2, 1>::ZERO;
    /// assert!(matches!(b.fill(&[[0.0, f32::NAN]], &[0]), Err(Error::NonFinite { .. })));
    /// assert!(b.is_empty());
    /// b.fill(&[[1.0, 2.0]; 3], &[0, 1, 0])?;
    /// assert_eq!(b.len(), 3);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn fill(&mut self, x: &[[f32; I]], labels: &[u32]) -> Result<(), Error> {
        self.n = 0;
        if x.is_empty() {
            return Err(Error::EmptyBatch);
        }
        same_len("labels", x.len(), labels.len())?;
        if x.len() > Self::CAPACITY {
            return Err(Error::LengthMismatch {
                what: "samples over the capacity",
                expected: Self::CAPACITY,
                found: x.len(),
            });
        }
        if let Some(i) = x.iter().position(|r| !r.iter().all(|v| v.is_finite())) {
            return Err(Error::NonFinite {
                what: "input",
                index: Some(i),
            });
        }
        let mut max_x = lanes::zero();
        for (b, (xb, yb)) in self.x.iter_mut().zip(self.y.iter_mut()).enumerate() {
            let start = (b * LANES).min(x.len());
            let end = (start + LANES).min(x.len());
            lanes::load_rows(&x[start..end], xb);
            *yb = lanes::labels(&labels[start..end]);
            for &v in xb.iter() {
                max_x = lanes::max(max_x, lanes::abs(v));
            }
        }
        self.max_x = max_x;
        self.inexact_label = labels
            .iter()
            .position(|&l| l >= 1 << 24)
            .map(|i| (i, labels[i]));
        self.n = x.len();
        Ok(())
    }

    /// Replaces the contents with the samples `idx` of `x` and `labels`, in that order,
    /// gathered straight into lanes (a shuffled mini-batch with no row copy in between):
    /// the same batch as [`PackedBatch::fill`] of the rows `x[idx[0]], x[idx[1]], ...`.
    ///
    /// ```
    /// use fusedprop::{Mlp, PackedBatch, Sgd, Workspace};
    /// let x = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
    /// let labels = [0, 1, 2];
    /// let mut a = PackedBatch::<2, 1>::ZERO;
    /// a.fill_indices(&x, &labels, &[2, 0])?;
    /// let b = PackedBatch::<2, 1>::from_rows(&[x[2], x[0]], &[2, 0])?;
    /// let (mut m1, mut ws) = (Mlp::<2, 8, 3>::new(1), Workspace::new());
    /// let mut m2 = m1.clone();
    /// let sgd = Sgd::new(0.1)?;
    /// let (l1, l2) = (m1.train_step_packed(&a, &sgd, &mut ws)?, m2.train_step_packed(&b, &sgd, &mut ws)?);
    /// assert_eq!(l1.to_bits(), l2.to_bits());
    /// assert_eq!(m1, m2);
    /// # Ok::<(), fusedprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::EmptyBatch`] for no indices; [`Error::LengthMismatch`] if
    /// `labels.len() != x.len()` or if there are more indices than the capacity;
    /// [`Error::InvalidArgument`] (`"sample index"`) for an index past the end of `x`;
    /// [`Error::NonFinite`] (`"input"`, the index of the sample in `x`) for a NaN or
    /// infinite input. On error the batch is left empty.
    pub fn fill_indices(
        &mut self,
        x: &[[f32; I]],
        labels: &[u32],
        idx: &[usize],
    ) -> Result<(), Error> {
        self.n = 0;
        if idx.is_empty() {
            return Err(Error::EmptyBatch);
        }
        same_len("labels", x.len(), labels.len())?;
        if idx.len() > Self::CAPACITY {
            return Err(Error::LengthMismatch {
                what: "samples over the capacity",
                expected: Self::CAPACITY,
                found: idx.len(),
            });
        }
        if let Some(&i) = idx.iter().find(|&&i| i >= x.len()) {
            return Err(Error::InvalidArgument {
                what: "sample index",
                value: i as f64,
                expected: "below the number of samples",
            });
        }
        if let Some(&i) = idx.iter().find(|&&i| !x[i].iter().all(|v| v.is_finite())) {
            return Err(Error::NonFinite {
                what: "input",
                index: Some(i),
            });
        }
        let mut max_x = lanes::zero();
        let mut rows = [[0.0f32; I]; LANES];
        let mut ls = [0u32; LANES];
        for (b, (xb, yb)) in self.x.iter_mut().zip(self.y.iter_mut()).enumerate() {
            let start = (b * LANES).min(idx.len());
            let end = (start + LANES).min(idx.len());
            let ids = &idx[start..end];
            for ((r, l), &i) in rows.iter_mut().zip(ls.iter_mut()).zip(ids) {
                *r = x[i];
                *l = labels[i];
            }
            lanes::load_rows(&rows[..ids.len()], xb);
            *yb = lanes::labels(&ls[..ids.len()]);
            for &v in xb.iter() {
                max_x = lanes::max(max_x, lanes::abs(v));
            }
        }
        self.max_x = max_x;
        self.inexact_label = idx
            .iter()
            .enumerate()
            .find(|&(_, &i)| labels[i] >= 1 << 24)
            .map(|(k, &i)| (k, labels[i]));
        self.n = idx.len();
        Ok(())
    }

    /// The number of samples.
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the batch holds no samples.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The blocks that hold samples.
    pub(crate) fn blocks(&self) -> usize {
        self.n.div_ceil(LANES)
    }
}

impl<const I: usize, const B: usize> Default for PackedBatch<I, B> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<const I: usize, const B: usize> fmt::Debug for PackedBatch<I, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackedBatch<{I}, {B}> {{ len: {} }}", self.n)
    }
}
