//! The model baked into the Cortex-M0 firmware (`examples/cortex-m0/src/model.rs`, generated
//! by `cargo run --release --example iris_m0_model`): the classes it records for the 30 Iris
//! test rows are the ones this build's `predict_one` gives, so the firmware, which checks
//! its own classes against them under QEMU, agrees with the host build.

#[allow(dead_code)]
mod model {
    include!("../examples/cortex-m0/src/model.rs");
}

/// The test rows of the tutorial's split (`data/iris_split_order.txt`), in order.
fn test_rows() -> Vec<([f32; 4], u32)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let csv = std::fs::read_to_string(dir.join("iris.csv")).unwrap();
    let rows: Vec<([f32; 4], u32)> = csv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let x = core::array::from_fn(|k| f[k].parse().unwrap());
            (x, f[4].parse().unwrap())
        })
        .collect();
    let order = std::fs::read_to_string(dir.join("iris_split_order.txt")).unwrap();
    let line = order.lines().find(|l| l.starts_with("test")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|w| rows[w.parse::<usize>().unwrap()])
        .collect()
}

#[test]
fn the_m0_models_recorded_classes_are_this_builds() {
    let rows = test_rows();
    assert_eq!(rows.len(), model::TEST_CLASSES.len());
    model::MODEL.check_weights().unwrap();
    let mut right = 0;
    for (i, ((x, label), &want)) in rows.iter().zip(&model::TEST_CLASSES).enumerate() {
        let got = model::MODEL.predict_one(x).unwrap();
        assert_eq!(got, want, "test row {i}");
        right += usize::from(got == *label);
    }
    // The model is worth baking in: at least 28 of the 30 rows right.
    assert!(right >= 28, "{right}/30");
}
