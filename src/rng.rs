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

/// SplitMix64 is a [`rand_core::Rng`] (through [`rand_core::TryRng`] with an infallible
/// error), so it works wherever a `rand_core` generator does, and [`shuffle`] takes either.
///
/// ```
/// use fusedprop::rng::SplitMix64;
/// use rand_core::Rng;
/// fn draw(r: &mut impl Rng) -> u64 { r.next_u64() }
/// assert_eq!(draw(&mut SplitMix64::new(3)), SplitMix64::new(3).next_u64());
/// ```
impl rand_core::TryRng for SplitMix64 {
    type Error = core::convert::Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.next_u64() >> 32) as u32)
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// Fisher-Yates (Durstenfeld's in-place form): a uniformly random permutation of `v`, drawing
/// one `u64` per element from `rng`, from the last element down. Index `j` in `0..=i` is
/// `(r * (i + 1)) >> 64` (Lemire's multiply-shift, whose bias is below `2^-40` for slices
/// shorter than `2^24`), so the result depends only on the generator's outputs: the same on
/// every target.
///
/// ```
/// use fusedprop::rng::{SplitMix64, shuffle};
/// let mut v = [0, 1, 2, 3, 4, 5, 6, 7];
/// shuffle(&mut v, &mut SplitMix64::new(42));
/// let mut sorted = v;
/// sorted.sort();
/// assert_eq!(sorted, [0, 1, 2, 3, 4, 5, 6, 7]); // a permutation
/// let mut w = [0, 1, 2, 3, 4, 5, 6, 7];
/// shuffle(&mut w, &mut SplitMix64::new(42));
/// assert_eq!(v, w); // the same seed, the same permutation
/// ```
pub fn shuffle<T, R: rand_core::Rng + ?Sized>(v: &mut [T], rng: &mut R) {
    for i in (1..v.len()).rev() {
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        v.swap(i, j);
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
