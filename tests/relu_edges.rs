//! ReLU's edge values survive the two-instruction formulation: NaN stays NaN, `-0` becomes
//! `+0`, infinities map as they should.

#[test]
fn relu_edge_values() {
    let x = [[
        -0.0f32,
        0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1.0,
        1e-45,
        -1e-45,
    ]];
    let mut y = [[9.0f32; 8]];
    fusedprop::relu(&x, &mut y).unwrap();
    let y = y[0];
    assert_eq!(y[0].to_bits(), 0.0f32.to_bits());
    assert_eq!(y[1].to_bits(), 0.0f32.to_bits());
    assert!(y[2].is_nan());
    assert_eq!(y[3], f32::INFINITY);
    assert_eq!(y[4].to_bits(), 0.0f32.to_bits());
    assert_eq!(y[5].to_bits(), 0.0f32.to_bits());
    assert_eq!(y[6], 1e-45);
    assert_eq!(y[7].to_bits(), 0.0f32.to_bits());
}
