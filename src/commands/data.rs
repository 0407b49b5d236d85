//! `layerpar data peaks|sine --out FILE`: writes the Peaks (classification) or sine
//! (regression) data set to HDF5 and CSV.

use anyhow::{bail, Result};
use layerpar_data::{generate_peaks, generate_sine, write_csv, write_hdf5};
use std::path::{Path, PathBuf};

/// The two files written for `--out`: FILE with extension .h5 and .csv.
pub fn output_paths(out: &Path) -> (PathBuf, PathBuf) {
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    let stem = if matches!(ext, "h5" | "hdf5" | "csv") {
        out.with_extension("")
    } else {
        out.to_path_buf()
    };
    let with = |e: &str| {
        let mut s = stem.clone().into_os_string();
        s.push(".");
        s.push(e);
        PathBuf::from(s)
    };
    (with("h5"), with("csv"))
}

/// Fails with a one-line error when the directory an output file goes to does not exist.
pub fn require_output_dir(out: &Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            bail!("output directory {} does not exist", dir.display());
        }
    }
    Ok(())
}

/// Writes the Peaks (`sine` false) or sine data set as FILE.h5 and FILE.csv.
pub fn generate(sine: bool, out: &Path, train: usize, val: usize, seed: u64) -> Result<()> {
    if train == 0 || val == 0 {
        bail!("--train and --val must be ≥ 1");
    }
    require_output_dir(out)?;
    let (h5, csv) = output_paths(out);
    let (t, v, names, what) = if sine {
        let (t, v) = generate_sine(train, val, seed);
        (t, v, &["x"][..], "targets y = sin(x)")
    } else {
        let (t, v) = generate_peaks(train, val, seed);
        (t, v, &["x", "y"][..], "5 classes")
    };
    write_hdf5(&h5, &t, &v)?;
    write_csv(&csv, names, &t, &v)?;
    println!(
        "wrote {} and {} ({} training, {} validation examples, {what})",
        h5.display(),
        csv.display(),
        t.len(),
        v.len()
    );
    Ok(())
}
