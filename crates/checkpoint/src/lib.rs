//! # checkpoint — layerpar's HDF5 checkpoint files
//!
//! One file holds everything a run needs to continue bit for bit, independent of the number
//! of ranks that wrote it:
//!
//! | where | what |
//! |---|---|
//! | attributes | `format_version`, `layerpar_version`, `iteration`, `level`, `input_dim`, `width`, `classes`, `layers`, `hidden_sets`, `opening_params`, `classifier_params` and `time_scale` (0 or 1; absent in older files: 1 and 0), `config` (resolved TOML), `optimizer`, `checksum`, `version_checksum`; a convolutional network adds `conv_in_channels`, `conv_channels`, `conv_height`, `conv_width`, `conv_kernel_h`, `conv_kernel_w` and `conv_global_average` (0: flatten read-out, 1: global average pooling), and a block opening with a transition `transition_pool` (`none`, `average`, `max`), `transition_in_height`, `transition_in_width`; a chain of ODE blocks adds `chain_blocks` (B ≥ 2) and `chain_params` (the whole θ's length) |
//! | `parameters/` | `opening_weight` (w × d_in), `opening_bias` (w), `hidden_weight` (S × w × w), `hidden_bias` (S × w), `classifier_weight` (C × w), `classifier_bias` (C), `time_scale` (1, only with a learnable time scale), row-major as the math writes them; S = `hidden_sets` (N layers, or M spline coefficient sets); the opening and classifier arrays have 0 rows when those layers have no parameters. A convolutional network: `opening_weight` (c × c_in × k_h × k_w), `opening_bias` (c), `hidden_weight` (S × c × c × k_h × k_w), `hidden_bias` (S × c), `classifier_weight` (C × F), F the read-out's features |
//! | `block1/`, `block2/`, … | a chain's later blocks: each block's shape attributes (as the root's, none optional) and its parameter arrays (as in `parameters/`); θ and the optimizer vectors are the blocks' θ in block order, the root's shape is block 0's |
//! | `optimizer/` | `lbfgs_s`, `lbfgs_y` (pairs × n), `adam_m`, `adam_v`, `sgd_velocity` (n), attribute `adam_t` — vectors in the global parameter order |
//! | `rng/` | `seed` (32 bytes), `stream`, `word_pos` (2 × u64: high, low), `batch_order` |
//! | `history/` | `values` (rows × columns, NaN for an empty cell), attribute `columns` |
//!
//! Files are written to a temporary name beside the target, flushed and closed with every
//! error checked, re-opened and verified, synced, renamed over it, and the directory is
//! synced: a crash or a full disk leaves the previous file intact. Reading refuses anything but
//! a regular file, and checks the version, the type and shape of every attribute and array
//! (against the file's size before allocating) and the checksums (FNV-1a over the config text
//! and every array; `version_checksum` also over `layerpar_version`), and reports a damaged
//! file as an error that names it. Before HDF5 parses a file (the library can crash on a
//! damaged one), a checksum of the whole file, kept in its 512-byte userblock, is checked.

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenUnicode};
use odenet::{Closing, ConvShape, Layout, Opening, Pool, Readout, Shape, Transition};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub mod fsio;
pub use fsio::replace_file;

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
    /// Whether the closing layer has parameters (the `affine` closing, not `average`).
    pub classifier_params: bool,
    /// Whether θ ends with a learnable time scale.
    pub time_scale: bool,
    /// The image structure of a convolutional network (`None`: dense).
    pub conv: Option<ConvShape>,
}

impl NetShape {
    /// The shapes of the parameter arrays (opening weight, hidden weight, hidden bias,
    /// classifier weight) as the file stores them, and the length of the read-out features F.
    fn array_shapes(&self) -> ([Vec<usize>; 4], usize) {
        let (w, d, k, n) = (self.width, self.input, self.classes, self.hidden_sets);
        let open_rows = |rows: usize| if self.opening_params { rows } else { 0 };
        let class_rows = if self.classifier_params { k } else { 0 };
        match self.conv {
            None => (
                [
                    vec![open_rows(w), d],
                    vec![n, w, w],
                    vec![n, w],
                    vec![class_rows, w],
                ],
                w,
            ),
            Some(c) => {
                let (kh, kw) = (c.kernel_h, c.kernel_w);
                let (oh, ow) = self.opening_kernel();
                let f = c.features();
                (
                    [
                        vec![open_rows(c.channels), c.in_channels, oh, ow],
                        vec![n, c.channels, c.channels, kh, kw],
                        vec![n, c.channels],
                        vec![class_rows, f],
                    ],
                    f,
                )
            }
        }
    }

    /// The kernel size of a convolutional network's opening as the file stores it: the
    /// layout's. A transition's opening is a 1×1 convolution (`odenet`'s layout gives it
    /// c·c_in values), stored as c × c_in × 1 × 1; the k_h × k_w branch guards a layout that
    /// would give it more.
    fn opening_kernel(&self) -> (usize, usize) {
        match self.conv {
            None => (1, 1),
            Some(c) => {
                if c.transition.is_some()
                    && self.odenet_shape().opening_weight_len() == c.channels * c.in_channels
                {
                    (1, 1)
                } else {
                    (c.kernel_h, c.kernel_w)
                }
            }
        }
    }

    /// The parameter count in checked arithmetic (the sizes may come from a damaged file), or
    /// `None` when the sizes do not fit together (c·H·W ≠ width, c_in·H·W ≠ input, the
    /// pooled size of a transition ≠ H × W) or overflow.
    fn checked_len(&self) -> Option<usize> {
        let mul = |dims: &[usize]| dims.iter().try_fold(1usize, |acc, &x| acc.checked_mul(x));
        let (w, d) = (self.width, self.input);
        if let Some(c) = self.conv {
            let pixels = mul(&[c.height, c.width])?;
            let in_pixels = match c.transition {
                None => pixels,
                Some(t) => {
                    let opened = match t.pool {
                        None => (t.in_height, t.in_width),
                        Some(_) => odenet::conv::pooled_size(t.in_height, t.in_width),
                    };
                    if opened != (c.height, c.width) {
                        return None;
                    }
                    mul(&[t.in_height, t.in_width])?
                }
            };
            if mul(&[c.in_channels, in_pixels])? != d || mul(&[c.channels, pixels])? != w {
                return None;
            }
            mul(&[c.channels, c.channels, c.kernel_h, c.kernel_w])?;
            mul(&[c.channels, c.in_channels, c.kernel_h, c.kernel_w])?;
        } else {
            mul(&[w, w])?;
            mul(&[w, d])?;
        }
        let ([ow, hw, hb, cw], _) = self.array_shapes();
        let open = mul(&ow)?.checked_add(if self.opening_params { hb[1] } else { 0 })?;
        let hidden = mul(&hw)?.checked_add(mul(&hb)?)?;
        let class = mul(&cw)?.checked_add(cw[0])?;
        open.checked_add(hidden)?
            .checked_add(class)?
            .checked_add(usize::from(self.time_scale))
    }

    fn odenet_shape(&self) -> Shape {
        Shape {
            input: self.input,
            width: self.width,
            classes: self.classes,
            layers: self.hidden_sets,
            opening: if self.opening_params {
                Opening::Activate
            } else {
                Opening::Replicate
            },
            closing: if self.classifier_params {
                Closing::Affine
            } else {
                Closing::Average
            },
            time_scale: self.time_scale,
            conv: self.conv,
        }
    }

    pub fn layout(&self) -> Layout {
        Layout::new(self.odenet_shape())
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
    /// The network's shape; of a chain of ODE blocks, block 0's.
    pub shape: NetShape,
    /// The shapes of a chain's later blocks (block 1, 2, …), each opening with a
    /// [`odenet::Transition`]; empty for a network of one block.
    pub blocks: Vec<NetShape>,
    /// θ in the global order (opening, hidden layers, classifier); of a chain, block 0's θ,
    /// then block 1's, … ([`Checkpoint::block_ranges`]).
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
        // (Hashed only when not the defaults, so files from before these layers still verify.)
        if !self.shape.classifier_params || self.shape.time_scale {
            h.u64s(&[
                self.shape.classifier_params as u64,
                self.shape.time_scale as u64,
            ]);
        }
        if let Some(c) = self.shape.conv {
            h.u64s(&[
                c.in_channels as u64,
                c.channels as u64,
                c.height as u64,
                c.width as u64,
                c.kernel_h as u64,
                c.kernel_w as u64,
                (c.readout == Readout::GlobalAverage) as u64,
            ]);
            // (A transition, and a chain's later blocks, only where there are any.)
            hash_transition(&mut h, &c);
        }
        if !self.blocks.is_empty() {
            h.bytes(b"blocks");
            h.u64s(&[self.blocks.len() as u64]);
            for b in &self.blocks {
                h.u64s(&[
                    b.input as u64,
                    b.width as u64,
                    b.classes as u64,
                    b.layers as u64,
                    b.opening_params as u64,
                    b.hidden_sets as u64,
                    b.classifier_params as u64,
                    b.time_scale as u64,
                ]);
                match b.conv {
                    None => h.u64s(&[0]),
                    Some(c) => {
                        h.u64s(&[
                            1,
                            c.in_channels as u64,
                            c.channels as u64,
                            c.height as u64,
                            c.width as u64,
                            c.kernel_h as u64,
                            c.kernel_w as u64,
                            (c.readout == Readout::GlobalAverage) as u64,
                        ]);
                        hash_transition(&mut h, &c);
                    }
                }
            }
        }
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

    /// The shapes of all blocks: [`Checkpoint::shape`] (block 0), then [`Checkpoint::blocks`].
    pub fn shapes(&self) -> impl Iterator<Item = &NetShape> {
        std::iter::once(&self.shape).chain(&self.blocks)
    }

    /// Where each block's θ lies in `params`, block 0 first (each as long as its layout).
    /// Meaningful for a checkpoint [`Checkpoint::validate`] accepts (one that was read, or
    /// can be written).
    pub fn block_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let mut start = 0;
        self.shapes()
            .map(|s| {
                let len = s.layout().len;
                start += len;
                start - len..start
            })
            .collect()
    }

    /// Checks that every block's sizes fit together, that consecutive blocks of a chain fit
    /// ([`check_chain`]) and that `params` is as long as the blocks' layouts together; the
    /// message (one line) names the block.
    pub fn validate(&self) -> Result<(), String> {
        let shapes: Vec<NetShape> = self.shapes().copied().collect();
        let chain = shapes.len() > 1;
        let mut lens = Vec::with_capacity(shapes.len());
        for (i, s) in shapes.iter().enumerate() {
            let Some(len) = s.checked_len() else {
                let block = if chain {
                    format!("block {i}: ")
                } else {
                    String::new()
                };
                return Err(format!("{block}network shape {s:?} is inconsistent"));
            };
            lens.push(len);
        }
        if chain {
            check_chain(&shapes)?;
        }
        let total = lens
            .iter()
            .try_fold(0usize, |a, &l| a.checked_add(l))
            .ok_or("the blocks' parameter counts overflow")?;
        if self.params.len() != total {
            return Err(format!(
                "the parameters have {} values, the {} need {total}",
                self.params.len(),
                block_lens(&lens)
            ));
        }
        Ok(())
    }
}

/// "network's layout", or "blocks' layouts (block 0: n₀, block 1: n₁, …)".
fn block_lens(lens: &[usize]) -> String {
    if lens.len() == 1 {
        return "network's layout".into();
    }
    let each: Vec<String> = lens
        .iter()
        .enumerate()
        .map(|(i, l)| format!("block {i}: {l}"))
        .collect();
    format!("blocks' layouts ({})", each.join(", "))
}

/// A transition's pooling as the file names it.
fn pool_name(pool: Option<Pool>) -> &'static str {
    match pool {
        None => "none",
        Some(Pool::Average) => "average",
        Some(Pool::Max) => "max",
    }
}

fn hash_transition(h: &mut Fnv, c: &ConvShape) {
    if let Some(t) = c.transition {
        h.bytes(b"transition");
        h.bytes(pool_name(t.pool).as_bytes());
        h.u64s(&[t.in_height as u64, t.in_width as u64]);
    }
}

/// Whether the blocks of a chain (`shapes[0]` block 0, at least two) fit together: every
/// later block is convolutional and opens with a transition from the previous block's last
/// state (its channels and image size); the inner blocks have no classes (`classes` = 0),
/// the last has some. The message (one line) names the block.
pub fn check_chain(shapes: &[NetShape]) -> Result<(), String> {
    let last = shapes.len().saturating_sub(1);
    for (i, s) in shapes.iter().enumerate() {
        if i < last && s.classes != 0 {
            return Err(format!(
                "block {i}: an inner block of a chain has {} classes (expected 0: no classifier)",
                s.classes
            ));
        }
        if i == last && s.classes == 0 {
            return Err(format!(
                "block {i}: the last block of a chain has no classes"
            ));
        }
        if i == 0 {
            continue;
        }
        let prev = &shapes[i - 1];
        let (Some(pc), Some(c)) = (prev.conv, s.conv) else {
            return Err(format!(
                "block {i}: the blocks of a chain must be convolutional (block {} is {}, block {i} is {})",
                i - 1,
                if prev.conv.is_some() { "convolutional" } else { "dense" },
                if s.conv.is_some() { "convolutional" } else { "dense" }
            ));
        };
        let Some(t) = c.transition else {
            return Err(format!(
                "block {i}: a later block of a chain needs a transition"
            ));
        };
        if c.in_channels != pc.channels {
            return Err(format!(
                "block {i}: takes {} channels, block {} has {}",
                c.in_channels,
                i - 1,
                pc.channels
            ));
        }
        if (t.in_height, t.in_width) != (pc.height, pc.width) {
            return Err(format!(
                "block {i}: takes images of {}×{}, block {} has {}×{}",
                t.in_height,
                t.in_width,
                i - 1,
                pc.height,
                pc.width
            ));
        }
        if s.input != prev.width {
            return Err(format!(
                "block {i}: takes {} inputs, block {} has width {}",
                s.input,
                i - 1,
                prev.width
            ));
        }
    }
    Ok(())
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

/// The points of a checkpoint write where the fault-injection tests make it fail: after the
/// file is created, after the parameters, after every group, after the file is closed, and
/// after it has been re-opened and verified (just before the rename publishes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
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
fn write_with(
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

fn first_line(e: hdf5::Error) -> String {
    hdf5_error_line(&e)
}

/// An HDF5 error as one line: the failing call and what failed, with the system's reason
/// where HDF5 reports one ("… file write failed: No space left on device"), without the
/// time stamp, buffer addresses and byte counts of its low-level file errors.
pub fn hdf5_error_line(e: &hdf5::Error) -> String {
    let text = e.to_string();
    let head = text.lines().next().unwrap_or("");
    let head = head.split(": time = ").next().unwrap_or(head).trim_end();
    match text
        .split("error message = '")
        .nth(1)
        .and_then(|r| r.split('\'').next())
    {
        Some(reason) => format!("{head}: {reason}"),
        None => head.to_string(),
    }
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

/// Bytes reserved at the start of a checkpoint for the file checksum (an HDF5 userblock,
/// which HDF5, h5py and h5dump skip).
const USERBLOCK: usize = 512;
const SEAL_MAGIC: &[u8] = b"layerpar checkpoint\n";

/// FNV-1a over the bytes of `file` from `USERBLOCK` on, and their number.
fn file_hash(file: &mut std::fs::File) -> std::io::Result<(u64, u64)> {
    use std::io::{Read, Seek};
    file.seek(std::io::SeekFrom::Start(USERBLOCK as u64))?;
    let mut h = Fnv::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((h.0, total));
        }
        h.bytes(&buf[..n]);
        total += n as u64;
    }
}

/// Writes the file checksum of the closed HDF5 file `tmp` into its userblock, so that a
/// reader can refuse a damaged file before the HDF5 library parses it (HDF5 can crash on a
/// damaged file).
fn seal(tmp: &Path) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tmp)?;
    let (hash, len) = file_hash(&mut file)?;
    let mut block = SEAL_MAGIC.to_vec();
    block.extend(format!("fnv1a64 {hash:016x}\nbytes {len}\n").bytes());
    block.resize(USERBLOCK, 0);
    file.seek(std::io::SeekFrom::Start(0))?;
    file.write_all(&block)
}

/// Checks the file checksum in the userblock of `path`, where there is one (files written
/// before it existed have none, and are left to the HDF5 checks).
fn check_seal(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut block = Vec::with_capacity(USERBLOCK);
    (&mut file)
        .take(USERBLOCK as u64)
        .read_to_end(&mut block)
        .map_err(|e| e.to_string())?;
    let Some(rest) = block.strip_prefix(SEAL_MAGIC) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(rest);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_string)
    };
    let hash = field("fnv1a64 ").and_then(|h| u64::from_str_radix(&h, 16).ok());
    let len = field("bytes ").and_then(|l| l.parse::<u64>().ok());
    let (Some(hash), Some(len)) = (hash, len) else {
        return Err("the file checksum header is damaged".into());
    };
    let (found_hash, found_len) = file_hash(&mut file).map_err(|e| e.to_string())?;
    if found_len != len {
        return Err(format!(
            "the file has {} bytes, its header says {} (truncated or extended)",
            found_len + USERBLOCK as u64,
            len + USERBLOCK as u64
        ));
    }
    if found_hash != hash {
        return Err("the file checksum does not match (the file is damaged)".into());
    }
    Ok(())
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

/// Reads and validates a checkpoint: `path` must be a regular file (a FIFO or a device is
/// refused before anything opens it); every attribute and dataset must have the type and shape
/// the writer gives it, sizes are checked against the file's length before anything is
/// allocated, and the checksums must match.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let unreadable = |message: String| CheckpointError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let corrupt = |message: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    match fsio::require_regular_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CheckpointError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(unreadable(e.to_string())),
    }
    // Every value of a checkpoint is stored uncompressed: no array can hold more values
    // than the file has bytes for.
    let file_values = std::fs::metadata(path)
        .map_err(|e| unreadable(e.to_string()))?
        .len()
        / 8;
    check_seal(path).map_err(corrupt)?;
    let f = hdf5::File::open(path).map_err(|e| unreadable(first_line(e)))?;
    let u64_type = TypeDescriptor::Unsigned(IntSize::U8);
    let attr = |loc: &hdf5::Location,
                name: &str,
                want: &TypeDescriptor|
     -> Result<hdf5::Attribute, CheckpointError> {
        let a = loc
            .attr(name)
            .map_err(|_| corrupt(format!("attribute `{name}` is missing")))?;
        let t = a.dtype().and_then(|t| t.to_descriptor());
        if !a.is_scalar() || t.as_ref().ok() != Some(want) {
            return Err(corrupt(format!(
                "attribute `{name}` is not a scalar {want}"
            )));
        }
        Ok(a)
    };
    let u64_attr = |loc: &hdf5::Location, name: &str| -> Result<u64, CheckpointError> {
        attr(loc, name, &u64_type)?
            .read_scalar::<u64>()
            .map_err(|_| corrupt(format!("attribute `{name}` is unreadable")))
    };
    let str_attr = |loc: &hdf5::Location, name: &str| -> Result<String, CheckpointError> {
        attr(loc, name, &TypeDescriptor::VarLenUnicode)?
            .read_scalar::<VarLenUnicode>()
            .map(|s| s.as_str().to_string())
            .map_err(|_| corrupt(format!("attribute `{name}` is unreadable")))
    };
    let version = u64_attr(&f, "format_version")?;
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    // A size: at least 1 (or 0 where `zero` allows it), and no more than the file's values.
    let size = |loc: &hdf5::Location, name: &str, zero: bool| -> Result<usize, CheckpointError> {
        let v = u64_attr(loc, name)?;
        if (v == 0 && !zero) || v > file_values {
            return Err(corrupt(format!(
                "attribute `{name}` = {v} is impossible for a file of {} bytes",
                file_values * 8
            )));
        }
        Ok(v as usize)
    };
    let dim = |loc: &hdf5::Location, name: &str| size(loc, name, false);
    // A 0/1 attribute; `default` when the file predates it.
    let flag = |loc: &hdf5::Location,
                name: &str,
                default: Option<bool>|
     -> Result<bool, CheckpointError> {
        if default.is_some() && loc.attr(name).is_err() {
            return Ok(default.unwrap_or(false));
        }
        match u64_attr(loc, name)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(corrupt(format!("attribute `{name}` = {v} is not 0 or 1"))),
        }
    };
    // The shape of a block: its attributes in `loc`. `chain`: a block of a chain (an inner
    // block has 0 classes); `later`: a later block, whose attributes have no defaults.
    let read_shape = |loc: &hdf5::Location,
                      chain: bool,
                      later: bool|
     -> Result<NetShape, CheckpointError> {
        let default = |v: bool| if later { None } else { Some(v) };
        // A convolutional network's image structure: present with any of its attributes
        // (then all are required), a transition with any of its.
        let any = |names: &[&str]| names.iter().any(|n| loc.attr(n).is_ok());
        let conv = if any(&[
            "conv_in_channels",
            "conv_channels",
            "conv_height",
            "conv_width",
            "conv_kernel_h",
            "conv_kernel_w",
            "conv_global_average",
        ]) {
            let transition = if any(&[
                "transition_pool",
                "transition_in_height",
                "transition_in_width",
            ]) {
                let pool = match str_attr(loc, "transition_pool")?.as_str() {
                    "none" => None,
                    "average" => Some(Pool::Average),
                    "max" => Some(Pool::Max),
                    other => {
                        return Err(corrupt(format!(
                            "attribute `transition_pool` = {other:?} is not \"none\", \"average\" or \"max\""
                        )))
                    }
                };
                Some(Transition {
                    pool,
                    in_height: dim(loc, "transition_in_height")?,
                    in_width: dim(loc, "transition_in_width")?,
                })
            } else {
                None
            };
            Some(ConvShape {
                in_channels: dim(loc, "conv_in_channels")?,
                channels: dim(loc, "conv_channels")?,
                height: dim(loc, "conv_height")?,
                width: dim(loc, "conv_width")?,
                kernel_h: dim(loc, "conv_kernel_h")?,
                kernel_w: dim(loc, "conv_kernel_w")?,
                readout: if flag(loc, "conv_global_average", None)? {
                    Readout::GlobalAverage
                } else {
                    Readout::Flatten
                },
                transition,
            })
        } else {
            None
        };
        Ok(NetShape {
            input: dim(loc, "input_dim")?,
            width: dim(loc, "width")?,
            classes: size(loc, "classes", chain)?,
            layers: dim(loc, "layers")?,
            opening_params: flag(loc, "opening_params", None)?,
            hidden_sets: dim(loc, "hidden_sets")?,
            classifier_params: flag(loc, "classifier_params", default(true))?,
            time_scale: flag(loc, "time_scale", default(false))?,
            conv,
        })
    };
    // A problem in block `i` of a chain: the message names the block.
    let in_block = |i: usize| {
        move |e: CheckpointError| match e {
            CheckpointError::Corrupt { path, message } => CheckpointError::Corrupt {
                path,
                message: format!("block {i}: {message}"),
            },
            e => e,
        }
    };
    // A chain of ODE blocks: `chain_blocks` blocks (block 0 in the root, the others in
    // `block1/`, `block2/`, …) and `chain_params` parameters.
    let chain = if f.attr("chain_blocks").is_ok() {
        let blocks = dim(&f, "chain_blocks")?;
        if blocks < 2 {
            return Err(corrupt(format!(
                "attribute `chain_blocks` = {blocks}: a chain has at least 2 blocks"
            )));
        }
        Some((blocks, size(&f, "chain_params", false)?))
    } else {
        None
    };
    let shape = read_shape(&f, chain.is_some(), false).map_err(|e| {
        if chain.is_some() {
            in_block(0)(e)
        } else {
            e
        }
    })?;
    let mut groups = Vec::new();
    let mut blocks = Vec::new();
    for i in 1..chain.map_or(0, |(n, _)| n) {
        let name = format!("block{i}");
        let g = f
            .group(&name)
            .map_err(|_| corrupt(format!("group `{name}` is missing")))
            .map_err(in_block(i))?;
        blocks.push(read_shape(&g, true, true).map_err(in_block(i))?);
        groups.push((name, g));
    }
    // The parameter counts, in checked arithmetic: the attributes are not trusted yet.
    let inconsistent = |shape: &NetShape| {
        format!(
            "network shape {shape:?} is inconsistent or has more parameters than a file of {} bytes can hold",
            file_values * 8
        )
    };
    let len0 = shape
        .checked_len()
        .filter(|&len| len as u64 <= file_values)
        .ok_or_else(|| corrupt(inconsistent(&shape)))
        .map_err(|e| if chain.is_some() { in_block(0)(e) } else { e })?;
    let mut lens = vec![len0];
    for (i, b) in blocks.iter().enumerate() {
        let l = b
            .checked_len()
            .filter(|&len| len as u64 <= file_values)
            .ok_or_else(|| corrupt(inconsistent(b)))
            .map_err(in_block(i + 1))?;
        lens.push(l);
    }
    let len = lens
        .iter()
        .try_fold(0usize, |a, &l| a.checked_add(l))
        .filter(|&len| len as u64 <= file_values)
        .ok_or_else(|| {
            corrupt(format!(
                "the blocks' parameters {lens:?} cannot fit the file"
            ))
        })?;
    if let Some((_, stored)) = chain {
        let shapes: Vec<NetShape> = std::iter::once(shape)
            .chain(blocks.iter().copied())
            .collect();
        check_chain(&shapes).map_err(corrupt)?;
        if stored != len {
            return Err(corrupt(format!(
                "attribute `chain_params` = {stored}, but the {} need {len}",
                block_lens(&lens)
            )));
        }
    }
    let want = |dims: &[usize]| dims.iter().map(|&x| Some(x)).collect::<Vec<_>>();

    // A dataset `group/name` of element type `want_type` and shape `want` (`None`: any
    // length, bounded by the file's), read in full.
    let f64_type = TypeDescriptor::Float(FloatSize::U8);
    let dataset = |g: &hdf5::Group,
                   gname: &str,
                   name: &str,
                   want_type: &TypeDescriptor,
                   want: &[Option<usize>]|
     -> Result<(hdf5::Dataset, Vec<usize>), CheckpointError> {
        let ds = g
            .dataset(name)
            .map_err(|_| corrupt(format!("dataset `{gname}/{name}` is missing")))?;
        let t = ds.dtype().and_then(|t| t.to_descriptor());
        if t.as_ref().ok() != Some(want_type) {
            return Err(corrupt(format!(
                "dataset `{gname}/{name}` does not hold {want_type} values"
            )));
        }
        let sh = ds.shape();
        let fits = sh.len() == want.len()
            && sh.iter().zip(want).all(|(&a, b)| b.is_none_or(|b| a == b))
            && sh
                .iter()
                .try_fold(1usize, |acc, &x| acc.checked_mul(x))
                .is_some_and(|total| total as u64 <= file_values * 8);
        if !fits {
            let want: Vec<String> = want
                .iter()
                .map(|x| x.map_or("any".to_string(), |x| x.to_string()))
                .collect();
            return Err(corrupt(format!(
                "dataset `{gname}/{name}` has shape {sh:?}, expected [{}]",
                want.join(", ")
            )));
        }
        Ok((ds, sh))
    };
    let get = |g: &hdf5::Group,
               gname: &str,
               name: &str,
               want: &[Option<usize>]|
     -> Result<(Vec<f64>, Vec<usize>), CheckpointError> {
        let (ds, sh) = dataset(g, gname, name, &f64_type, want)?;
        let v = ds
            .read_raw::<f64>()
            .map_err(|e| corrupt(format!("dataset `{gname}/{name}`: {}", first_line(e))))?;
        Ok((v, sh))
    };
    let group = |name: &str| {
        f.group(name)
            .map_err(|_| corrupt(format!("group `{name}` is missing")))
    };
    // One block's parameter arrays in `g` into its θ, `th`.
    let block_params = |g: &hdf5::Group,
                        gp: &str,
                        shape: &NetShape,
                        th: &mut [f64]|
     -> Result<(), CheckpointError> {
        let layout = shape.layout();
        let (w, d, n) = (shape.width, shape.input, shape.hidden_sets);
        let ([open_shape, hidden_shape, bias_shape, class_shape], feat) = shape.array_shapes();
        let (ow, _) = get(g, gp, "opening_weight", &want(&open_shape))?;
        if shape.conv.is_none() {
            from_row_major(open_shape[0], d, &ow, &mut th[layout.open_weight.clone()]);
        } else {
            th[layout.open_weight.clone()].copy_from_slice(&ow);
        }
        let (ob, _) = get(g, gp, "opening_bias", &[Some(layout.open_bias.len())])?;
        th[layout.open_bias.clone()].copy_from_slice(&ob);
        let (hw, _) = get(g, gp, "hidden_weight", &want(&hidden_shape))?;
        let (hb, _) = get(g, gp, "hidden_bias", &want(&bias_shape))?;
        let (kl, bl) = (layout.shape.layer_weight_len(), bias_shape[1]);
        for i in 0..n {
            let kn = &hw[i * kl..(i + 1) * kl];
            if shape.conv.is_none() {
                from_row_major(w, w, kn, &mut th[layout.layer_weight(i)]);
            } else {
                th[layout.layer_weight(i)].copy_from_slice(kn);
            }
            th[layout.layer_bias(i)].copy_from_slice(&hb[i * bl..(i + 1) * bl]);
        }
        let class_rows = class_shape[0];
        let (cw, _) = get(g, gp, "classifier_weight", &want(&class_shape))?;
        from_row_major(class_rows, feat, &cw, &mut th[layout.class_weight.clone()]);
        let (cb, _) = get(g, gp, "classifier_bias", &[Some(class_rows)])?;
        th[layout.class_bias.clone()].copy_from_slice(&cb);
        if shape.time_scale {
            let (ts, _) = get(g, gp, "time_scale", &[Some(1)])?;
            th[layout.scale.clone()].copy_from_slice(&ts);
        }
        Ok(())
    };
    let mut params = vec![0.0; len];
    let (th0, mut rest) = params.split_at_mut(len0);
    block_params(&group("parameters")?, "parameters", &shape, th0)?;
    for (i, ((name, g), b)) in groups.iter().zip(&blocks).enumerate() {
        let (th, tail) = rest.split_at_mut(lens[i + 1]);
        block_params(g, name, b, th).map_err(in_block(i + 1))?;
        rest = tail;
    }
    drop(groups);

    let o = group("optimizer")?;
    let go = "optimizer";
    let (s_flat, s_shape) = get(&o, go, "lbfgs_s", &[None, Some(len)])?;
    let (y_flat, _) = get(&o, go, "lbfgs_y", &[Some(s_shape[0]), Some(len)])?;
    let split = |v: Vec<f64>| -> Vec<Vec<f64>> { v.chunks(len).map(|c| c.to_vec()).collect() };
    // A moment or velocity vector: empty (not used by this optimizer) or one per parameter.
    let vec_of = |name: &str| -> Result<Vec<f64>, CheckpointError> {
        let (v, sh) = get(&o, go, name, &[None])?;
        if sh[0] != 0 && sh[0] != len {
            return Err(corrupt(format!(
                "dataset `{go}/{name}` has shape {sh:?}, expected [{len}] or [0]"
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
    let gr = "rng";
    let u8_type = TypeDescriptor::Unsigned(IntSize::U1);
    let read_u64 = |name: &str, want: Option<usize>| -> Result<Vec<u64>, CheckpointError> {
        let (ds, _) = dataset(&r, gr, name, &u64_type, &[want])?;
        ds.read_raw::<u64>()
            .map_err(|e| corrupt(format!("dataset `{gr}/{name}`: {}", first_line(e))))
    };
    let (seed_ds, _) = dataset(&r, gr, "seed", &u8_type, &[Some(32)])?;
    let seed: [u8; 32] = seed_ds
        .read_raw::<u8>()
        .map_err(|e| corrupt(format!("dataset `{gr}/seed`: {}", first_line(e))))?
        .try_into()
        .map_err(|_| corrupt(format!("dataset `{gr}/seed` must hold 32 bytes")))?;
    let stream = read_u64("stream", Some(1))?[0];
    let wp = read_u64("word_pos", Some(2))?;
    let rng = RngState {
        seed,
        stream,
        word_pos: ((wp[0] as u128) << 64) | wp[1] as u128,
        batch_order: read_u64("batch_order", None)?,
    };

    let h = group("history")?;
    let columns: Vec<String> = str_attr(&h, "columns")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let (vals, _) = get(&h, "history", "values", &[None, Some(columns.len())])?;
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
        blocks,
        params,
        optimizer,
        rng,
        history,
    };
    let stored = u64_attr(&f, "checksum")?;
    if stored != ckpt.checksum() {
        return Err(corrupt("the checksum does not match the contents".into()));
    }
    // Files since layerpar 0.1 (this change) also cover `layerpar_version`; older files
    // have no `version_checksum` and are read as before.
    let layerpar_version = str_attr(&f, "layerpar_version")?;
    if f.attr("version_checksum").is_ok() {
        let stored = u64_attr(&f, "version_checksum")?;
        if stored != version_checksum(&layerpar_version, ckpt.checksum()) {
            return Err(corrupt(
                "the checksum of `layerpar_version` does not match".into(),
            ));
        }
    }
    Ok(ckpt)
}

/// The checksum over the writer's `layerpar_version` and the contents' checksum, stored as
/// the attribute `version_checksum` beside `checksum` (which older readers check alone).
fn version_checksum(layerpar_version: &str, checksum: u64) -> u64 {
    let mut h = Fnv::new();
    h.bytes(layerpar_version.as_bytes());
    h.u64s(&[checksum]);
    h.0
}

#[cfg(test)]
mod tests {
    /// These tests create and read HDF5 files; they run one at a time, since concurrent
    /// libhdf5 use in one process made a read of a just-closed file fail now and then
    /// ("unable to lock file, errno = 11").
    fn hdf5_serial() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }
    use super::*;

    fn sample() -> Checkpoint {
        let shape = NetShape {
            input: 2,
            width: 3,
            classes: 4,
            layers: 5,
            opening_params: true,
            hidden_sets: 5,
            classifier_params: true,
            time_scale: false,
            conv: None,
        };
        let len = shape.layout().len;
        let v = |s: f64| (0..len).map(|i| s * i as f64 + 0.25).collect::<Vec<f64>>();
        Checkpoint {
            config: "seed = 3\n".into(),
            iteration: 17,
            level: 1,
            shape,
            blocks: Vec::new(),
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
        let _serial = hdf5_serial();
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

    /// The copy opening, the average closing and a learnable time scale round-trip; the scale
    /// is the last parameter.
    #[test]
    fn parameter_free_layers_and_the_time_scale_round_trip() {
        let _serial = hdf5_serial();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        let mut c = sample();
        c.shape = NetShape {
            opening_params: false,
            classifier_params: false,
            time_scale: true,
            classes: 1,
            ..c.shape
        };
        let len = c.shape.layout().len;
        assert_eq!(len, 5 * 12 + 1);
        let v = |s: f64| (0..len).map(|i| s * i as f64 + 0.25).collect::<Vec<f64>>();
        c.params = v(0.5);
        c.optimizer.lbfgs_s = vec![v(1.0)];
        c.optimizer.lbfgs_y = vec![v(2.0)];
        c.optimizer.adam_m.clear();
        c.optimizer.adam_v.clear();
        c.optimizer.sgd_velocity.clear();
        write(&p, &c).unwrap();
        let r = read(&p).unwrap();
        assert!(same(&c, &r));
        assert_eq!(r.shape, c.shape);
        assert_eq!(*r.params.last().unwrap(), 0.5 * (len - 1) as f64 + 0.25);
    }

    /// A convolutional network's shape and kernels round-trip; the file's arrays have the
    /// kernels' shapes; a dense reader's idea of the same attributes is refused.
    #[test]
    fn convolutional_networks_round_trip() {
        let _serial = hdf5_serial();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        let mut c = sample();
        for readout in [Readout::Flatten, Readout::GlobalAverage] {
            let conv = ConvShape {
                in_channels: 2,
                channels: 3,
                height: 4,
                width: 5,
                kernel_h: 3,
                kernel_w: 3,
                readout,
                transition: None,
            };
            c.shape = NetShape {
                input: 40,
                width: 60,
                conv: Some(conv),
                ..c.shape
            };
            let len = c.shape.layout().len;
            let f = conv.features();
            assert_eq!(len, (54 + 3) + 5 * (81 + 3) + (4 * f + 4));
            let v = |s: f64| (0..len).map(|i| s * i as f64 + 0.25).collect::<Vec<f64>>();
            c.params = v(0.5);
            c.optimizer.lbfgs_s = vec![v(1.0)];
            c.optimizer.lbfgs_y = vec![v(2.0)];
            c.optimizer.adam_m.clear();
            c.optimizer.adam_v.clear();
            c.optimizer.sgd_velocity.clear();
            write(&p, &c).unwrap();
            let r = read(&p).unwrap();
            assert!(same(&c, &r));
            assert_eq!(r.shape, c.shape);
            let file = hdf5::File::open(&p).unwrap();
            let shape_of = |name: &str| file.dataset(name).unwrap().shape();
            assert_eq!(shape_of("parameters/opening_weight"), [3, 2, 3, 3]);
            assert_eq!(shape_of("parameters/hidden_weight"), [5, 3, 3, 3, 3]);
            assert_eq!(shape_of("parameters/hidden_bias"), [5, 3]);
            assert_eq!(shape_of("parameters/classifier_weight"), [4, f]);
        }
        // A shape whose sizes do not fit together (c·H·W ≠ width) does not read back, so
        // the write fails and leaves the previous file in place.
        let before = std::fs::read(&p).unwrap();
        c.shape.width = 61;
        c.optimizer = OptimizerState {
            kind: "lbfgs".into(),
            ..OptimizerState::default()
        };
        c.params = vec![0.5; c.shape.layout().len];
        let e = write(&p, &c).unwrap_err().to_string();
        assert!(e.contains("inconsistent") && !e.contains('\n'), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), before);
    }

    #[test]
    fn damaged_files_are_reported_not_loaded() {
        let _serial = hdf5_serial();
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
        let _serial = hdf5_serial();
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

    /// Files in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A checkpoint of `layers` layers of width 8 with Adam moments: about 0.6 kB a layer.
    fn sized(layers: usize, iteration: u64) -> Checkpoint {
        let shape = NetShape {
            input: 2,
            width: 8,
            classes: 5,
            layers,
            opening_params: false,
            hidden_sets: layers,
            classifier_params: true,
            time_scale: false,
            conv: None,
        };
        let len = shape.layout().len;
        let v = |s: f64| (0..len).map(|i| s * i as f64 + 0.5).collect::<Vec<f64>>();
        let mut c = sample();
        c.shape = shape;
        c.iteration = iteration;
        c.params = v(0.125);
        c.optimizer = OptimizerState {
            kind: "adam".into(),
            adam_m: v(1.0),
            adam_v: v(2.0),
            adam_t: 3,
            ..Default::default()
        };
        c
    }

    #[test]
    fn a_failure_at_every_stage_keeps_the_previous_checkpoint() {
        let _serial = hdf5_serial();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        let old = sample();
        write(&p, &old).unwrap();
        let new = sized(4, 99);
        for stage in [
            Stage::Created,
            Stage::Parameters,
            Stage::Groups,
            Stage::Closed,
            Stage::Verified,
        ] {
            for target in [p.clone(), dir.path().join("new.h5")] {
                let e = write_with(&target, &new, &mut |s, _| {
                    if s == stage {
                        Err(std::io::Error::other(format!("injected at {s:?}")))
                    } else {
                        Ok(())
                    }
                })
                .unwrap_err()
                .to_string();
                assert!(
                    e.contains(&format!("injected at {stage:?}")) && !e.contains('\n'),
                    "{e}"
                );
                assert!(same(&read(&p).unwrap(), &old), "{stage:?}");
                assert_eq!(names(dir.path()), ["c.h5"], "{stage:?}");
            }
        }
    }

    #[test]
    fn a_temporary_damaged_after_closing_is_not_published() {
        let _serial = hdf5_serial();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        let old = sample();
        write(&p, &old).unwrap();
        // What a lost write-back would leave: the tail of the file missing, or a byte changed.
        let damages: [fn(&Path); 2] = [
            |tmp| {
                let len = std::fs::metadata(tmp).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(tmp).unwrap();
                f.set_len(len * 2 / 3).unwrap();
            },
            |tmp| {
                let mut b = std::fs::read(tmp).unwrap();
                let needle = (0.125f64 * 7.0 + 0.5).to_le_bytes();
                let at = b.windows(8).position(|w| w == needle).unwrap();
                b[at] ^= 4;
                std::fs::write(tmp, b).unwrap();
            },
        ];
        for damage in damages {
            let e = write_with(&p, &sized(4, 99), &mut |s, tmp| {
                if s == Stage::Closed {
                    damage(tmp);
                }
                Ok(())
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains("does not read back") && !e.contains('\n'), "{e}");
            assert!(same(&read(&p).unwrap(), &old));
            assert_eq!(names(dir.path()), ["c.h5"]);
        }
    }

    /// A tmpfs of `size` mounted on a new directory, unmounted on drop; `None` where this
    /// process may not mount (not root, or no tmpfs), and the test is skipped.
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn mount(size: &str) -> Option<Tmpfs> {
            let dir = tempfile::tempdir().unwrap();
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("skipped: cannot mount a tmpfs (needs root)");
                return None;
            }
            Some(Tmpfs(dir))
        }
        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    #[test]
    fn a_full_disk_never_publishes_a_damaged_checkpoint() {
        let _serial = hdf5_serial();
        let Some(fs) = Tmpfs::mount("300k") else {
            return;
        };
        let dir = fs.path();
        // Checkpoints of growing size (as a run writes them, one per iteration) until the
        // file system is full: each write either publishes a loadable file or fails cleanly.
        let mut published = Vec::new();
        let mut failure = None;
        for i in 0..100u64 {
            let path = dir.join(format!("ckpt_{i:06}.h5"));
            let c = sized(8 + 8 * i as usize, i);
            match write(&path, &c) {
                Ok(()) => published.push((path, c)),
                Err(e) => {
                    failure = Some(e.to_string());
                    assert!(!path.exists(), "a failed write left {}", path.display());
                    break;
                }
            }
        }
        let e = failure.expect("the tmpfs fills up");
        eprintln!("after {} checkpoints: {e}", published.len());
        assert!(
            e.contains("cannot write checkpoint")
                && e.contains("No space left on device")
                && !e.contains('\n'),
            "{e}"
        );
        assert!(!published.is_empty(), "{e}");
        for (path, c) in &published {
            assert!(same(&read(path).unwrap(), c), "{}", path.display());
        }
        assert!(
            names(dir)
                .iter()
                .all(|n| n.starts_with("ckpt_") && n.ends_with(".h5")),
            "{:?}",
            names(dir)
        );
        // Overwriting the newest one with a bigger checkpoint fails and keeps it.
        let (newest, c) = published.last().unwrap();
        assert!(write(newest, &sized(400, 1000)).is_err());
        assert!(same(&read(newest).unwrap(), c));
        assert_eq!(names(dir).len(), published.len());
    }

    /// Rewrites `path` in place with `edit` (the contents stay, so the checksum still
    /// matches) and seals it again, as a tool rewriting the file consistently would.
    fn tamper(path: &Path, edit: impl FnOnce(&hdf5::File) -> hdf5::Result<()>) {
        let f = hdf5::File::open_rw(path).unwrap();
        edit(&f).unwrap();
        f.close().unwrap();
        seal(path).unwrap();
    }

    #[test]
    fn arrays_of_the_wrong_shape_or_type_are_refused() {
        let _serial = hdf5_serial();
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.h5");
        let c = sized(3, 5);
        let len = c.params.len();
        write(&good, &c).unwrap();
        type Edit = Box<dyn FnOnce(&hdf5::File) -> hdf5::Result<()>>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "dataset `optimizer/adam_m` has shape [1, ",
                Box::new(move |f| {
                    let o = f.group("optimizer")?;
                    let m = o.dataset("adam_m")?.read_raw::<f64>()?;
                    o.unlink("adam_m")?;
                    o.new_dataset::<f64>()
                        .shape([1, len])
                        .create("adam_m")?
                        .write_raw(&m)
                }),
            ),
            (
                "dataset `rng/word_pos` has shape [2, 1]",
                Box::new(|f| {
                    let r = f.group("rng")?;
                    let v = r.dataset("word_pos")?.read_raw::<u64>()?;
                    r.unlink("word_pos")?;
                    r.new_dataset::<u64>()
                        .shape([2, 1])
                        .create("word_pos")?
                        .write_raw(&v)
                }),
            ),
            (
                "dataset `rng/seed` does not hold",
                Box::new(|f| {
                    let r = f.group("rng")?;
                    let v: Vec<u16> = r
                        .dataset("seed")?
                        .read_raw::<u8>()?
                        .into_iter()
                        .map(u16::from)
                        .collect();
                    r.unlink("seed")?;
                    r.new_dataset::<u16>()
                        .shape([32])
                        .create("seed")?
                        .write_raw(&v)
                }),
            ),
            (
                "dataset `parameters/classifier_bias` does not hold",
                Box::new(|f| {
                    let p = f.group("parameters")?;
                    let v: Vec<f32> = p
                        .dataset("classifier_bias")?
                        .read_raw::<f64>()?
                        .into_iter()
                        .map(|x| x as f32)
                        .collect();
                    p.unlink("classifier_bias")?;
                    p.new_dataset::<f32>()
                        .shape([v.len()])
                        .create("classifier_bias")?
                        .write_raw(&v)
                }),
            ),
            (
                "attribute `iteration` is not a scalar",
                Box::new(|f| {
                    f.delete_attr("iteration")?;
                    f.new_attr::<i32>()
                        .shape(())
                        .create("iteration")?
                        .write_scalar(&5)
                }),
            ),
            (
                "attribute `layers` = 1000000000000 is impossible",
                Box::new(|f| {
                    f.delete_attr("layers")?;
                    f.new_attr::<u64>()
                        .shape(())
                        .create("layers")?
                        .write_scalar(&1_000_000_000_000u64)
                }),
            ),
            (
                "has more parameters than a file of",
                Box::new(|f| {
                    // Each size alone is possible, but not the product.
                    f.delete_attr("hidden_sets")?;
                    f.new_attr::<u64>()
                        .shape(())
                        .create("hidden_sets")?
                        .write_scalar(&1000u64)
                }),
            ),
            (
                "the checksum of `layerpar_version` does not match",
                Box::new(|f| {
                    f.delete_attr("layerpar_version")?;
                    f.new_attr::<VarLenUnicode>()
                        .shape(())
                        .create("layerpar_version")?
                        .write_scalar(&VarLenUnicode::from_str("9.9.9").unwrap())
                }),
            ),
        ];
        for (i, (expect, edit)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("bad{i}.h5"));
            std::fs::copy(&good, &p).unwrap();
            tamper(&p, edit);
            let e = read(&p).unwrap_err().to_string();
            assert!(
                e.contains(expect) && e.contains(&format!("bad{i}.h5")) && !e.contains('\n'),
                "`{e}` does not say `{expect}`"
            );
        }
        // Any change by HDF5 without a new seal is refused before HDF5 parses the file.
        let unsealed = dir.path().join("unsealed.h5");
        std::fs::copy(&good, &unsealed).unwrap();
        let f = hdf5::File::open_rw(&unsealed).unwrap();
        f.attr("iteration").unwrap().write_scalar(&18u64).unwrap();
        f.close().unwrap();
        let e = read(&unsealed).unwrap_err().to_string();
        assert!(e.contains("the file checksum does not match"), "{e}");
        let mut b = std::fs::read(&good).unwrap();
        b.push(0);
        std::fs::write(&unsealed, &b).unwrap();
        let e = read(&unsealed).unwrap_err().to_string();
        assert!(e.contains("truncated or extended"), "{e}");
        // A file from before the seal (no header in the userblock) is read by the HDF5 checks.
        let mut b = std::fs::read(&good).unwrap();
        b[..USERBLOCK].fill(0);
        std::fs::write(&unsealed, &b).unwrap();
        assert!(same(&read(&unsealed).unwrap(), &c));
        // A file from before `version_checksum` existed is still read.
        let old = dir.path().join("old.h5");
        std::fs::copy(&good, &old).unwrap();
        tamper(&old, |f| f.delete_attr("version_checksum"));
        assert!(same(&read(&old).unwrap(), &c));
    }

    /// A chain of three convolutional blocks: block 0 (1 → 2 channels of 8×6, no
    /// transition), block 1 (average pooling to 4×3, 2 → 3 channels, two spline coefficient
    /// sets for three layers), block 2 (max pooling to 2×1, 3 → 4 channels, 5 classes,
    /// global average read-out, a learnable time scale); the inner blocks have no classes.
    fn chain() -> Checkpoint {
        let conv = |in_channels, channels, height, width, kernel_w, transition| ConvShape {
            in_channels,
            channels,
            height,
            width,
            kernel_h: 3,
            kernel_w,
            readout: Readout::Flatten,
            transition,
        };
        let block = |input, width, classes, layers, hidden_sets, conv| NetShape {
            input,
            width,
            classes,
            layers,
            opening_params: true,
            hidden_sets,
            classifier_params: true,
            time_scale: false,
            conv: Some(conv),
        };
        let b0 = block(48, 96, 0, 2, 2, conv(1, 2, 8, 6, 3, None));
        let b1 = block(
            96,
            36,
            0,
            3,
            2,
            conv(
                2,
                3,
                4,
                3,
                3,
                Some(Transition {
                    pool: Some(Pool::Average),
                    in_height: 8,
                    in_width: 6,
                }),
            ),
        );
        let mut c2 = conv(
            3,
            4,
            2,
            1,
            1,
            Some(Transition {
                pool: Some(Pool::Max),
                in_height: 4,
                in_width: 3,
            }),
        );
        c2.readout = Readout::GlobalAverage;
        let b2 = NetShape {
            time_scale: true,
            ..block(36, 8, 5, 2, 2, c2)
        };
        let len: usize = [b0, b1, b2].iter().map(|b| b.layout().len).sum();
        let v = |s: f64| (0..len).map(|i| s * i as f64 + 0.25).collect::<Vec<f64>>();
        let mut c = sample();
        c.shape = b0;
        c.blocks = vec![b1, b2];
        c.params = v(0.5);
        c.optimizer = OptimizerState {
            kind: "adam".into(),
            adam_m: v(1.0),
            adam_v: v(2.0),
            adam_t: 4,
            ..Default::default()
        };
        c
    }

    #[test]
    fn a_chain_of_blocks_round_trips() {
        let _serial = hdf5_serial();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        let c = chain();
        assert_eq!(c.validate(), Ok(()));
        write(&p, &c).unwrap();
        let r = read(&p).unwrap();
        assert!(same(&c, &r));
        assert_eq!(r.shape, c.shape);
        assert_eq!(r.blocks, c.blocks);
        // The params split: each block's θ, as long as its layout, one after the other.
        let ranges = r.block_ranges();
        let lens: Vec<usize> = r.shapes().map(|s| s.layout().len).collect();
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0], 0..lens[0]);
        assert_eq!(ranges[1], lens[0]..lens[0] + lens[1]);
        assert_eq!(ranges[2].end, r.params.len());
        // Each block's arrays, with the kernels' shapes, in its own group.
        let file = hdf5::File::open(&p).unwrap();
        let shape_of = |name: &str| file.dataset(name).unwrap().shape();
        let data = |name: &str| file.dataset(name).unwrap().read_raw::<f64>().unwrap();
        assert_eq!(shape_of("parameters/hidden_weight"), [2, 2, 2, 3, 3]);
        assert_eq!(shape_of("parameters/classifier_weight"), [0, 96]);
        let (o1, o2) = (c.blocks[0].opening_kernel(), c.blocks[1].opening_kernel());
        assert_eq!(
            shape_of("block1/opening_weight"),
            [3, 2, o1.0, o1.1],
            "{o1:?}"
        );
        assert_eq!(shape_of("block1/hidden_weight"), [2, 3, 3, 3, 3]);
        assert_eq!(shape_of("block1/classifier_weight"), [0, 36]);
        assert_eq!(shape_of("block2/opening_weight"), [4, 3, o2.0, o2.1]);
        assert_eq!(shape_of("block2/hidden_weight"), [2, 4, 4, 3, 1]);
        assert_eq!(shape_of("block2/classifier_weight"), [5, 4]);
        assert_eq!(shape_of("block2/time_scale"), [1]);
        let l1 = c.blocks[0].layout();
        assert_eq!(
            data("block1/hidden_bias"),
            [
                &c.params[ranges[1].start..][l1.layer_bias(0)],
                &c.params[ranges[1].start..][l1.layer_bias(1)]
            ]
            .concat()
        );
        assert_eq!(data("block2/time_scale"), [*c.params.last().unwrap()]);
        let str_attr = |loc: &hdf5::Location, name: &str| {
            loc.attr(name)
                .unwrap()
                .read_scalar::<VarLenUnicode>()
                .unwrap()
                .to_string()
        };
        let u64_attr = |loc: &hdf5::Location, name: &str| {
            loc.attr(name).unwrap().read_scalar::<u64>().unwrap()
        };
        let (g1, g2) = (file.group("block1").unwrap(), file.group("block2").unwrap());
        assert_eq!(str_attr(&g1, "transition_pool"), "average");
        assert_eq!(str_attr(&g2, "transition_pool"), "max");
        assert_eq!(u64_attr(&g2, "transition_in_height"), 4);
        assert_eq!(u64_attr(&g2, "transition_in_width"), 3);
        assert_eq!(u64_attr(&file, "chain_blocks"), 3);
        assert_eq!(u64_attr(&file, "chain_params"), c.params.len() as u64);
        assert_eq!(u64_attr(&file, "classes"), 0);
        assert!(file.attr("transition_pool").is_err());
        // Without pooling the sizes stay; the checksum covers the transition.
        let mut none = c.clone();
        let mut c2 = none.blocks[1].conv.unwrap();
        c2.transition = Some(Transition {
            pool: None,
            in_height: 2,
            in_width: 1,
        });
        c2.height = 2;
        none.blocks[1].conv = Some(c2);
        none.blocks[1].input = 3 * 2;
        // (Block 2 then takes 2×1 images, which block 1 does not have.)
        let e = none.validate().unwrap_err();
        assert!(e.starts_with("block 2: takes images of 2×1"), "{e}");
        assert_ne!(none.checksum(), c.checksum());
    }

    /// A one-block network writes no chain attributes and no block groups.
    #[test]
    fn one_block_files_have_no_chain() {
        let _serial = hdf5_serial();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        let c = sample();
        let whole = 0..c.params.len();
        assert_eq!(c.block_ranges(), vec![whole]);
        write(&p, &c).unwrap();
        let file = hdf5::File::open(&p).unwrap();
        assert!(file.attr("chain_blocks").is_err() && file.attr("chain_params").is_err());
        assert_eq!(
            file.member_names().unwrap(),
            ["history", "optimizer", "parameters", "rng"]
        );
        assert!(read(&p).unwrap().blocks.is_empty());
    }

    #[test]
    fn damaged_chains_are_refused_naming_the_block() {
        let _serial = hdf5_serial();
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.h5");
        let c = chain();
        write(&good, &c).unwrap();
        let set_u64 = |g: &str, name: &'static str, v: u64| -> Edit {
            let g = g.to_string();
            Box::new(move |f| {
                let loc = f.group(if g.is_empty() { "/" } else { &g })?;
                loc.delete_attr(name)?;
                loc.new_attr::<u64>()
                    .shape(())
                    .create(name)?
                    .write_scalar(&v)
            })
        };
        type Edit = Box<dyn FnOnce(&hdf5::File) -> hdf5::Result<()>>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "block 1: attribute `conv_channels` is missing",
                Box::new(|f| f.group("block1")?.delete_attr("conv_channels")),
            ),
            (
                "block 2: attribute `transition_pool` = \"min\" is not",
                Box::new(|f| {
                    let g = f.group("block2")?;
                    g.delete_attr("transition_pool")?;
                    g.new_attr::<VarLenUnicode>()
                        .shape(())
                        .create("transition_pool")?
                        .write_scalar(&VarLenUnicode::from_str("min").unwrap())
                }),
            ),
            (
                "block 2: attribute `time_scale` is not a scalar",
                Box::new(|f| {
                    let g = f.group("block2")?;
                    g.delete_attr("time_scale")?;
                    g.new_attr::<f64>()
                        .shape(())
                        .create("time_scale")?
                        .write_scalar(&1.0)
                }),
            ),
            (
                "block 2: dataset `block2/hidden_weight` is missing",
                Box::new(|f| f.group("block2")?.unlink("hidden_weight")),
            ),
            (
                "block 1: dataset `block1/opening_bias` has shape [2]",
                Box::new(|f| {
                    let g = f.group("block1")?;
                    g.unlink("opening_bias")?;
                    g.new_dataset::<f64>()
                        .shape([2])
                        .create("opening_bias")?
                        .write_raw(&[0.0, 1.0])
                }),
            ),
            (
                "block 2: group `block2` is missing",
                Box::new(|f| f.unlink("block2")),
            ),
            (
                "block 1: network shape",
                // The pooled 10×6 images are not block 1's 4×3.
                set_u64("block1", "transition_in_height", 10),
            ),
            (
                "block 1: an inner block of a chain has 2 classes",
                set_u64("block1", "classes", 2),
            ),
            (
                "block 2: takes 2 channels, block 1 has 3",
                Box::new(move |f| {
                    set_u64("block2", "conv_in_channels", 2)(f)?;
                    set_u64("block2", "input_dim", 24)(f)
                }),
            ),
            (
                "attribute `chain_params` = 7, but the blocks' layouts (block 0: ",
                set_u64("", "chain_params", 7),
            ),
            (
                "attribute `chain_params` = ",
                // One more spline set in block 1: more parameters than the file says.
                set_u64("block1", "hidden_sets", 3),
            ),
            (
                "block 0: attribute `conv_kernel_w` is missing",
                Box::new(|f| f.delete_attr("conv_kernel_w")),
            ),
            (
                // Not a chain any more: block 0 alone would need classes.
                "attribute `classes` = 0 is impossible",
                Box::new(|f| f.delete_attr("chain_blocks")),
            ),
        ];
        for (i, (expect, edit)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("bad{i}.h5"));
            std::fs::copy(&good, &p).unwrap();
            tamper(&p, edit);
            let e = match std::panic::catch_unwind(|| read(&p)) {
                Ok(r) => r.unwrap_err().to_string(),
                Err(_) => panic!("reading bad{i}.h5 panicked"),
            };
            assert!(
                e.contains(expect) && e.contains(&format!("bad{i}.h5")) && !e.contains('\n'),
                "`{e}` does not say `{expect}`"
            );
        }
    }

    #[test]
    fn a_chain_that_does_not_fit_is_not_written() {
        let _serial = hdf5_serial();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.h5");
        let c = chain();
        write(&p, &c).unwrap();
        let before = std::fs::read(&p).unwrap();
        let refused = |bad: &Checkpoint, expect: &str| {
            let e = write(&p, bad).unwrap_err().to_string();
            assert!(
                e.contains("cannot write checkpoint") && e.contains(expect) && !e.contains('\n'),
                "`{e}` does not say `{expect}`"
            );
            assert_eq!(std::fs::read(&p).unwrap(), before);
            assert_eq!(names(dir.path()), ["c.h5"]);
        };
        let mut bad = c.clone();
        bad.params.pop();
        let lens: Vec<usize> = c.shapes().map(|s| s.layout().len).collect();
        refused(
            &bad,
            &format!(
                "the parameters have {} values, the blocks' layouts (block 0: {}, block 1: {}, block 2: {}) need {}",
                c.params.len() - 1,
                lens[0],
                lens[1],
                lens[2],
                c.params.len()
            ),
        );
        let mut bad = c.clone();
        bad.params.push(0.0);
        refused(&bad, "the parameters have");
        let mut bad = c.clone();
        bad.blocks[0].classes = 5;
        refused(&bad, "block 1: an inner block of a chain has 5 classes");
        let mut bad = c.clone();
        bad.blocks[1].classes = 0;
        refused(&bad, "block 2: the last block of a chain has no classes");
        let mut bad = c.clone();
        bad.blocks[1].conv.as_mut().unwrap().transition = None;
        refused(&bad, "block 2: network shape");
        let mut bad = c.clone();
        bad.blocks[0].conv = None;
        refused(&bad, "block 1: the blocks of a chain must be convolutional");
        let mut bad = c.clone();
        let c1 = bad.blocks[0].conv.as_mut().unwrap();
        c1.transition.as_mut().unwrap().pool = None;
        c1.height = 8;
        c1.width = 6;
        bad.blocks[0].width = 3 * 48;
        refused(&bad, "block 2: takes images of 4×3, block 1 has 8×6");
        // A block 0 with a transition (a one-block network too) round-trips.
        let mut one = sample();
        one.shape = chain().blocks[1];
        one.shape.classes = 4;
        let len = one.shape.layout().len;
        one.params = vec![0.5; len];
        one.optimizer = OptimizerState {
            kind: "sgd".into(),
            ..Default::default()
        };
        let q = dir.path().join("one.h5");
        write(&q, &one).unwrap();
        let r = read(&q).unwrap();
        assert_eq!(r.shape, one.shape);
        assert!(r.blocks.is_empty());
    }

    /// `read(path)` in a thread: its error, or a failure if it takes more than 20 s.
    fn read_error_within_20s(path: &Path) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(read(&p).map(|_| ()).map_err(|e| e.to_string()));
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("reading {} hangs", path.display()))
            .unwrap_err()
    }

    #[test]
    fn only_regular_files_are_read() {
        let _serial = hdf5_serial();
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("p.h5");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let mut cases = vec![
            (
                dir.path().to_path_buf(),
                "is a directory, not a regular file",
            ),
            (
                PathBuf::from("/dev/zero"),
                "is a character device, not a regular file",
            ),
        ];
        if made.is_ok_and(|s| s.success()) {
            cases.push((fifo, "is a FIFO, not a regular file"));
        }
        for (p, expect) in cases {
            let e = read_error_within_20s(&p);
            assert!(
                e.contains(expect) && e.contains(&*p.to_string_lossy()) && !e.contains('\n'),
                "{e}"
            );
        }
    }
}
