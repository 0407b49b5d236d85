//! Data files: HDF5 and CSV, read with validation and written atomically.
//!
//! HDF5 layout: groups `train` and (optionally) `val`, each with `features` (n × d, f64) and
//! either `labels` (n, integer; classification) or `targets` (n × m or n, f64; regression);
//! for labels a root attribute `classes` (optional: else max label + 1). Image data: an
//! optional integer attribute `image_shape` = [channels, height, width] on `train/features`
//! (or the group `train`, or the file), whose product must be d; features are then stored
//! [channel][row][col] per example (see [`ImageShape`]).
//!
//! CSV layout: a header row; a column `label` (classification) or one or more columns whose
//! names start with `target` (regression: `target`, or `target0`, `target1`, …), an optional
//! column `split` (`train` | `val`), every other column a feature. Rows without `split` are
//! training examples.
//!
//! Reading refuses, with one line naming the file and the place: a path that is not a regular
//! file, duplicate column names, non-finite features, labels that are not whole numbers ≥ 0
//! (HDF5 labels of any other shape than (n)), no training rows, and a class count beyond
//! [`CLASS_LIMIT_FLOOR`] and the number of examples. Writing uses the checkpoint crate's
//! publish step (fsync, rename, directory fsync).

use crate::{DataError, Dataset, ImageShape};
use std::fs;
use std::io::Write;
use std::path::Path;

fn malformed(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn h5err(path: &Path) -> impl Fn(hdf5::Error) -> DataError + '_ {
    move |e| DataError::Hdf5 {
        path: path.to_path_buf(),
        message: checkpoint::hdf5_error_line(&e),
    }
}

/// Writes with `write` into a temporary file beside `path`, then publishes it with the
/// checkpoint crate's one publish step (fsync, rename, fsync of the directory), so `path` is
/// either the old file or the complete new one; on failure the temporary is removed.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), DataError>,
) -> Result<(), DataError> {
    checkpoint::fsio::write_atomically(path, write, |error| DataError::Write {
        path: path.to_path_buf(),
        error,
    })
}

/// Refuses a path that is not a regular file before anything opens it (a FIFO would block,
/// `/dev/zero` would be read until memory runs out).
pub(crate) fn require_regular_file(path: &Path) -> Result<(), DataError> {
    checkpoint::fsio::require_regular_file(path).map_err(|error| DataError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// However many examples a file has, it may name this many classes; beyond it, no more
/// classes than examples. (A class count is the classifier's size: a stray label of 10⁹ or an
/// attribute `classes` = 10¹² would otherwise allocate terabytes.)
pub const CLASS_LIMIT_FLOOR: usize = 1 << 16;

/// Checks a class count against the number of examples; `what` says where it came from.
fn check_classes(
    path: &Path,
    classes: u64,
    examples: usize,
    what: &str,
) -> Result<usize, DataError> {
    let limit = examples.max(CLASS_LIMIT_FLOOR);
    if classes > limit as u64 {
        return Err(malformed(
            path,
            format!(
                "{what} means {classes} classes, more than the file's {examples} examples (and more than {CLASS_LIMIT_FLOOR}): labels must be class numbers 0..C-1"
            ),
        ));
    }
    Ok(classes as usize)
}

/// Writes train and validation sets to an HDF5 file (atomically).
pub fn write_hdf5(path: &Path, train: &Dataset, val: &Dataset) -> Result<(), DataError> {
    write_atomically(path, |tmp| {
        let e = h5err(tmp);
        let file = hdf5::File::create(tmp).map_err(&e)?;
        if !train.is_regression() {
            file.new_attr::<u64>()
                .shape(())
                .create("classes")
                .and_then(|a| a.write_scalar(&(train.classes as u64)))
                .map_err(&e)?;
        }
        for (name, set) in [("train", train), ("val", val)] {
            let g = file.create_group(name).map_err(&e)?;
            let features = g
                .new_dataset::<f64>()
                .shape((set.len(), set.dim))
                .create("features")
                .map_err(&e)?;
            features.write_raw(&set.features).map_err(&e)?;
            if let Some(s) = train.image {
                let shape = [s.channels as u64, s.height as u64, s.width as u64];
                features
                    .new_attr::<u64>()
                    .shape(3)
                    .create("image_shape")
                    .and_then(|a| a.write_raw(&shape))
                    .map_err(&e)?;
            }
            if train.is_regression() {
                g.new_dataset::<f64>()
                    .shape((set.len(), train.target_dim))
                    .create("targets")
                    .and_then(|d| d.write_raw(&set.targets))
                    .map_err(&e)?;
                continue;
            }
            let labels: Vec<i64> = set.labels.iter().map(|&l| l as i64).collect();
            g.new_dataset::<i64>()
                .shape(set.len())
                .create("labels")
                .and_then(|d| d.write_raw(&labels))
                .map_err(&e)?;
        }
        file.flush().map_err(&e)?;
        file.close().map_err(&e)
    })
}

/// The labels of `group`, checked against the class count.
fn check_labels(
    path: &Path,
    group: &str,
    raw: &[i64],
    classes: usize,
) -> Result<Vec<usize>, DataError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &l) in raw.iter().enumerate() {
        if l < 0 || l as u64 >= classes as u64 {
            return Err(malformed(
                path,
                format!("label {l} of `{group}` example {i} is outside 0..{classes}"),
            ));
        }
        out.push(l as usize);
    }
    Ok(out)
}

/// Refuses a dataset that declares more values than its storage can hold (a damaged or
/// hostile header would otherwise allocate without bound): uncompressed data is stored in
/// full; compressed data is allowed the deflate filter's best ratio (about 1000 : 1).
fn check_storage(path: &Path, name: &str, ds: &hdf5::Dataset) -> Result<(), DataError> {
    let shape = ds.shape();
    let elem = ds.dtype().map(|t| t.size()).unwrap_or(8).max(1) as u64;
    let bytes = shape
        .iter()
        .try_fold(elem, |acc, &x| acc.checked_mul(x as u64));
    let ratio = if ds.filters().is_empty() { 1 } else { 1100 };
    let stored = ds.storage_size().saturating_mul(ratio);
    match bytes {
        Some(b) if b <= stored || b == 0 => Ok(()),
        _ => Err(malformed(
            path,
            format!(
                "`{name}` declares shape {shape:?} but stores only {} bytes",
                ds.storage_size()
            ),
        )),
    }
}

/// One group's features (rows × dim, checked finite), dim, and raw labels or targets.
struct RawGroup {
    features: Vec<f64>,
    dim: usize,
    y: RawTargets,
}

enum RawTargets {
    Labels(Vec<i64>),
    /// Values (rows × m, checked finite) and m.
    Values(Vec<f64>, usize),
}

impl RawGroup {
    fn rows(&self) -> usize {
        self.features.len() / self.dim
    }
}

/// `name/targets` (n × m or n, numbers, finite) of a group with `rows` feature rows.
fn read_targets(
    path: &Path,
    g: &hdf5::Group,
    name: &str,
    rows: usize,
) -> Result<(Vec<f64>, usize), DataError> {
    use hdf5::types::TypeDescriptor as T;
    let td = g.dataset("targets").map_err(|_| {
        malformed(
            path,
            format!("group `{name}` has neither `labels` nor `targets`"),
        )
    })?;
    let shape = td.shape();
    let m = match shape[..] {
        [_] => 1,
        [_, m] if m > 0 => m,
        _ => {
            return Err(malformed(
                path,
                format!("`{name}/targets` must be n × m or n, got shape {shape:?}"),
            ))
        }
    };
    if shape[0] != rows {
        return Err(malformed(
            path,
            format!(
                "`{name}` has {rows} feature rows but {} target rows",
                shape[0]
            ),
        ));
    }
    match td.dtype().and_then(|t| t.to_descriptor()) {
        Ok(T::Float(_) | T::Integer(_) | T::Unsigned(_)) => {}
        _ => {
            return Err(malformed(
                path,
                format!("`{name}/targets` does not hold numbers"),
            ))
        }
    }
    check_storage(path, &format!("{name}/targets"), &td)?;
    let values = td.read_raw::<f64>().map_err(h5err(path))?;
    if let Some(at) = values.iter().position(|x| !x.is_finite()) {
        return Err(malformed(
            path,
            format!(
                "`{name}/targets`[{}, {}] is {}, not a finite number",
                at / m,
                at % m,
                values[at]
            ),
        ));
    }
    Ok((values, m))
}

fn read_group(path: &Path, file: &hdf5::File, name: &str) -> Result<Option<RawGroup>, DataError> {
    use hdf5::types::TypeDescriptor as T;
    let e = h5err(path);
    let g = match file.group(name) {
        Ok(g) => g,
        Err(_) => return Ok(None),
    };
    let fd = g
        .dataset("features")
        .map_err(|_| malformed(path, format!("group `{name}` has no dataset `features`")))?;
    let shape = fd.shape();
    if shape.len() != 2 || shape[1] == 0 {
        return Err(malformed(
            path,
            format!("`{name}/features` must be 2-D (n × d), got shape {shape:?}"),
        ));
    }
    match fd.dtype().and_then(|t| t.to_descriptor()) {
        Ok(T::Float(_) | T::Integer(_) | T::Unsigned(_)) => {}
        _ => {
            return Err(malformed(
                path,
                format!("`{name}/features` does not hold numbers"),
            ))
        }
    }
    check_storage(path, &format!("{name}/features"), &fd)?;
    let features = fd.read_raw::<f64>().map_err(&e)?;
    let dim = shape[1];
    if let Some(at) = features.iter().position(|x| !x.is_finite()) {
        return Err(malformed(
            path,
            format!(
                "`{name}/features`[{}, {}] is {}, not a finite number",
                at / dim,
                at % dim,
                features[at]
            ),
        ));
    }
    if g.dataset("labels").is_err() {
        let (values, m) = read_targets(path, &g, name, shape[0])?;
        return Ok(Some(RawGroup {
            features,
            dim,
            y: RawTargets::Values(values, m),
        }));
    }
    let ld = g
        .dataset("labels")
        .map_err(|_| malformed(path, format!("group `{name}` has no dataset `labels`")))?;
    let lshape = ld.shape();
    if lshape.len() != 1 {
        return Err(malformed(
            path,
            format!("`{name}/labels` must be 1-D (n), got shape {lshape:?}"),
        ));
    }
    check_storage(path, &format!("{name}/labels"), &ld)?;
    let not_integer = |i: usize, v: String| {
        malformed(
            path,
            format!("label {v} of `{name}` example {i} is not a class number (an integer ≥ 0)"),
        )
    };
    let labels: Vec<i64> = match ld.dtype().and_then(|t| t.to_descriptor()) {
        Ok(T::Integer(_)) => ld.read_raw::<i64>().map_err(&e)?,
        Ok(T::Unsigned(_)) => {
            let raw = ld.read_raw::<u64>().map_err(&e)?;
            let mut out = Vec::with_capacity(raw.len());
            for (i, &l) in raw.iter().enumerate() {
                out.push(i64::try_from(l).map_err(|_| not_integer(i, l.to_string()))?);
            }
            out
        }
        // Floating-point labels are accepted only where every one is a whole number.
        Ok(T::Float(_)) => {
            let raw = ld.read_raw::<f64>().map_err(&e)?;
            let mut out = Vec::with_capacity(raw.len());
            for (i, &l) in raw.iter().enumerate() {
                if l.fract() != 0.0 || !l.is_finite() || l.abs() > 9.0e15 {
                    return Err(not_integer(i, l.to_string()));
                }
                out.push(l as i64);
            }
            out
        }
        _ => {
            return Err(malformed(
                path,
                format!("`{name}/labels` does not hold integers"),
            ))
        }
    };
    if labels.len() != shape[0] {
        return Err(malformed(
            path,
            format!(
                "`{name}` has {} feature rows but {} labels",
                shape[0],
                labels.len()
            ),
        ));
    }
    Ok(Some(RawGroup {
        features,
        dim,
        y: RawTargets::Labels(labels),
    }))
}

/// Reads an HDF5 data file: (train, validation if the file has a `val` group).
pub fn read_hdf5(path: &Path) -> Result<(Dataset, Option<Dataset>), DataError> {
    require_regular_file(path)?;
    let e = h5err(path);
    let file = hdf5::File::open(path).map_err(&e)?;
    let train =
        read_group(path, &file, "train")?.ok_or_else(|| malformed(path, "no group `train`"))?;
    if train.features.is_empty() {
        return Err(malformed(
            path,
            "no training rows (`train/features` has 0 rows)",
        ));
    }
    let val = read_group(path, &file, "val")?;
    if let Some(v) = &val {
        if v.dim != train.dim {
            return Err(malformed(
                path,
                format!("`train` has {} features but `val` has {}", train.dim, v.dim),
            ));
        }
    }
    let dim = train.dim;
    let (t, v) = match &train.y {
        RawTargets::Values(_, m) => regression_sets(path, train.dim, *m, train, val),
        RawTargets::Labels(_) => classification_sets(path, &file, train, val),
    }?;
    let Some((shape, place)) = image_shape_attr(path, &file)? else {
        return Ok((t, v));
    };
    let fit = |set: Dataset| {
        set.with_image(Some(shape)).map_err(|_| {
            malformed(
                path,
                format!(
                    "attribute `image_shape` of {place} is {shape} = {} values per example, but the examples have {dim} features",
                    shape.len()
                ),
            )
        })
    };
    Ok((fit(t)?, v.map(fit).transpose()?))
}

/// The optional attribute `image_shape` = [channels, height, width] (integers ≥ 1) of
/// `train/features`, else of the group `train`, else of the file, with the place it was found.
fn image_shape_attr(
    path: &Path,
    file: &hdf5::File,
) -> Result<Option<(ImageShape, &'static str)>, DataError> {
    use hdf5::types::TypeDescriptor as T;
    let group = file.group("train").map_err(h5err(path))?;
    let features = group.dataset("features").map_err(h5err(path))?;
    let found = [
        (features.attr("image_shape").ok(), "`train/features`"),
        (group.attr("image_shape").ok(), "group `train`"),
        (file.attr("image_shape").ok(), "the file"),
    ]
    .into_iter()
    .find_map(|(a, place)| a.map(|a| (a, place)));
    let Some((a, place)) = found else {
        return Ok(None);
    };
    let bad = || {
        malformed(
            path,
            format!(
                "attribute `image_shape` of {place} must be 3 integers ≥ 1 (channels, height, width)"
            ),
        )
    };
    if !matches!(
        a.dtype().and_then(|t| t.to_descriptor()),
        Ok(T::Integer(_) | T::Unsigned(_))
    ) || a.shape() != [3]
    {
        return Err(bad());
    }
    let v = a.read_raw::<i64>().map_err(h5err(path))?;
    if v.iter().any(|&x| x < 1) {
        return Err(bad());
    }
    Ok(Some((
        ImageShape {
            channels: v[0] as usize,
            height: v[1] as usize,
            width: v[2] as usize,
        },
        place,
    )))
}

/// The train and validation sets of a regression file (both with targets, the same m).
fn regression_sets(
    path: &Path,
    dim: usize,
    m: usize,
    train: RawGroup,
    val: Option<RawGroup>,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    let make = |group: &str, g: RawGroup| match g.y {
        RawTargets::Values(values, mv) if mv == m => {
            Ok(Dataset::regression(g.features, values, dim, m))
        }
        RawTargets::Values(_, mv) => Err(malformed(
            path,
            format!("`train` has {m} targets per example but `{group}` has {mv}"),
        )),
        RawTargets::Labels(_) => Err(malformed(
            path,
            format!("`train` has `targets` but `{group}` has `labels`"),
        )),
    };
    let t = make("train", train)?;
    let v = val.map(|v| make("val", v)).transpose()?;
    Ok((t, v))
}

/// The train and validation sets of a classification file, with the class count.
fn classification_sets(
    path: &Path,
    file: &hdf5::File,
    train: RawGroup,
    val: Option<RawGroup>,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    let e = h5err(path);
    let labels_of = |g: &RawGroup, group: &str| match &g.y {
        RawTargets::Labels(l) => Ok(l.clone()),
        RawTargets::Values(..) => Err(malformed(
            path,
            format!("`train` has `labels` but `{group}` has `targets`"),
        )),
    };
    let train_labels = labels_of(&train, "train")?;
    let val_labels = val.as_ref().map(|v| labels_of(v, "val")).transpose()?;
    let examples = train.rows() + val.as_ref().map_or(0, |v| v.rows());
    let classes = match file.attr("classes") {
        Ok(a) => {
            use hdf5::types::TypeDescriptor as T;
            let integer = matches!(
                a.dtype().and_then(|t| t.to_descriptor()),
                Ok(T::Integer(_) | T::Unsigned(_))
            );
            if !a.is_scalar() || !integer {
                return Err(malformed(
                    path,
                    "attribute `classes` is not a scalar integer",
                ));
            }
            let c = a.read_scalar::<i64>().map_err(&e)?;
            if c < 1 {
                return Err(malformed(
                    path,
                    format!("attribute `classes` = {c} is not positive"),
                ));
            }
            check_classes(
                path,
                c as u64,
                examples,
                &format!("attribute `classes` = {c}"),
            )?
        }
        Err(_) => {
            let max_label = train_labels
                .iter()
                .chain(val_labels.iter().flatten())
                .copied()
                .max()
                .unwrap_or(0);
            check_classes(
                path,
                max_label.max(0) as u64 + 1,
                examples,
                &format!("the largest label, {max_label},"),
            )?
        }
    };
    let t = Dataset::labelled(
        train.features,
        check_labels(path, "train", &train_labels, classes)?,
        train.dim,
        classes,
    );
    let v = match (val, val_labels) {
        (Some(v), Some(l)) => Some(Dataset::labelled(
            v.features,
            check_labels(path, "val", &l, classes)?,
            v.dim,
            classes,
        )),
        _ => None,
    };
    Ok((t, v))
}

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

#[cfg(test)]
mod tests;
