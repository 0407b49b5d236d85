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
            // (A transition, and a chain's later blocks, only where there are any.)
            hash_conv(&mut h, &c);
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
                        h.u64s(&[1]);
                        hash_conv(&mut h, &c);
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

/// Feeds a convolutional structure to the checksum: its seven sizes and flags, then its
/// transition when it has one.
fn hash_conv(h: &mut Fnv, c: &ConvShape) {
    h.u64s(&[
        c.in_channels as u64,
        c.channels as u64,
        c.height as u64,
        c.width as u64,
        c.kernel_h as u64,
        c.kernel_w as u64,
        (c.readout == Readout::GlobalAverage) as u64,
    ]);
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
mod tests;
