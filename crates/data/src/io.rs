//! Data files: HDF5 and CSV, read with validation and written atomically.
//!
//! HDF5 layout: groups `train` and (optionally) `val`, each with `features` (n × d, f64) and
//! `labels` (n, integer); a root attribute `classes` (optional: else max label + 1).
//!
//! CSV layout: a header row; a column `label`, an optional column `split` (`train` | `val`),
//! every other column a feature. Rows without `split` are training examples.

use crate::{DataError, Dataset};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

fn malformed(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn h5err(path: &Path) -> impl Fn(hdf5::Error) -> DataError + '_ {
    move |e| DataError::Hdf5 {
        path: path.to_path_buf(),
        message: e.to_string().lines().next().unwrap_or("").to_string(),
    }
}

/// A sibling path for writing before the atomic rename.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes with `write` into a temporary file beside `path`, syncs it, then renames it over
/// `path`, so `path` is either the old file or the complete new one.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let tmp = temporary_path(path);
    let result = write(&tmp).and_then(|()| {
        let f = fs::File::open(&tmp).map_err(|error| DataError::Write {
            path: tmp.clone(),
            error,
        })?;
        f.sync_all().map_err(|error| DataError::Write {
            path: tmp.clone(),
            error,
        })?;
        fs::rename(&tmp, path).map_err(|error| DataError::Write {
            path: path.to_path_buf(),
            error,
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes train and validation sets to an HDF5 file (atomically).
pub fn write_hdf5(path: &Path, train: &Dataset, val: &Dataset) -> Result<(), DataError> {
    write_atomically(path, |tmp| {
        let e = h5err(tmp);
        let file = hdf5::File::create(tmp).map_err(&e)?;
        file.new_attr::<u64>()
            .shape(())
            .create("classes")
            .and_then(|a| a.write_scalar(&(train.classes as u64)))
            .map_err(&e)?;
        for (name, set) in [("train", train), ("val", val)] {
            let g = file.create_group(name).map_err(&e)?;
            g.new_dataset::<f64>()
                .shape((set.len(), set.dim))
                .create("features")
                .and_then(|d| d.write_raw(&set.features))
                .map_err(&e)?;
            let labels: Vec<i64> = set.labels.iter().map(|&l| l as i64).collect();
            g.new_dataset::<i64>()
                .shape(set.len())
                .create("labels")
                .and_then(|d| d.write_raw(&labels))
                .map_err(&e)?;
        }
        file.close().map_err(&e)
    })
}

fn check_labels(path: &Path, raw: &[i64], classes: Option<usize>) -> Result<Vec<usize>, DataError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &l) in raw.iter().enumerate() {
        if l < 0 || classes.is_some_and(|c| l as usize >= c) {
            return Err(malformed(
                path,
                format!(
                    "label {l} of example {i} is outside 0..{}",
                    classes.unwrap_or(0)
                ),
            ));
        }
        out.push(l as usize);
    }
    Ok(out)
}

/// Reads an HDF5 data file: (train, validation if the file has a `val` group).
pub fn read_hdf5(path: &Path) -> Result<(Dataset, Option<Dataset>), DataError> {
    if !path.exists() {
        return Err(DataError::Read {
            path: path.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let e = h5err(path);
    let file = hdf5::File::open(path).map_err(&e)?;
    let classes = match file.attr("classes") {
        Ok(a) => Some(a.read_scalar::<u64>().map_err(&e)? as usize),
        Err(_) => None,
    };
    let read_group = |name: &str| -> Result<Option<(Vec<f64>, usize, Vec<i64>)>, DataError> {
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
        let features = fd.read_raw::<f64>().map_err(&e)?;
        let ld = g
            .dataset("labels")
            .map_err(|_| malformed(path, format!("group `{name}` has no dataset `labels`")))?;
        let labels = ld.read_raw::<i64>().map_err(&e)?;
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
        Ok(Some((features, shape[1], labels)))
    };
    let train = read_group("train")?.ok_or_else(|| malformed(path, "no group `train`"))?;
    let val = read_group("val")?;
    let max_label = train
        .2
        .iter()
        .chain(val.iter().flat_map(|v| v.2.iter()))
        .copied()
        .max()
        .unwrap_or(0);
    let classes = classes.unwrap_or((max_label.max(0) + 1) as usize);
    let make =
        |(features, dim, labels): (Vec<f64>, usize, Vec<i64>)| -> Result<Dataset, DataError> {
            Ok(Dataset {
                labels: check_labels(path, &labels, Some(classes))?,
                features,
                dim,
                classes,
            })
        };
    let t = make(train)?;
    let v = val.map(make).transpose()?;
    if let Some(v) = &v {
        if v.dim != t.dim {
            return Err(malformed(
                path,
                format!("`train` has {} features but `val` has {}", t.dim, v.dim),
            ));
        }
    }
    Ok((t, v))
}

/// Writes train and validation sets as one CSV file with columns `x0…, label, split`.
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
        writeln!(w, "{},label,split", header.join(",")).map_err(werr)?;
        for (split, set) in [("train", train), ("val", val)] {
            for j in 0..set.len() {
                for v in set.example(j) {
                    write!(w, "{v:e},").map_err(werr)?;
                }
                writeln!(w, "{},{split}", set.labels[j]).map_err(werr)?;
            }
        }
        w.flush().map_err(werr)
    })
}

/// Reads a CSV data file: (train, validation if some rows have split `val`).
pub fn read_csv(path: &Path) -> Result<(Dataset, Option<Dataset>), DataError> {
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
    let label_col = cols
        .iter()
        .position(|c| *c == "label")
        .ok_or_else(|| malformed(path, "the header has no column `label`"))?;
    let split_col = cols.iter().position(|c| *c == "split");
    let feature_cols: Vec<usize> = (0..cols.len())
        .filter(|&i| i != label_col && Some(i) != split_col)
        .collect();
    if feature_cols.is_empty() {
        return Err(malformed(path, "the header has no feature columns"));
    }
    let dim = feature_cols.len();
    let mut sets: [(Vec<f64>, Vec<i64>); 2] = Default::default();
    for (lineno, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != cols.len() {
            return Err(malformed(
                path,
                format!(
                    "line {} has {} fields, the header has {}",
                    lineno + 1,
                    fields.len(),
                    cols.len()
                ),
            ));
        }
        let which = match split_col.map(|c| fields[c]) {
            None | Some("train") => 0,
            Some("val") | Some("validation") => 1,
            Some(other) => {
                return Err(malformed(
                    path,
                    format!(
                        "line {}: unknown split `{other}` (expected train or val)",
                        lineno + 1
                    ),
                ))
            }
        };
        for &c in &feature_cols {
            let v: f64 = fields[c].parse().map_err(|_| {
                malformed(
                    path,
                    format!(
                        "line {}, column `{}`: `{}` is not a number",
                        lineno + 1,
                        cols[c],
                        fields[c]
                    ),
                )
            })?;
            sets[which].0.push(v);
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
        sets[which].1.push(l);
    }
    if sets[0].1.is_empty() {
        return Err(malformed(path, "no training rows"));
    }
    let classes = (sets
        .iter()
        .flat_map(|s| s.1.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(0)
        + 1) as usize;
    let [(tf, tl), (vf, vl)] = sets;
    let train = Dataset {
        labels: check_labels(path, &tl, None)?,
        features: tf,
        dim,
        classes,
    };
    let val = if vl.is_empty() {
        None
    } else {
        Some(Dataset {
            labels: check_labels(path, &vl, None)?,
            features: vf,
            dim,
            classes,
        })
    };
    Ok((train, val))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate_peaks;

    #[test]
    fn hdf5_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.h5");
        let (t, v) = generate_peaks(50, 10, 1);
        write_hdf5(&p, &t, &v).unwrap();
        let (t2, v2) = read_hdf5(&p).unwrap();
        assert_eq!(t, t2);
        assert_eq!(Some(v), v2);
    }

    #[test]
    fn csv_round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        let (t, v) = generate_peaks(50, 10, 1);
        write_csv(&p, &["x", "y"], &t, &v).unwrap();
        let (t2, v2) = read_csv(&p).unwrap();
        assert_eq!(t, t2);
        assert_eq!(Some(v), v2);
    }

    #[test]
    fn bad_files_give_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_csv(&dir.path().join("nope.csv"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.csv"), "{missing}");
        let p = dir.path().join("bad.csv");
        fs::write(&p, "x,y,label\n1,2,0\n1,zz,1\n").unwrap();
        let e = read_csv(&p).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("`y`"), "{e}");
        assert!(!e.contains('\n'));
        fs::write(&p, "x,y\n1,2\n").unwrap();
        assert!(read_csv(&p).unwrap_err().to_string().contains("label"));
        let h = dir.path().join("bad.h5");
        fs::write(&h, b"this is not hdf5").unwrap();
        let e = read_hdf5(&h).unwrap_err().to_string();
        assert!(e.contains("bad.h5") && !e.contains('\n'), "{e}");
        assert!(read_hdf5(&dir.path().join("nope.h5"))
            .unwrap_err()
            .to_string()
            .contains("nope.h5"));
    }

    #[test]
    fn failed_atomic_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keep.csv");
        fs::write(&p, "old").unwrap();
        let r = write_atomically(&p, |tmp| {
            fs::write(tmp, "partial").unwrap();
            Err(malformed(tmp, "simulated failure"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
