//! What a build says about its SIMD (issue 13): `SIMD_LEVEL`, `HAS_FMA` and the tile size,
//! each decided here from the target independently of `src/lanes.rs`. On aarch64 (CI runs the
//! suite under `qemu-aarch64`) the lane must be `wide`'s NEON `f32x16`, not the narrow lane
//! of targets without SIMD, and multiply-add must be fused (`vfmaq_f32`). CI prints the line
//! this test prints in the log of each build it runs the suite in.

use fusedprop::{BLOCK_SAMPLES, HAS_FMA, SIMD_LEVEL, TILE_SAMPLES};

/// The level this target must report, from its target features.
fn expected_level() -> &'static str {
    if cfg!(fusedprop_narrow) {
        "scalar"
    } else if cfg!(target_arch = "aarch64") {
        // NEON is part of the aarch64 baseline: every aarch64 target has it by default.
        "neon"
    } else if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
        "simd128"
    } else if cfg!(all(target_feature = "avx512f", target_feature = "fma")) {
        "avx512+fma"
    } else if cfg!(target_feature = "avx512f") {
        "avx512"
    } else if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        "avx2+fma"
    } else if cfg!(target_feature = "avx") {
        "avx"
    } else if cfg!(target_feature = "sse4.1") {
        "sse4.1"
    } else if cfg!(target_feature = "sse2") {
        "sse2"
    } else {
        "scalar"
    }
}

#[test]
fn simd_level_names_the_targets_simd() {
    println!(
        "simd_level: SIMD_LEVEL {SIMD_LEVEL}, HAS_FMA {HAS_FMA}, TILE_SAMPLES {TILE_SAMPLES}, \
         target {}",
        std::env::consts::ARCH
    );
    assert_eq!(SIMD_LEVEL, expected_level());
    assert_eq!(
        BLOCK_SAMPLES, 16,
        "a lane is sixteen samples on every target"
    );
    // The narrow lane (`"scalar"`) has one-block tiles and `wide`'s scalar values (two
    // roundings); NEON's `vfmaq_f32` fuses, and so does x86 with FMA.
    let scalar = SIMD_LEVEL == "scalar";
    let fused = !scalar && (cfg!(target_arch = "aarch64") || cfg!(target_feature = "fma"));
    assert_eq!(TILE_SAMPLES, if scalar { 16 } else { 128 });
    assert_eq!(HAS_FMA, fused);
}

/// `HAS_FMA` is what the lanes compute: `a * b + c` in one rounding or in two. With
/// `a = 1 + 2^-12` and `c = -(1 + 2^-11)`, `a * a + c` is exactly `2^-24`, which a separate
/// multiply rounds away (`a * a` rounds to `1 + 2^-11`) and a fused one keeps. `Dense::forward`
/// of a 1-1 layer with weight `a` and bias `c` at `x = a` is one lane-wise multiply-add
/// (the accumulator starts at the bias).
#[test]
fn has_fma_is_what_the_lanes_compute() {
    let a = 1.0 + 2f32.powi(-12);
    let c = -(1.0 + 2f32.powi(-11));
    let separate = a * a + c;
    let fused = a.mul_add(a, c);
    assert_eq!(separate, 0.0);
    assert_eq!(fused, 2f32.powi(-24));
    let layer = fusedprop::Dense::<1, 1>::from_weights([[a]], [c]).unwrap();
    let mut y = [0.0f32];
    layer.forward(&[a], &mut y);
    let want = if HAS_FMA { fused } else { separate };
    assert_eq!(y[0].to_bits(), want.to_bits(), "a * a + c = {:e}", y[0]);
}
