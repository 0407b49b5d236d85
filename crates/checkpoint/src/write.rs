//! Writing a checkpoint: the whole file under a temporary name, closed with every error
//! checked, sealed with the file checksum, read back and verified, then published over the
//! target.

use crate::error::{first_line, CheckpointError};
use crate::format::{
    pool_name, to_row_major, version_checksum, Checkpoint, NetShape, FORMAT_VERSION, USERBLOCK,
};
use crate::fsio;
use crate::read::read;
use crate::seal::seal;
use hdf5::types::VarLenUnicode;
use odenet::Readout;
use std::path::Path;
use std::str::FromStr;

/// The points of a checkpoint write where the fault-injection tests make it fail: after the
/// file is created, after the parameters, after every group, after the file is closed, and
/// after it has been re-opened and verified (just before the rename publishes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Created,
    Parameters,
    Groups,
    Closed,
    Verified,
}

/// Writes `ckpt` to `path` atomically: a temporary file beside it is written, flushed and
/// closed with every error checked, re-opened and verified (read back in full, every shape
/// and the checksum checked, and the checksum compared with `ckpt`'s), then fsynced and
/// renamed over `path`, and the directory is synced. On any failure (a full disk, an I/O
/// error) the temporary file is removed and `path` is untouched.
pub fn write(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    write_with(path, ckpt, &mut |_, _| Ok(()))
}

/// [`write`], calling `fault` at each [`Stage`]; an error from it fails the write there.
pub(crate) fn write_with(
    path: &Path,
    ckpt: &Checkpoint,
    fault: &mut dyn FnMut(Stage, &Path) -> std::io::Result<()>,
) -> Result<(), CheckpointError> {
    let werr = |message: String| CheckpointError::Write {
        path: path.to_path_buf(),
        message,
    };
    // A checkpoint that cannot be right is refused before anything is created.
    ckpt.validate().map_err(werr)?;
    fsio::write_atomically(
        path,
        |tmp| {
            write_file(tmp, ckpt, fault).map_err(werr)?;
            fault(Stage::Closed, tmp).map_err(|e| werr(e.to_string()))?;
            let back = read(tmp)
                .map_err(|e| werr(format!("the file written does not read back ({e})")))?;
            if back.checksum() != ckpt.checksum() {
                return Err(werr(
                    "the file written reads back with different contents".into(),
                ));
            }
            fault(Stage::Verified, tmp).map_err(|e| werr(e.to_string()))
        },
        |e| werr(e.to_string()),
    )
}

/// Creates `tmp` and writes the whole checkpoint into it, then flushes and closes the file,
/// checking the errors of both: every group and dataset is closed before, so the close really
/// closes the file (HDF5 would otherwise defer it, and its error, to the last handle's drop).
fn write_file(
    tmp: &Path,
    c: &Checkpoint,
    fault: &mut dyn FnMut(Stage, &Path) -> std::io::Result<()>,
) -> Result<(), String> {
    let f = hdf5::File::with_options()
        .with_fcpl(|p| p.userblock(USERBLOCK as u64))
        .create(tmp)
        .map_err(first_line)?;
    fault(Stage::Created, tmp).map_err(|e| e.to_string())?;
    write_contents(&f, c, &mut |stage| fault(stage, tmp)).map_err(|e| match e {
        Failure::Hdf5(e) => first_line(e),
        Failure::Injected(e) => e.to_string(),
    })?;
    f.flush()
        .map_err(|e| format!("flushing the file: {}", first_line(e)))?;
    f.close()
        .map_err(|e| format!("closing the file: {}", first_line(e)))?;
    seal(tmp).map_err(|e| format!("writing the file checksum: {e}"))
}

/// Why writing the contents failed: HDF5, or a fault the tests injected.
enum Failure {
    Hdf5(hdf5::Error),
    Injected(std::io::Error),
}

impl From<hdf5::Error> for Failure {
    fn from(e: hdf5::Error) -> Self {
        Failure::Hdf5(e)
    }
}

fn attr_u64(loc: &hdf5::Location, name: &str, v: u64) -> hdf5::Result<()> {
    loc.new_attr::<u64>()
        .shape(())
        .create(name)?
        .write_scalar(&v)
}

fn attr_str(loc: &hdf5::Location, name: &str, v: &str) -> hdf5::Result<()> {
    let s = VarLenUnicode::from_str(v).map_err(|e| hdf5::Error::from(e.to_string()))?;
    loc.new_attr::<VarLenUnicode>()
        .shape(())
        .create(name)?
        .write_scalar(&s)
}

fn put(g: &hdf5::Group, name: &str, shape: &[usize], data: &[f64]) -> hdf5::Result<()> {
    g.new_dataset::<f64>()
        .shape(shape)
        .create(name)?
        .write_raw(data)
}

/// The attributes of a network's shape (in the file's root for block 0, in `blockK/` for a
/// later block of a chain).
fn shape_attrs(loc: &hdf5::Location, s: &NetShape) -> hdf5::Result<()> {
    attr_u64(loc, "input_dim", s.input as u64)?;
    attr_u64(loc, "width", s.width as u64)?;
    attr_u64(loc, "classes", s.classes as u64)?;
    attr_u64(loc, "layers", s.layers as u64)?;
    attr_u64(loc, "hidden_sets", s.hidden_sets as u64)?;
    attr_u64(loc, "opening_params", s.opening_params as u64)?;
    attr_u64(loc, "classifier_params", s.classifier_params as u64)?;
    attr_u64(loc, "time_scale", s.time_scale as u64)?;
    if let Some(cv) = s.conv {
        attr_u64(loc, "conv_in_channels", cv.in_channels as u64)?;
        attr_u64(loc, "conv_channels", cv.channels as u64)?;
        attr_u64(loc, "conv_height", cv.height as u64)?;
        attr_u64(loc, "conv_width", cv.width as u64)?;
        attr_u64(loc, "conv_kernel_h", cv.kernel_h as u64)?;
        attr_u64(loc, "conv_kernel_w", cv.kernel_w as u64)?;
        attr_u64(
            loc,
            "conv_global_average",
            (cv.readout == Readout::GlobalAverage) as u64,
        )?;
        if let Some(t) = cv.transition {
            attr_str(loc, "transition_pool", pool_name(t.pool))?;
            attr_u64(loc, "transition_in_height", t.in_height as u64)?;
            attr_u64(loc, "transition_in_width", t.in_width as u64)?;
        }
    }
    Ok(())
}

/// The parameter arrays of one block, `th` its θ, into `g`.
fn parameter_arrays(g: &hdf5::Group, s: &NetShape, th: &[f64]) -> hdf5::Result<()> {
    let layout = s.layout();
    let (w, d, n) = (s.width, s.input, s.hidden_sets);
    let ([open_shape, hidden_shape, bias_shape, class_shape], feat) = s.array_shapes();
    // Dense matrices are column-major in θ and row-major in the file; kernels are stored
    // [out][in][row][col] in both.
    let open_w = &th[layout.open_weight.clone()];
    let open_w = if s.conv.is_none() {
        to_row_major(open_shape[0], d, open_w)
    } else {
        open_w.to_vec()
    };
    put(g, "opening_weight", &open_shape, &open_w)?;
    put(
        g,
        "opening_bias",
        &[layout.open_bias.len()],
        &th[layout.open_bias.clone()],
    )?;
    let mut hw = Vec::with_capacity(n * layout.shape.layer_weight_len());
    let mut hb = Vec::with_capacity(n * bias_shape[1]);
    for i in 0..n {
        let kn = &th[layout.layer_weight(i)];
        if s.conv.is_none() {
            hw.extend(to_row_major(w, w, kn));
        } else {
            hw.extend_from_slice(kn);
        }
        hb.extend_from_slice(&th[layout.layer_bias(i)]);
    }
    put(g, "hidden_weight", &hidden_shape, &hw)?;
    put(g, "hidden_bias", &bias_shape, &hb)?;
    let class_rows = class_shape[0];
    put(
        g,
        "classifier_weight",
        &class_shape,
        &to_row_major(class_rows, feat, &th[layout.class_weight.clone()]),
    )?;
    put(
        g,
        "classifier_bias",
        &[class_rows],
        &th[layout.class_bias.clone()],
    )?;
    if s.time_scale {
        put(g, "time_scale", &[1], &th[layout.scale.clone()])?;
    }
    Ok(())
}

/// Writes the attributes and groups of `c` into `f`; every object it opens is closed when it
/// returns.
fn write_contents(
    f: &hdf5::File,
    c: &Checkpoint,
    fault: &mut dyn FnMut(Stage) -> std::io::Result<()>,
) -> Result<(), Failure> {
    attr_u64(f, "format_version", FORMAT_VERSION)?;
    attr_str(f, "layerpar_version", env!("CARGO_PKG_VERSION"))?;
    attr_u64(f, "iteration", c.iteration)?;
    attr_u64(f, "level", c.level)?;
    shape_attrs(f, &c.shape)?;
    let ranges = c.block_ranges();
    if !c.blocks.is_empty() {
        attr_u64(f, "chain_blocks", ranges.len() as u64)?;
        attr_u64(f, "chain_params", c.params.len() as u64)?;
    }
    attr_str(f, "config", &c.config)?;
    attr_str(f, "optimizer", &c.optimizer.kind)?;
    attr_u64(f, "checksum", c.checksum())?;
    attr_u64(
        f,
        "version_checksum",
        version_checksum(env!("CARGO_PKG_VERSION"), c.checksum()),
    )?;

    let p = f.create_group("parameters")?;
    let th = &c.params;
    parameter_arrays(&p, &c.shape, &th[ranges[0].clone()])?;
    drop(p);
    for (i, (b, r)) in c.blocks.iter().zip(&ranges[1..]).enumerate() {
        let g = f.create_group(&format!("block{}", i + 1))?;
        shape_attrs(&g, b)?;
        parameter_arrays(&g, b, &th[r.clone()])?;
    }
    fault(Stage::Parameters).map_err(Failure::Injected)?;

    let o = f.create_group("optimizer")?;
    let len = th.len();
    let pairs = c.optimizer.lbfgs_s.len();
    let flat = |v: &[Vec<f64>]| v.iter().flatten().copied().collect::<Vec<f64>>();
    put(&o, "lbfgs_s", &[pairs, len], &flat(&c.optimizer.lbfgs_s))?;
    put(&o, "lbfgs_y", &[pairs, len], &flat(&c.optimizer.lbfgs_y))?;
    put(
        &o,
        "adam_m",
        &[c.optimizer.adam_m.len()],
        &c.optimizer.adam_m,
    )?;
    put(
        &o,
        "adam_v",
        &[c.optimizer.adam_v.len()],
        &c.optimizer.adam_v,
    )?;
    put(
        &o,
        "sgd_velocity",
        &[c.optimizer.sgd_velocity.len()],
        &c.optimizer.sgd_velocity,
    )?;
    attr_u64(&o, "adam_t", c.optimizer.adam_t)?;

    let r = f.create_group("rng")?;
    r.new_dataset::<u8>()
        .shape([32])
        .create("seed")?
        .write_raw(&c.rng.seed)?;
    r.new_dataset::<u64>()
        .shape([1])
        .create("stream")?
        .write_raw(&[c.rng.stream])?;
    r.new_dataset::<u64>()
        .shape([2])
        .create("word_pos")?
        .write_raw(&[(c.rng.word_pos >> 64) as u64, c.rng.word_pos as u64])?;
    r.new_dataset::<u64>()
        .shape([c.rng.batch_order.len()])
        .create("batch_order")?
        .write_raw(&c.rng.batch_order)?;

    let h = f.create_group("history")?;
    let cols = c.history.columns.len();
    put(
        &h,
        "values",
        &[c.history.rows.len(), cols],
        &flat(&c.history.rows),
    )?;
    attr_str(&h, "columns", &c.history.columns.join(","))?;
    drop((o, r, h));
    fault(Stage::Groups).map_err(Failure::Injected)
}
