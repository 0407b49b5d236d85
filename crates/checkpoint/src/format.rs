//! The checkpoint format: the contents' types and the network shape they belong to, the
//! arrays' shapes and orders in the file, the checksums (FNV-1a) and the userblock that
//! holds the file checksum.

use odenet::{Closing, ConvShape, Layout, Opening, Pool, Readout, Shape};

/// The version this code writes and reads.
pub const FORMAT_VERSION: u64 = 1;

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
    pub(crate) fn array_shapes(&self) -> ([Vec<usize>; 4], usize) {
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
    pub(crate) fn opening_kernel(&self) -> (usize, usize) {
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
    pub(crate) fn checked_len(&self) -> Option<usize> {
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
pub(crate) fn block_lens(lens: &[usize]) -> String {
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
pub(crate) fn pool_name(pool: Option<Pool>) -> &'static str {
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
pub(crate) fn to_row_major(m: usize, n: usize, a: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = a[i + j * m];
        }
    }
    out
}

pub(crate) fn from_row_major(m: usize, n: usize, a: &[f64], out: &mut [f64]) {
    for i in 0..m {
        for j in 0..n {
            out[i + j * m] = a[i * n + j];
        }
    }
}

/// Bytes reserved at the start of a checkpoint for the file checksum (an HDF5 userblock,
/// which HDF5, h5py and h5dump skip).
pub(crate) const USERBLOCK: usize = 512;
pub(crate) const SEAL_MAGIC: &[u8] = b"layerpar checkpoint\n";

/// FNV-1a over the bytes of `file` from `USERBLOCK` on, and their number.
pub(crate) fn file_hash(file: &mut std::fs::File) -> std::io::Result<(u64, u64)> {
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

/// The checksum over the writer's `layerpar_version` and the contents' checksum, stored as
/// the attribute `version_checksum` beside `checksum` (which older readers check alone).
pub(crate) fn version_checksum(layerpar_version: &str, checksum: u64) -> u64 {
    let mut h = Fnv::new();
    h.bytes(layerpar_version.as_bytes());
    h.u64s(&[checksum]);
    h.0
}
