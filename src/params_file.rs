//! The parameter file: a trained network's parameters as whole arrays, with the resolved
//! configuration that built it, in HDF5 (readable by h5py and h5dump).
//!
//! Layout: datasets `opening_weight` (w × d_in), `opening_bias` (w), `hidden_weight`
//! (N × w × w), `hidden_bias` (N × w), `classifier_weight` (C × w), `classifier_bias` (C), all
//! row-major as the math writes them; attributes `format_version`, `layerpar_version`,
//! `iteration`, `input_dim`, `classes`, `config` (TOML) and `checksum` (FNV-1a of θ).

use crate::config::Config;
use crate::parallel::fingerprint;
use anyhow::{anyhow, bail, Context, Result};
use hdf5::types::VarLenUnicode;
use odenet::Network;
use std::path::Path;
use std::str::FromStr;

pub const FORMAT_VERSION: u64 = 1;

/// A parameter file's contents.
pub struct ParamsFile {
    pub config: Config,
    pub theta: Vec<f64>,
    pub iteration: u64,
    pub input_dim: usize,
    pub classes: usize,
}

/// Column-major m × n → row-major m × n.
fn to_row_major(m: usize, n: usize, a: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = a[i + j * m];
        }
    }
    out
}

fn from_row_major(m: usize, n: usize, a: &[f64], out: &mut [f64]) {
    for i in 0..m {
        for j in 0..n {
            out[i + j * m] = a[i * n + j];
        }
    }
}

/// Writes θ of `net` atomically to `path`.
pub fn write(
    path: &Path,
    config: &Config,
    net: &Network,
    theta: &[f64],
    iteration: u64,
) -> Result<()> {
    let l = &net.layout;
    let sh = l.shape;
    let (w, d, c, nl) = (sh.width, sh.input, sh.classes, sh.layers);
    let mut hidden_w = Vec::with_capacity(nl * w * w);
    let mut hidden_b = Vec::with_capacity(nl * w);
    for n in 0..nl {
        hidden_w.extend(to_row_major(w, w, &theta[l.layer_weight(n)]));
        hidden_b.extend_from_slice(&theta[l.layer_bias(n)]);
    }
    let open_w = to_row_major(
        w,
        if l.open_weight.is_empty() { 0 } else { d },
        &theta[l.open_weight.clone()],
    );
    let class_w = to_row_major(c, w, &theta[l.class_weight.clone()]);
    let config_text = config.to_toml();
    layerpar_data::io::write_atomically(path, |tmp| {
        let e = |err: hdf5::Error| layerpar_data::DataError::Hdf5 {
            path: tmp.to_path_buf(),
            message: err.to_string(),
        };
        let f = hdf5::File::create(tmp).map_err(e)?;
        let put = |name: &str, shape: &[usize], data: &[f64]| -> hdf5::Result<()> {
            f.new_dataset::<f64>()
                .shape(shape)
                .create(name)?
                .write_raw(data)
        };
        let open_rows = if l.open_weight.is_empty() { 0 } else { w };
        put("opening_weight", &[open_rows, d], &open_w).map_err(e)?;
        put(
            "opening_bias",
            &[l.open_bias.len()],
            &theta[l.open_bias.clone()],
        )
        .map_err(e)?;
        put("hidden_weight", &[nl, w, w], &hidden_w).map_err(e)?;
        put("hidden_bias", &[nl, w], &hidden_b).map_err(e)?;
        put("classifier_weight", &[c, w], &class_w).map_err(e)?;
        put("classifier_bias", &[c], &theta[l.class_bias.clone()]).map_err(e)?;
        let attr_u64 = |name: &str, v: u64| -> hdf5::Result<()> {
            f.new_attr::<u64>().shape(()).create(name)?.write_scalar(&v)
        };
        attr_u64("format_version", FORMAT_VERSION).map_err(e)?;
        attr_u64("iteration", iteration).map_err(e)?;
        attr_u64("input_dim", d as u64).map_err(e)?;
        attr_u64("classes", c as u64).map_err(e)?;
        attr_u64("checksum", fingerprint(theta)).map_err(e)?;
        let attr_str = |name: &str, v: &str| -> hdf5::Result<()> {
            let s = VarLenUnicode::from_str(v).map_err(|err| hdf5::Error::from(err.to_string()))?;
            f.new_attr::<VarLenUnicode>()
                .shape(())
                .create(name)?
                .write_scalar(&s)
        };
        attr_str("config", &config_text).map_err(e)?;
        attr_str("layerpar_version", env!("CARGO_PKG_VERSION")).map_err(e)?;
        f.close().map_err(e)
    })?;
    Ok(())
}

/// Reads and validates a parameter file (shapes against its own configuration, checksum).
pub fn read(path: &Path) -> Result<ParamsFile> {
    if !path.exists() {
        bail!("parameter file {} does not exist", path.display());
    }
    let ctx = || format!("cannot read parameter file {}", path.display());
    let one_line = |err: hdf5::Error| {
        anyhow!(
            "{}",
            err.to_string().lines().next().unwrap_or("").to_string()
        )
    };
    let f = hdf5::File::open(path).map_err(one_line).with_context(ctx)?;
    let u64_attr = |name: &str| -> Result<u64> {
        f.attr(name)
            .and_then(|a| a.read_scalar::<u64>())
            .map_err(|_| anyhow!("attribute `{name}` is missing or not an integer"))
            .with_context(ctx)
    };
    let version = u64_attr("format_version")?;
    if version != FORMAT_VERSION {
        bail!(
            "parameter file {} has format version {version}; this layerpar reads version {FORMAT_VERSION}",
            path.display()
        );
    }
    let config_text: VarLenUnicode = f
        .attr("config")
        .and_then(|a| a.read_scalar())
        .map_err(|_| anyhow!("attribute `config` is missing"))
        .with_context(ctx)?;
    let config = Config::from_toml(
        config_text.as_str(),
        &format!("the configuration stored in {}", path.display()),
    )?;
    let input_dim = u64_attr("input_dim")? as usize;
    let classes = u64_attr("classes")? as usize;
    let net = crate::model::build_network(&config, input_dim, classes)?;
    let l = &net.layout;
    let sh = l.shape;
    let (w, d, c, nl) = (sh.width, sh.input, sh.classes, sh.layers);
    let get = |name: &str, shape: &[usize]| -> Result<Vec<f64>> {
        let ds = f
            .dataset(name)
            .map_err(|_| anyhow!("dataset `{name}` is missing"))
            .with_context(ctx)?;
        if ds.shape() != shape {
            bail!(
                "parameter file {}: dataset `{name}` has shape {:?}, its configuration needs {:?}",
                path.display(),
                ds.shape(),
                shape
            );
        }
        ds.read_raw::<f64>().map_err(one_line).with_context(ctx)
    };
    let mut theta = vec![0.0; l.len];
    let open_rows = if l.open_weight.is_empty() { 0 } else { w };
    from_row_major(
        open_rows,
        d,
        &get("opening_weight", &[open_rows, d])?,
        &mut theta[l.open_weight.clone()],
    );
    theta[l.open_bias.clone()].copy_from_slice(&get("opening_bias", &[l.open_bias.len()])?);
    let hw = get("hidden_weight", &[nl, w, w])?;
    let hb = get("hidden_bias", &[nl, w])?;
    for n in 0..nl {
        from_row_major(
            w,
            w,
            &hw[n * w * w..(n + 1) * w * w],
            &mut theta[l.layer_weight(n)],
        );
        theta[l.layer_bias(n)].copy_from_slice(&hb[n * w..(n + 1) * w]);
    }
    from_row_major(
        c,
        w,
        &get("classifier_weight", &[c, w])?,
        &mut theta[l.class_weight.clone()],
    );
    theta[l.class_bias.clone()].copy_from_slice(&get("classifier_bias", &[c])?);
    let checksum = u64_attr("checksum")?;
    if checksum != fingerprint(&theta) {
        bail!(
            "parameter file {} is corrupt: the checksum does not match the parameters",
            path.display()
        );
    }
    Ok(ParamsFile {
        config,
        theta,
        iteration: u64_attr("iteration")?,
        input_dim,
        classes,
    })
}
