//! The Keras-like model summaries of [`Network`](crate::Network) and [`Mlp`](crate::Mlp),
//! formatted without a heap.

use core::fmt;

const THIN: &str = "-----------------------------------------------------------------";
const THICK: &str = "=================================================================";

/// The header of a Keras-like summary of a model named `name`.
pub(crate) fn summary_header(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    writeln!(f, "Model: \"{name}\"")?;
    writeln!(f, "{THIN}")?;
    writeln!(
        f,
        "{:<28}{:<22}{:>15}",
        "Layer (type)", "Output Shape", "Param #"
    )?;
    writeln!(f, "{THICK}")
}

/// One layer's line of a summary: its name, `(None, units)` and its parameter count.
pub(crate) fn summary_row(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    units: usize,
    params: usize,
) -> fmt::Result {
    let mut shape = StrBuf::<24>::new();
    fmt::Write::write_fmt(&mut shape, format_args!("(None, {units})"))?;
    writeln!(f, "{:<28}{:<22}{:>15}", name, shape.as_str(), params)
}

/// The totals that end a summary (no line break after the last line).
pub(crate) fn summary_footer(f: &mut fmt::Formatter<'_>, params: usize) -> fmt::Result {
    writeln!(f, "{THICK}")?;
    writeln!(f, "Total params: {params}")?;
    writeln!(f, "Trainable params: {params}")?;
    write!(f, "Non-trainable params: 0")
}

/// A fixed-capacity string for formatting without a heap.
pub(crate) struct StrBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StrBuf<N> {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for StrBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
