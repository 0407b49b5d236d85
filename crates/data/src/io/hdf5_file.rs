//! HDF5 data files: `train` and `val` groups of `features` with `labels` or `targets`, an
//! optional `classes` attribute and image shape; read with validation, written atomically.

use super::{check_classes, check_labels, malformed, require_regular_file, write_atomically};
use crate::{DataError, Dataset, ImageShape};
use std::path::Path;

fn h5err(path: &Path) -> impl Fn(hdf5::Error) -> DataError + '_ {
    move |e| DataError::Hdf5 {
        path: path.to_path_buf(),
        message: checkpoint::hdf5_error_line(&e),
    }
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
    let values = read_finite(path, &td, &format!("{name}/targets"), m)?;
    Ok((values, m))
}

/// The values of dataset `what` (rows of `cols` numbers) as f64: refused unless it holds
/// numbers, its storage can hold what it declares, and every value is finite.
fn read_finite(
    path: &Path,
    ds: &hdf5::Dataset,
    what: &str,
    cols: usize,
) -> Result<Vec<f64>, DataError> {
    use hdf5::types::TypeDescriptor as T;
    match ds.dtype().and_then(|t| t.to_descriptor()) {
        Ok(T::Float(_) | T::Integer(_) | T::Unsigned(_)) => {}
        _ => return Err(malformed(path, format!("`{what}` does not hold numbers"))),
    }
    check_storage(path, what, ds)?;
    let values = ds.read_raw::<f64>().map_err(h5err(path))?;
    if let Some(at) = values.iter().position(|x| !x.is_finite()) {
        return Err(malformed(
            path,
            format!(
                "`{what}`[{}, {}] is {}, not a finite number",
                at / cols,
                at % cols,
                values[at]
            ),
        ));
    }
    Ok(values)
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
    let dim = shape[1];
    let features = read_finite(path, &fd, &format!("{name}/features"), dim)?;
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
