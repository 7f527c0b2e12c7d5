//! What a build's SIMD leaves on the table, and the one warning that says so.
//!
//! `wide` picks its instructions when it is compiled, so a dependent crate built with no
//! `RUSTFLAGS` runs the portable x86-64 baseline (SSE2, no FMA) even on a CPU with AVX2, FMA
//! and AVX-512, at about a quarter of the speed (README, "Getting SIMD"). Nothing can fix that
//! at run time without leaving `wide`, so the crate says it once, through `log`, the first time
//! a model entry point runs: [`warn_once_if_slow_build`].

/// The one-line hint for this build on this CPU, or `None` when the build already has
/// everything the CPU offers that `wide` uses (FMA, AVX2, AVX-512F).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub(crate) fn hint() -> Option<&'static str> {
    let cpu_fma = std::is_x86_feature_detected!("fma");
    let cpu_avx2 = std::is_x86_feature_detected!("avx2");
    let cpu_512 = std::is_x86_feature_detected!("avx512f");
    let fma_gap =
        (cpu_fma && !cfg!(target_feature = "fma")) || (cpu_avx2 && !cfg!(target_feature = "avx2"));
    let avx512_gap = cpu_512 && !cfg!(target_feature = "avx512f");
    match (fma_gap, avx512_gap) {
        (true, true) => Some(MISSING_ALL),
        (true, false) => Some(MISSING_FMA),
        (false, true) => Some(MISSING_AVX512),
        (false, false) => None,
    }
}

/// Off x86-64 there is nothing to detect: `None`.
#[cfg(all(feature = "std", not(target_arch = "x86_64")))]
pub(crate) fn hint() -> Option<&'static str> {
    None
}

/// The build lacks FMA and AVX2 (and AVX-512), which the CPU has.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
const MISSING_ALL: &str = "fusedprop: this binary was compiled without FMA, AVX2 and AVX-512, which this CPU has, so training and inference run at about a quarter of their speed. Build with RUSTFLAGS=\"-C target-cpu=native\", or set rustflags = [\"-C\", \"target-cpu=native\"] in the .cargo/config.toml of your application or workspace (fusedprop README, \"Getting SIMD\")";

/// The build lacks FMA and AVX2, which the CPU has (it has no AVX-512).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
const MISSING_FMA: &str = "fusedprop: this binary was compiled without FMA and AVX2, which this CPU has, so training and inference run at about a quarter of their speed. Build with RUSTFLAGS=\"-C target-cpu=native\" (or \"-C target-cpu=x86-64-v3\" for any AVX2 machine), or set rustflags = [\"-C\", \"target-cpu=native\"] in the .cargo/config.toml of your application or workspace (fusedprop README, \"Getting SIMD\")";

/// The build has FMA and AVX2 but lacks AVX-512, which the CPU has.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
const MISSING_AVX512: &str = "fusedprop: this binary was compiled without AVX-512, which this CPU has; on an AMD Zen 4 such a build trains at about half the speed of a native one. RUSTFLAGS=\"-C target-cpu=native\" (or x86-64-v4 for a fleet with AVX-512) uses it (fusedprop README, \"Getting SIMD\"); a deliberate x86-64-v3 build can silence this by filtering out the log target fusedprop::simd";

/// Whether this build can gain anything at run time: false when it already has AVX-512F,
/// AVX2 and FMA, the most `wide` uses, and off x86-64 (no detection there).
#[cfg(feature = "std")]
const CAN_GAIN: bool = cfg!(all(
    target_arch = "x86_64",
    not(all(
        target_feature = "avx512f",
        target_feature = "avx2",
        target_feature = "fma"
    ))
));

/// Set by the first call of [`warn_once_if_slow_build`] that checked.
#[cfg(feature = "std")]
static CHECKED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Emits [`hint`] once per process as a `log::warn!` (target `fusedprop::simd`) when this
/// build lacks SIMD that the CPU has; never prints by itself.
///
/// Every training and inference entry point calls it first (a new network layer should
/// too). Cost: nothing at all in a build with AVX-512, AVX2 and FMA, in `no_std` builds and
/// off x86-64; otherwise one relaxed atomic load and a predicted branch per call. The
/// detection and the `log` call run at most once, out of line. Exactly one call in the
/// process logs, however many threads race to be first.
#[inline(always)]
pub(crate) fn warn_once_if_slow_build() {
    #[cfg(feature = "std")]
    if CAN_GAIN && !CHECKED.load(core::sync::atomic::Ordering::Relaxed) {
        check_and_warn();
    }
}

/// The once-only slow path of [`warn_once_if_slow_build`].
#[cfg(feature = "std")]
#[cold]
#[inline(never)]
fn check_and_warn() {
    // `swap` lets exactly one caller through, even when several threads arrive together.
    if CHECKED.swap(true, core::sync::atomic::Ordering::Relaxed) {
        return;
    }
    if let Some(h) = hint() {
        log::warn!("{h}");
    }
}
