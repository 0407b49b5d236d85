//! # checkpoint — layerpar's HDF5 checkpoint files
//!
//! One file holds everything a run needs to continue bit for bit, independent of the number
//! of ranks that wrote it:
//!
//! | where | what |
//! |---|---|
//! | attributes | `format_version`, `layerpar_version`, `iteration`, `level`, `input_dim`, `width`, `classes`, `layers`, `config` (resolved TOML), `optimizer`, `checksum` |
//! | `parameters/` | `opening_weight` (w × d_in), `opening_bias` (w), `hidden_weight` (S × w × w), `hidden_bias` (S × w), `classifier_weight` (C × w), `classifier_bias` (C), row-major as the math writes them; S = `hidden_sets` (N layers, or M spline coefficient sets) |
//! | `optimizer/` | `lbfgs_s`, `lbfgs_y` (pairs × n), `adam_m`, `adam_v`, `sgd_velocity` (n), attribute `adam_t` — vectors in the global parameter order |
//! | `rng/` | `seed` (32 bytes), `stream`, `word_pos` (2 × u64: high, low), `batch_order` |
//! | `history/` | `values` (rows × columns, NaN for an empty cell), attribute `columns` |
//!
//! Files are written to a temporary name beside the target, synced, renamed over it, and the
//! directory is synced: a crash leaves the previous file intact. Reading checks the version,
//! every shape and the checksum (FNV-1a over the config text and every array), and reports
//! a damaged file as an error that names it.

use hdf5::types::VarLenUnicode;
use odenet::{Layout, Opening, Shape};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The version this code writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// What can go wrong; each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {0} does not exist")]
    Missing(PathBuf),
    #[error("cannot read checkpoint {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("checkpoint {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("checkpoint {path} has format version {found}; this layerpar reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u64 },
    #[error("cannot write checkpoint {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// The sizes of the network the parameters belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetShape {
    pub input: usize,
    pub width: usize,
    pub classes: usize,
    pub layers: usize,
    /// Whether the opening layer has parameters (the `activate` opening).
    pub opening_params: bool,
    /// Hidden parameter sets: `layers` for per-layer controls, the number of B-spline
    /// coefficient sets for spline controls.
    pub hidden_sets: usize,
}

impl NetShape {
    pub fn layout(&self) -> Layout {
        Layout::new(Shape {
            input: self.input,
            width: self.width,
            classes: self.classes,
            layers: self.hidden_sets,
            opening: if self.opening_params {
                Opening::Activate
            } else {
                Opening::Replicate
            },
        })
    }
}

/// Optimizer state, vectors in the global parameter order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState {
    /// "lbfgs", "adam" or "sgd".
    pub kind: String,
    /// L-BFGS curvature pairs, oldest first.
    pub lbfgs_s: Vec<Vec<f64>>,
    pub lbfgs_y: Vec<Vec<f64>>,
    pub adam_m: Vec<f64>,
    pub adam_v: Vec<f64>,
    pub adam_t: u64,
    pub sgd_velocity: Vec<f64>,
}

/// The mini-batch generator's state (ChaCha8: seed, stream, word position) and the current
/// order of the examples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RngState {
    pub seed: [u8; 32],
    pub stream: u64,
    pub word_pos: u128,
    pub batch_order: Vec<u64>,
}

/// The training history: named columns, one row per iteration (NaN for an empty cell).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

/// A checkpoint's contents.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The resolved configuration, as TOML.
    pub config: String,
    /// Optimization iterations done.
    pub iteration: u64,
    /// Nested-iteration level (0 without nested iteration).
    pub level: u64,
    pub shape: NetShape,
    /// θ in the global order (opening, hidden layers, classifier).
    pub params: Vec<f64>,
    pub optimizer: OptimizerState,
    pub rng: RngState,
    pub history: History,
}

/// FNV-1a, fed with bytes.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn f64s(&mut self, v: &[f64]) {
        for x in v {
            self.bytes(&x.to_bits().to_le_bytes());
        }
    }
    fn u64s(&mut self, v: &[u64]) {
        for x in v {
            self.bytes(&x.to_le_bytes());
        }
    }
}

impl Checkpoint {
    /// The checksum stored in the file: over the config text, the scalars and every array.
    pub fn checksum(&self) -> u64 {
        let mut h = Fnv::new();
        h.bytes(self.config.as_bytes());
        h.u64s(&[
            self.iteration,
            self.level,
            self.shape.input as u64,
            self.shape.width as u64,
        ]);
        h.u64s(&[
            self.shape.classes as u64,
            self.shape.layers as u64,
            self.shape.opening_params as u64,
        ]);
        h.f64s(&self.params);
        h.bytes(self.optimizer.kind.as_bytes());
        for v in self.optimizer.lbfgs_s.iter().chain(&self.optimizer.lbfgs_y) {
            h.f64s(v);
        }
        h.f64s(&self.optimizer.adam_m);
        h.f64s(&self.optimizer.adam_v);
        h.u64s(&[self.optimizer.adam_t]);
        h.f64s(&self.optimizer.sgd_velocity);
        h.bytes(&self.rng.seed);
        h.u64s(&[
            self.rng.stream,
            (self.rng.word_pos >> 64) as u64,
            self.rng.word_pos as u64,
        ]);
        h.u64s(&self.rng.batch_order);
        for c in &self.history.columns {
            h.bytes(c.as_bytes());
        }
        for r in &self.history.rows {
            h.f64s(r);
        }
        h.0
    }
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

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Makes the finished temporary file `tmp` the file `path`: fsync, rename, fsync of the
/// directory (best effort), so that `path` is either the old file or the whole new one.
fn publish(tmp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::File::open(tmp)?.sync_all()?;
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically (a temporary file beside it, then [`publish`]):
/// readers see the old file or the whole new one; on failure `path` is untouched. For small
/// outputs such as plots and models.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary_path(path);
    let result = std::fs::write(&tmp, bytes).and_then(|()| publish(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `ckpt` to `path` atomically: a temporary file beside it, fsync, rename, fsync of the
/// directory. On failure the temporary file is removed and `path` is untouched.
pub fn write(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let tmp = temporary_path(path);
    let werr = |message: String| CheckpointError::Write {
        path: path.to_path_buf(),
        message,
    };
    let result = write_file(&tmp, ckpt)
        .map_err(|e| werr(e.to_string()))
        .and_then(|()| publish(&tmp, path).map_err(|e| werr(e.to_string())));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_file(tmp: &Path, c: &Checkpoint) -> hdf5::Result<()> {
    let f = hdf5::File::create(tmp)?;
    let s = c.shape;
    let layout = s.layout();
    let (w, d, k, n) = (s.width, s.input, s.classes, s.hidden_sets);
    let attr_u64 = |loc: &hdf5::Location, name: &str, v: u64| -> hdf5::Result<()> {
        loc.new_attr::<u64>()
            .shape(())
            .create(name)?
            .write_scalar(&v)
    };
    let attr_str = |loc: &hdf5::Location, name: &str, v: &str| -> hdf5::Result<()> {
        let s = VarLenUnicode::from_str(v).map_err(|e| hdf5::Error::from(e.to_string()))?;
        loc.new_attr::<VarLenUnicode>()
            .shape(())
            .create(name)?
            .write_scalar(&s)
    };
    attr_u64(&f, "format_version", FORMAT_VERSION)?;
    attr_str(&f, "layerpar_version", env!("CARGO_PKG_VERSION"))?;
    attr_u64(&f, "iteration", c.iteration)?;
    attr_u64(&f, "level", c.level)?;
    attr_u64(&f, "input_dim", d as u64)?;
    attr_u64(&f, "width", w as u64)?;
    attr_u64(&f, "classes", k as u64)?;
    attr_u64(&f, "layers", s.layers as u64)?;
    attr_u64(&f, "hidden_sets", n as u64)?;
    attr_u64(&f, "opening_params", s.opening_params as u64)?;
    attr_str(&f, "config", &c.config)?;
    attr_str(&f, "optimizer", &c.optimizer.kind)?;
    attr_u64(&f, "checksum", c.checksum())?;

    let put = |g: &hdf5::Group, name: &str, shape: &[usize], data: &[f64]| -> hdf5::Result<()> {
        g.new_dataset::<f64>()
            .shape(shape)
            .create(name)?
            .write_raw(data)
    };
    let p = f.create_group("parameters")?;
    let th = &c.params;
    let open_rows = if s.opening_params { w } else { 0 };
    put(
        &p,
        "opening_weight",
        &[open_rows, d],
        &to_row_major(open_rows, d, &th[layout.open_weight.clone()]),
    )?;
    put(
        &p,
        "opening_bias",
        &[layout.open_bias.len()],
        &th[layout.open_bias.clone()],
    )?;
    let mut hw = Vec::with_capacity(n * w * w);
    let mut hb = Vec::with_capacity(n * w);
    for i in 0..n {
        hw.extend(to_row_major(w, w, &th[layout.layer_weight(i)]));
        hb.extend_from_slice(&th[layout.layer_bias(i)]);
    }
    put(&p, "hidden_weight", &[n, w, w], &hw)?;
    put(&p, "hidden_bias", &[n, w], &hb)?;
    put(
        &p,
        "classifier_weight",
        &[k, w],
        &to_row_major(k, w, &th[layout.class_weight.clone()]),
    )?;
    put(&p, "classifier_bias", &[k], &th[layout.class_bias.clone()])?;

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
    f.close()
}

/// Reads and validates a checkpoint.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    if !path.exists() {
        return Err(CheckpointError::Missing(path.to_path_buf()));
    }
    let unreadable = |message: String| CheckpointError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let corrupt = |message: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let first_line = |e: hdf5::Error| e.to_string().lines().next().unwrap_or("").to_string();
    let f = hdf5::File::open(path).map_err(|e| unreadable(first_line(e)))?;
    let u64_attr = |loc: &hdf5::Location, name: &str| -> Result<u64, CheckpointError> {
        loc.attr(name)
            .and_then(|a| a.read_scalar::<u64>())
            .map_err(|_| corrupt(format!("attribute `{name}` is missing or unreadable")))
    };
    let str_attr = |loc: &hdf5::Location, name: &str| -> Result<String, CheckpointError> {
        loc.attr(name)
            .and_then(|a| a.read_scalar::<VarLenUnicode>())
            .map(|s| s.as_str().to_string())
            .map_err(|_| corrupt(format!("attribute `{name}` is missing or unreadable")))
    };
    let version = u64_attr(&f, "format_version")?;
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let shape = NetShape {
        input: u64_attr(&f, "input_dim")? as usize,
        width: u64_attr(&f, "width")? as usize,
        classes: u64_attr(&f, "classes")? as usize,
        layers: u64_attr(&f, "layers")? as usize,
        opening_params: u64_attr(&f, "opening_params")? != 0,
        hidden_sets: u64_attr(&f, "hidden_sets")? as usize,
    };
    if shape.width == 0
        || shape.classes == 0
        || shape.layers == 0
        || shape.input == 0
        || shape.hidden_sets == 0
    {
        return Err(corrupt(format!("impossible network shape {shape:?}")));
    }
    let get = |g: &hdf5::Group,
               name: &str,
               want: Option<&[usize]>|
     -> Result<(Vec<f64>, Vec<usize>), CheckpointError> {
        let ds = g
            .dataset(name)
            .map_err(|_| corrupt(format!("dataset `{name}` is missing")))?;
        let sh = ds.shape();
        if let Some(w) = want {
            if sh != w {
                return Err(corrupt(format!(
                    "dataset `{name}` has shape {sh:?}, expected {w:?}"
                )));
            }
        }
        let v = ds
            .read_raw::<f64>()
            .map_err(|e| corrupt(format!("dataset `{name}`: {}", first_line(e))))?;
        Ok((v, sh))
    };
    let group = |name: &str| {
        f.group(name)
            .map_err(|_| corrupt(format!("group `{name}` is missing")))
    };
    let layout = shape.layout();
    let (w, d, k, n) = (shape.width, shape.input, shape.classes, shape.hidden_sets);
    let p = group("parameters")?;
    let mut params = vec![0.0; layout.len];
    let open_rows = if shape.opening_params { w } else { 0 };
    let (ow, _) = get(&p, "opening_weight", Some(&[open_rows, d]))?;
    from_row_major(open_rows, d, &ow, &mut params[layout.open_weight.clone()]);
    let (ob, _) = get(&p, "opening_bias", Some(&[layout.open_bias.len()]))?;
    params[layout.open_bias.clone()].copy_from_slice(&ob);
    let (hw, _) = get(&p, "hidden_weight", Some(&[n, w, w]))?;
    let (hb, _) = get(&p, "hidden_bias", Some(&[n, w]))?;
    for i in 0..n {
        from_row_major(
            w,
            w,
            &hw[i * w * w..(i + 1) * w * w],
            &mut params[layout.layer_weight(i)],
        );
        params[layout.layer_bias(i)].copy_from_slice(&hb[i * w..(i + 1) * w]);
    }
    let (cw, _) = get(&p, "classifier_weight", Some(&[k, w]))?;
    from_row_major(k, w, &cw, &mut params[layout.class_weight.clone()]);
    let (cb, _) = get(&p, "classifier_bias", Some(&[k]))?;
    params[layout.class_bias.clone()].copy_from_slice(&cb);

    let o = group("optimizer")?;
    let len = layout.len;
    let (s_flat, s_shape) = get(&o, "lbfgs_s", None)?;
    let (y_flat, y_shape) = get(&o, "lbfgs_y", None)?;
    if s_shape.len() != 2 || s_shape != y_shape || (s_shape[0] > 0 && s_shape[1] != len) {
        return Err(corrupt(format!(
            "L-BFGS pairs have shapes {s_shape:?} and {y_shape:?} for {len} parameters"
        )));
    }
    let split =
        |v: Vec<f64>| -> Vec<Vec<f64>> { v.chunks(len.max(1)).map(|c| c.to_vec()).collect() };
    let vec_of = |name: &str| -> Result<Vec<f64>, CheckpointError> {
        let (v, _) = get(&o, name, None)?;
        if !v.is_empty() && v.len() != len {
            return Err(corrupt(format!(
                "dataset `{name}` has {} values for {len} parameters",
                v.len()
            )));
        }
        Ok(v)
    };
    let optimizer = OptimizerState {
        kind: str_attr(&f, "optimizer")?,
        lbfgs_s: split(s_flat),
        lbfgs_y: split(y_flat),
        adam_m: vec_of("adam_m")?,
        adam_v: vec_of("adam_v")?,
        adam_t: u64_attr(&o, "adam_t")?,
        sgd_velocity: vec_of("sgd_velocity")?,
    };

    let r = group("rng")?;
    let read_u64 = |name: &str| -> Result<Vec<u64>, CheckpointError> {
        r.dataset(name)
            .and_then(|ds| ds.read_raw::<u64>())
            .map_err(|_| corrupt(format!("dataset `rng/{name}` is missing or unreadable")))
    };
    let seed_v: Vec<u8> = r
        .dataset("seed")
        .and_then(|ds| ds.read_raw::<u8>())
        .map_err(|_| corrupt("dataset `rng/seed` is missing or unreadable".into()))?;
    let seed: [u8; 32] = seed_v
        .try_into()
        .map_err(|_| corrupt("`rng/seed` must hold 32 bytes".into()))?;
    let stream = *read_u64("stream")?
        .first()
        .ok_or_else(|| corrupt("`rng/stream` is empty".into()))?;
    let wp = read_u64("word_pos")?;
    if wp.len() != 2 {
        return Err(corrupt("`rng/word_pos` must hold 2 values".into()));
    }
    let rng = RngState {
        seed,
        stream,
        word_pos: ((wp[0] as u128) << 64) | wp[1] as u128,
        batch_order: read_u64("batch_order")?,
    };

    let h = group("history")?;
    let columns: Vec<String> = str_attr(&h, "columns")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let (vals, vshape) = get(&h, "values", None)?;
    if vshape.len() != 2 || (vshape[0] > 0 && vshape[1] != columns.len()) {
        return Err(corrupt(format!(
            "history has shape {vshape:?} for {} columns",
            columns.len()
        )));
    }
    let history = History {
        rows: vals
            .chunks(columns.len().max(1))
            .map(|c| c.to_vec())
            .collect(),
        columns,
    };
    let ckpt = Checkpoint {
        config: str_attr(&f, "config")?,
        iteration: u64_attr(&f, "iteration")?,
        level: u64_attr(&f, "level")?,
        shape,
        params,
        optimizer,
        rng,
        history,
    };
    let stored = u64_attr(&f, "checksum")?;
    if stored != ckpt.checksum() {
        return Err(corrupt("the checksum does not match the contents".into()));
    }
    Ok(ckpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let shape = NetShape {
            input: 2,
            width: 3,
            classes: 4,
            layers: 5,
            opening_params: true,
            hidden_sets: 5,
        };
        let len = shape.layout().len;
        let v = |s: f64| (0..len).map(|i| s * i as f64 + 0.25).collect::<Vec<f64>>();
        Checkpoint {
            config: "seed = 3\n".into(),
            iteration: 17,
            level: 1,
            shape,
            params: v(0.5),
            optimizer: OptimizerState {
                kind: "lbfgs".into(),
                lbfgs_s: vec![v(1.0), v(2.0)],
                lbfgs_y: vec![v(-1.0), v(3.0)],
                adam_m: vec![],
                adam_v: vec![],
                adam_t: 0,
                sgd_velocity: vec![],
            },
            rng: RngState {
                seed: [7; 32],
                stream: 9,
                word_pos: (5u128 << 64) + 11,
                batch_order: vec![2, 0, 1],
            },
            history: History {
                columns: vec!["iter".into(), "loss".into(), "fwd_res".into()],
                rows: vec![vec![0.0, 1.5, f64::NAN], vec![1.0, 1.25, f64::NAN]],
            },
        }
    }

    fn same(a: &Checkpoint, b: &Checkpoint) -> bool {
        a.checksum() == b.checksum()
            && a.params == b.params
            && a.optimizer == b.optimizer
            && a.rng == b.rng
    }

    #[test]
    fn round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        let c = sample();
        write(&p, &c).unwrap();
        let r = read(&p).unwrap();
        assert!(same(&c, &r));
        assert_eq!(r.history.columns, c.history.columns);
        assert_eq!(r.iteration, 17);
        assert_eq!(r.config, c.config);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left"
        );
    }

    #[test]
    fn damaged_files_are_reported_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        write(&p, &sample()).unwrap();
        let good = std::fs::read(&p).unwrap();
        // Truncated.
        let t = dir.path().join("t.h5");
        std::fs::write(&t, &good[..good.len() / 3]).unwrap();
        let e = read(&t).unwrap_err().to_string();
        assert!(e.contains("t.h5") && !e.contains('\n'), "{e}");
        // One parameter byte flipped: find 0.25 + 0.5·3 = 1.75 (parameter 3) in the file.
        let needle = 1.75f64.to_le_bytes();
        let pos = good.windows(8).position(|w| w == needle).unwrap();
        let mut bad = good.clone();
        bad[pos] ^= 1;
        let b = dir.path().join("b.h5");
        std::fs::write(&b, &bad).unwrap();
        let e = read(&b).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        // Not HDF5 at all, and missing.
        let j = dir.path().join("j.h5");
        std::fs::write(&j, b"junk").unwrap();
        assert!(read(&j)
            .unwrap_err()
            .to_string()
            .contains("cannot read checkpoint"));
        assert!(matches!(
            read(&dir.path().join("none.h5")),
            Err(CheckpointError::Missing(_))
        ));
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        let c = sample();
        write(&p, &c).unwrap();
        // A checkpoint whose parameters do not fit its shape cannot be written.
        let mut broken = sample();
        broken.params.truncate(3);
        let r = std::panic::catch_unwind(|| write(&p, &broken));
        assert!(r.is_err() || r.unwrap().is_err());
        assert!(same(&read(&p).unwrap(), &c));
    }
}
