//! Loading the CSV data sets shipped in `data/` (std only: examples and tests, not the
//! library, which never allocates).
#![allow(dead_code, reason = "each example or test uses part of this module")]

use std::path::{Path, PathBuf};

/// The repository's `data/` folder, wherever the program is run from.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Reads a CSV file (with the `csv` crate) with a header line, `N` feature columns and a
/// final target column: the features as rows and the targets as `f32`.
pub fn read_table<const N: usize>(path: &Path) -> Result<(Vec<[f32; N]>, Vec<f32>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut x = Vec::new();
    let mut t = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        // Line numbers count the header.
        let line = record.position().map_or(i + 2, |p| p.line() as usize);
        if record.len() != N + 1 {
            return Err(format!(
                "{}:{line}: expected {} columns, found {}",
                path.display(),
                N + 1,
                record.len()
            ));
        }
        let mut values = record.iter().map(|f| {
            f.parse::<f32>()
                .map_err(|e| format!("{}:{line}: {f:?}: {e}", path.display()))
        });
        let mut row = [0.0f32; N];
        for v in row.iter_mut() {
            *v = values.next().ok_or("short row")??;
        }
        t.push(values.next().ok_or("short row")??);
        x.push(row);
    }
    Ok((x, t))
}

/// Reads a CSV with a header line, `N` feature columns and a final integer class column.
pub fn read_csv<const N: usize>(path: &Path) -> Result<(Vec<[f32; N]>, Vec<u32>), String> {
    let (x, t) = read_table::<N>(path)?;
    let y = t
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 && v.fract() == 0.0 && v < 1e6 {
                Ok(v as u32)
            } else {
                Err(format!(
                    "{}: row {i}: label {v} is not a class",
                    path.display()
                ))
            }
        })
        .collect::<Result<_, _>>()?;
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
