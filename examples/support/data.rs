//! Loading the CSV data sets shipped in `data/` (std only: examples and tests, not the
//! library, which never allocates).
#![allow(dead_code, reason = "each example or test uses part of this module")]

use std::path::{Path, PathBuf};

/// The repository's `data/` folder, wherever the program is run from.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Reads a CSV with a header line, `N` feature columns and a final integer class column.
pub fn read_csv<const N: usize>(path: &Path) -> Result<(Vec<[f32; N]>, Vec<u32>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (line_no, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != N + 1 {
            return Err(format!(
                "{}:{}: expected {} columns, found {}",
                path.display(),
                line_no + 1,
                N + 1,
                fields.len()
            ));
        }
        let mut row = [0.0f32; N];
        for (v, f) in row.iter_mut().zip(&fields) {
            *v = f
                .parse()
                .map_err(|e| format!("{}:{}: {f:?}: {e}", path.display(), line_no + 1))?;
        }
        let label = fields[N].parse().map_err(|e| {
            format!(
                "{}:{}: label {:?}: {e}",
                path.display(),
                line_no + 1,
                fields[N]
            )
        })?;
        x.push(row);
        y.push(label);
    }
    Ok((x, y))
}

/// Training inputs, training labels, test inputs, test labels.
pub type IrisSplit = (Vec<[f32; 4]>, Vec<u32>, Vec<[f32; 4]>, Vec<u32>);

/// The Iris data split exactly as the reference Keras program splits it
/// (`train_test_split(test_size=0.2, random_state=42)`, recorded in
/// `data/iris_split_order.txt`): `(train_x, train_y, test_x, test_y)`.
pub fn iris_split() -> Result<IrisSplit, String> {
    let dir = data_dir();
    let (x, y) = read_csv::<4>(&dir.join("iris.csv"))?;
    let order_path = dir.join("iris_split_order.txt");
    let order = std::fs::read_to_string(&order_path)
        .map_err(|e| format!("{}: {e}", order_path.display()))?;
    let mut parts = [Vec::new(), Vec::new()];
    for line in order.lines() {
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("train") => 0,
            Some("test") => 1,
            _ => continue,
        };
        for w in words {
            let i: usize = w
                .parse()
                .map_err(|e| format!("{}: {w:?}: {e}", order_path.display()))?;
            if i >= x.len() {
                return Err(format!("{}: row {i} out of range", order_path.display()));
            }
            parts[slot].push(i);
        }
    }
    let pick = |idx: &[usize]| -> (Vec<[f32; 4]>, Vec<u32>) {
        (
            idx.iter().map(|&i| x[i]).collect(),
            idx.iter().map(|&i| y[i]).collect(),
        )
    };
    let (trx, try_) = pick(&parts[0]);
    let (tex, tey) = pick(&parts[1]);
    Ok((trx, try_, tex, tey))
}
