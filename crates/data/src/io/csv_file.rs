//! CSV data files: a header row, a `label` column or `target…` columns, an optional `split`
//! column, the rest features; read with validation, written atomically.

use super::{check_classes, check_labels, malformed, require_regular_file, write_atomically};
use crate::{DataError, Dataset};
use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes train and validation sets as one CSV file with columns `x0…, label, split`
/// (regression: `x0…, target, split`, or `target0, target1, …` for several targets).
pub fn write_csv(
    path: &Path,
    names: &[&str],
    train: &Dataset,
    val: &Dataset,
) -> Result<(), DataError> {
    write_atomically(path, |tmp| {
        let werr = |error| DataError::Write {
            path: tmp.to_path_buf(),
            error,
        };
        let f = fs::File::create(tmp).map_err(werr)?;
        let mut w = std::io::BufWriter::new(f);
        let header: Vec<String> = (0..train.dim)
            .map(|i| {
                names
                    .get(i)
                    .map(|s| s.to_string())
                    .unwrap_or(format!("x{i}"))
            })
            .collect();
        let y = match train.target_dim {
            0 => "label".to_string(),
            1 => "target".to_string(),
            m => (0..m)
                .map(|k| format!("target{k}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        writeln!(w, "{},{y},split", header.join(",")).map_err(werr)?;
        for (split, set) in [("train", train), ("val", val)] {
            for j in 0..set.len() {
                for v in set.example(j) {
                    write!(w, "{v:e},").map_err(werr)?;
                }
                if set.is_regression() {
                    for v in set.target(j) {
                        write!(w, "{v:e},").map_err(werr)?;
                    }
                    writeln!(w, "{split}").map_err(werr)?;
                } else {
                    writeln!(w, "{},{split}", set.labels[j]).map_err(werr)?;
                }
            }
        }
        w.flush().map_err(werr)
    })
}

/// Reads a CSV data file: (train, validation if some rows have split `val`).
pub fn read_csv(path: &Path) -> Result<(Dataset, Option<Dataset>), DataError> {
    require_regular_file(path)?;
    let text = fs::read_to_string(path).map_err(|error| DataError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| malformed(path, "the file is empty"))?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    for (j, c) in cols.iter().enumerate() {
        if let Some(i) = cols[..j].iter().position(|d| d == c) {
            return Err(malformed(
                path,
                format!(
                    "the header names column `{c}` twice (columns {} and {})",
                    i + 1,
                    j + 1
                ),
            ));
        }
    }
    let label_col = cols.iter().position(|c| *c == "label");
    let target_cols: Vec<usize> = (0..cols.len())
        .filter(|&i| cols[i].starts_with("target"))
        .collect();
    match (label_col, target_cols.is_empty()) {
        (None, true) => {
            return Err(malformed(
                path,
                "the header has no column `label` (classification) and no `target…` column (regression)",
            ))
        }
        (Some(_), false) => {
            return Err(malformed(
                path,
                format!(
                    "the header has both a `label` column and target column `{}`: a file is either classification or regression",
                    cols[target_cols[0]]
                ),
            ))
        }
        _ => {}
    }
    let split_col = cols.iter().position(|c| *c == "split");
    let feature_cols: Vec<usize> = (0..cols.len())
        .filter(|&i| Some(i) != label_col && Some(i) != split_col && !target_cols.contains(&i))
        .collect();
    if feature_cols.is_empty() {
        return Err(malformed(path, "the header has no feature columns"));
    }
    let dim = feature_cols.len();
    let Some(label_col) = label_col else {
        return read_csv_targets(path, &cols, lines, &feature_cols, &target_cols, split_col);
    };
    let mut sets: [(Vec<f64>, Vec<i64>); 2] = Default::default();
    // The largest label and its line.
    let mut max_label = (0i64, 0usize);
    for (lineno, line) in lines {
        let fields = row_fields(path, lineno, line, cols.len())?;
        let which = split_of(path, lineno, split_col.map(|c| fields[c]))?;
        for &c in &feature_cols {
            sets[which]
                .0
                .push(number(path, lineno, cols[c], fields[c])?);
        }
        let l: i64 = fields[label_col].parse().map_err(|_| {
            malformed(
                path,
                format!(
                    "line {}: label `{}` is not an integer",
                    lineno + 1,
                    fields[label_col]
                ),
            )
        })?;
        if l < 0 {
            return Err(malformed(
                path,
                format!(
                    "line {}: label {l} is negative (labels are class numbers 0, 1, …)",
                    lineno + 1
                ),
            ));
        }
        if l > max_label.0 {
            max_label = (l, lineno + 1);
        }
        sets[which].1.push(l);
    }
    if sets[0].1.is_empty() {
        return Err(malformed(path, "no training rows"));
    }
    let examples = sets[0].1.len() + sets[1].1.len();
    let classes = check_classes(
        path,
        max_label.0 as u64 + 1,
        examples,
        &format!("label {} on line {}", max_label.0, max_label.1),
    )?;
    let [(tf, tl), (vf, vl)] = sets;
    let train = Dataset::labelled(tf, check_labels(path, "train", &tl, classes)?, dim, classes);
    let val = if vl.is_empty() {
        None
    } else {
        Some(Dataset::labelled(
            vf,
            check_labels(path, "val", &vl, classes)?,
            dim,
            classes,
        ))
    };
    Ok((train, val))
}

/// The trimmed fields of CSV line `lineno`, which must number as many as the header's.
fn row_fields<'a>(
    path: &Path,
    lineno: usize,
    line: &'a str,
    columns: usize,
) -> Result<Vec<&'a str>, DataError> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != columns {
        return Err(malformed(
            path,
            format!(
                "line {} has {} fields, the header has {columns}",
                lineno + 1,
                fields.len()
            ),
        ));
    }
    Ok(fields)
}

/// The set a CSV row belongs to (0 train, 1 validation) from its `split` field.
fn split_of(path: &Path, lineno: usize, split: Option<&str>) -> Result<usize, DataError> {
    match split {
        None | Some("train") => Ok(0),
        Some("val") | Some("validation") => Ok(1),
        Some(other) => Err(malformed(
            path,
            format!(
                "line {}: unknown split `{other}` (expected train or val)",
                lineno + 1
            ),
        )),
    }
}

/// A finite number from a CSV field.
fn number(path: &Path, lineno: usize, col: &str, field: &str) -> Result<f64, DataError> {
    field
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| {
            malformed(
                path,
                format!(
                    "line {}, column `{col}`: `{field}` is not a finite number",
                    lineno + 1
                ),
            )
        })
}

/// The rest of a regression CSV file: features and target columns of every row.
fn read_csv_targets<'a>(
    path: &Path,
    cols: &[&str],
    lines: impl Iterator<Item = (usize, &'a str)>,
    feature_cols: &[usize],
    target_cols: &[usize],
    split_col: Option<usize>,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    let mut sets: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    for (lineno, line) in lines {
        let fields = row_fields(path, lineno, line, cols.len())?;
        let which = split_of(path, lineno, split_col.map(|c| fields[c]))?;
        for &c in feature_cols {
            sets[which]
                .0
                .push(number(path, lineno, cols[c], fields[c])?);
        }
        for &c in target_cols {
            sets[which]
                .1
                .push(number(path, lineno, cols[c], fields[c])?);
        }
    }
    if sets[0].1.is_empty() {
        return Err(malformed(path, "no training rows"));
    }
    let (dim, m) = (feature_cols.len(), target_cols.len());
    let [(tf, tt), (vf, vt)] = sets;
    let train = Dataset::regression(tf, tt, dim, m);
    let val = (!vt.is_empty()).then(|| Dataset::regression(vf, vt, dim, m));
    Ok((train, val))
}
