//! The run configuration: TOML sections `[data] [network] [controls] [mgrit] [optimizer]
//! [output] [nested] [parallel]` and a top-level `seed`, with `--set section.key=value` overrides.
//!
//! Loading checks every key against the defaults before anything runs: an unknown key, a value
//! of the wrong type and an out-of-range value each get a one-line error that names the key.

use anyhow::{anyhow, bail, Context, Result};
use bspline::KnotKind;
use odenet::{Activation, Closing, Loss, Opening, Readout};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The commented default configuration printed by `layerpar config`. A test checks that it
/// parses to exactly [`Config::default`] and mentions every key.
pub const DEFAULT_TOML: &str = include_str!("default_config.toml");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seed of every random choice (data, initialization, batches).
    pub seed: u64,
    pub data: DataConfig,
    pub network: NetworkConfig,
    pub controls: ControlsConfig,
    pub mgrit: MgritConfig,
    pub optimizer: OptimizerConfig,
    pub output: OutputConfig,
    pub nested: NestedConfig,
    /// Data × layer parallelism (absent from configurations stored before it existed).
    #[serde(default)]
    pub parallel: ParallelConfig,
}

/// `[parallel]`: the P ranks form a `data_groups` × L grid; each row of L ranks holds the
/// layers (layer parallelism) and its whole chunks of every batch (data parallelism).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelConfig {
    /// D: rows of the grid (P must be a multiple).
    pub data_groups: usize,
    /// K ≥ D: every batch is cut into this many chunks whose sums are added in chunk order,
    /// so results are the same for every data_groups ≤ chunks.
    pub chunks: usize,
}

impl Default for ParallelConfig {
    fn default() -> Self {
        ParallelConfig {
            data_groups: 1,
            chunks: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NestedConfig {
    /// Networks trained in turn; the last has network.layers layers, each earlier one
    /// `refine` times fewer.
    pub levels: usize,
    pub refine: usize,
    /// How a deeper network's controls come from the shallower one (see [`Config::interp`]).
    pub interp: Interp,
    /// Iterations per level (empty: optimizer.max_iter for each).
    pub max_iter: Vec<usize>,
    /// Accuracy at which a level stops early (empty: none), measured by `target_measure`.
    pub target_acc: Vec<f64>,
    /// Which accuracy `target_acc` is compared with: validation (the default) or training.
    pub target_measure: TargetMeasure,
    /// MGRIT levels per nested level (empty: mgrit.max_levels for each).
    pub mgrit_levels: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Generated (Peaks) or read from `path` (CSV, HDF5).
    pub kind: DataKind,
    pub path: String,
    /// Peaks: training examples.
    pub train_size: usize,
    /// Peaks: validation examples.
    pub val_size: usize,
    /// Files without a validation split: fraction of examples held out for validation.
    pub val_fraction: f64,
    /// IDX: the training images and labels files (plain or gzip).
    pub train_images: String,
    pub train_labels: String,
    /// IDX: the test images and labels files, the validation set (both or neither; without
    /// them `val_fraction` of the training set is held out).
    pub test_images: String,
    pub test_labels: String,
    /// [channels, height, width] of an example (CSV, HDF5; empty: none, or the HDF5 file's
    /// attribute `image_shape`); idx and cifar10 know theirs.
    pub image_shape: Vec<usize>,
    /// How features are scaled after loading.
    pub normalize: Normalize,
    /// Files: use at most this many training (validation) examples, the first ones; 0 = all.
    pub max_train: usize,
    pub max_val: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Dense layers on feature vectors, or convolutions on images.
    pub kind: NetworkKind,
    pub width: usize,
    /// Convolutional networks: channels c of the hidden state.
    pub channels: usize,
    /// Convolutional networks: the kernel size k (k × k, or k × 1 for 1-D data).
    pub kernel: usize,
    /// Convolutional networks: the classifier's features (flatten or global average).
    pub readout: Readout,
    pub layers: usize,
    pub final_time: f64,
    pub activation: Activation,
    pub opening: Opening,
    pub closing: Closing,
    /// Make the time scale s (the ODE runs to s·T) a trainable parameter, starting at 1.
    pub learn_time_scale: bool,
    pub loss: Loss,
    pub init_open: f64,
    pub init_hidden: f64,
    pub init_class: f64,
    /// Convolutional networks: the ODE blocks after the first (which `layers` and `channels`
    /// describe), in order; empty: one block.
    pub blocks: Vec<BlockConfig>,
}

/// A later ODE block of a convolutional network (`[[network.blocks]]`): its opening pools the
/// state of the block before (`pool`) and changes its channels by an activated 1×1
/// convolution, then it takes `layers` residual convolutions over `channels` channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    /// Hidden layers N_i of the block (required, ≥ 1).
    pub layers: usize,
    /// Channels of the block's state; 0 = those of the block before.
    pub channels: usize,
    /// "average" | "max" (2×2 pooling, stride 2; 2×1 for 1-D data) | "none".
    pub pool: String,
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            layers: 0,
            channels: 0,
            pool: "average".into(),
        }
    }
}

impl BlockConfig {
    /// The pooling of the block's opening (None: none), or the error naming block `i`
    /// (counted from 1 in `network.blocks`).
    pub fn pooling(&self, i: usize) -> Result<Option<odenet::Pool>> {
        match self.pool.as_str() {
            "average" => Ok(Some(odenet::Pool::Average)),
            "max" => Ok(Some(odenet::Pool::Max)),
            "none" => Ok(None),
            other => bail!(
                "config key `network.blocks[{i}].pool` must be \"average\", \"max\" or \"none\", got \"{other}\""
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlsConfig {
    pub kind: ControlsKind,
    pub degree: usize,
    pub count: usize,
    pub knots: KnotKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MgritConfig {
    pub max_levels: usize,
    pub cfactor: usize,
    pub cfactor_levels: Vec<usize>,
    pub min_coarse: usize,
    pub nrelax: usize,
    pub nrelax_levels: Vec<usize>,
    pub max_iter: usize,
    pub tol: f64,
    pub adjoint_max_iter: usize,
    pub adjoint_tol: f64,
    pub fmg: bool,
    pub skip: bool,
    pub warm_restart: bool,
    /// How a warm-restarted solve starts on a new mini-batch.
    pub batch_start: BatchStart,
    /// Keep σ'(Z_n) of each layer from the forward solution for the adjoint (one state per
    /// layer more memory, a product fewer per adjoint step; the same bits).
    pub keep_derivatives: bool,
    pub print_level: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub max_iter: usize,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub gtol: f64,
    pub lbfgs_memory: usize,
    pub ls_factor: f64,
    pub ls_c: f64,
    pub ls_max_iter: usize,
    pub momentum: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub schedule: ScheduleKind,
    pub lr_step: usize,
    pub lr_gamma: f64,
    pub lr_min: f64,
    pub gamma_tik: f64,
    pub gamma_ddt: f64,
    pub gamma_class: f64,
    /// Stop as diverged when the objective exceeds this factor times the smaller of its best
    /// so far and the loss of zero logits (and is worse than the latter); 0 disables.
    pub divergence_factor: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub history: String,
    pub checkpoint_dir: String,
    pub checkpoint_every: usize,
    pub keep_last: usize,
    pub print_every: usize,
    /// The whole-set metrics (training J, loss, accuracy; validation) every this many
    /// iterations (and at row 0, the last row and checkpoints).
    pub metrics_every: usize,
    pub progress: Progress,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            data: DataConfig {
                kind: DataKind::Peaks,
                path: String::new(),
                train_size: 5000,
                val_size: 200,
                val_fraction: 0.1,
                train_images: String::new(),
                train_labels: String::new(),
                test_images: String::new(),
                test_labels: String::new(),
                image_shape: Vec::new(),
                normalize: Normalize::Auto,
                max_train: 0,
                max_val: 0,
            },
            network: NetworkConfig {
                kind: NetworkKind::Dense,
                width: 8,
                channels: 8,
                kernel: 3,
                readout: Readout::Flatten,
                layers: 30,
                final_time: 1.0,
                activation: Activation::SmoothRelu,
                opening: Opening::Activate,
                closing: Closing::Affine,
                learn_time_scale: false,
                loss: Loss::CrossEntropy,
                init_open: 1.0,
                init_hidden: 0.1,
                init_class: 0.1,
                blocks: Vec::new(),
            },
            controls: ControlsConfig {
                kind: ControlsKind::Layer,
                degree: 3,
                count: 8,
                knots: KnotKind::Clamped,
            },
            mgrit: MgritConfig {
                max_levels: 1,
                cfactor: 2,
                cfactor_levels: Vec::new(),
                min_coarse: 2,
                nrelax: 1,
                nrelax_levels: Vec::new(),
                max_iter: 2,
                tol: 1e-9,
                adjoint_max_iter: 2,
                adjoint_tol: 1e-9,
                fmg: false,
                skip: true,
                warm_restart: true,
                batch_start: BatchStart::Coarse,
                keep_derivatives: true,
                print_level: 0,
            },
            optimizer: OptimizerConfig {
                kind: OptimizerKind::Lbfgs,
                max_iter: 130,
                learning_rate: 1.0,
                batch_size: 0,
                gtol: 1e-8,
                lbfgs_memory: 20,
                ls_factor: 0.5,
                ls_c: 1e-4,
                ls_max_iter: 20,
                momentum: 0.9,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                schedule: ScheduleKind::Constant,
                lr_step: 30,
                lr_gamma: 0.1,
                lr_min: 0.0,
                gamma_tik: 1e-7,
                gamma_ddt: 1e-7,
                gamma_class: 1e-7,
                divergence_factor: 1e4,
            },
            output: OutputConfig {
                history: "runs/history.csv".into(),
                checkpoint_dir: "runs".into(),
                checkpoint_every: 0,
                keep_last: 3,
                print_every: 1,
                metrics_every: 1,
                progress: Progress::Auto,
            },
            nested: NestedConfig {
                levels: 1,
                refine: 2,
                interp: Interp::Constant,
                max_iter: Vec::new(),
                target_acc: Vec::new(),
                target_measure: TargetMeasure::Val,
                mgrit_levels: Vec::new(),
            },
            parallel: ParallelConfig::default(),
        }
    }
}

/// A choice among named values: an enum whose values are spelled in the TOML text by
/// their (serde) names. [`Choice::CHOICES`] lists every value with its name, in the order an
/// error message names them; loading checks a key's string against these names (naming the
/// key) before serde turns it into the enum, so a serde error never reaches the user.
pub trait Choice: Copy + PartialEq + 'static {
    /// Every value with its name, in the order the error message lists them.
    const CHOICES: &'static [(&'static str, Self)];

    /// The name of this value in the TOML text.
    fn name(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, v)| *v == self)
            .map(|(n, _)| *n)
            .expect("CHOICES lists every value")
    }

    /// Every name, in the order of [`Choice::CHOICES`].
    fn names() -> Vec<&'static str> {
        Self::CHOICES.iter().map(|(n, _)| *n).collect()
    }
}

/// An enum of configuration choices with its names: serde (de)serializes each value as its
/// name, [`Choice`] lists them and `Display` prints the name.
macro_rules! choice_enum {
    ($(#[$m:meta])* pub enum $ty:ident { $($(#[$vm:meta])* $var:ident = $name:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $ty {
            $($(#[$vm])* #[serde(rename = $name)] $var,)+
        }
        impl Choice for $ty {
            const CHOICES: &'static [(&'static str, Self)] = &[$(($name, $ty::$var)),+];
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

choice_enum! {
    /// Which optimizer trains the network.
    pub enum OptimizerKind {
        /// Full-batch L-BFGS with Armijo backtracking.
        Lbfgs = "lbfgs",
        /// Adam over mini-batches.
        Adam = "adam",
        /// SGD with momentum over mini-batches.
        Sgd = "sgd",
    }
}

choice_enum! {
    /// Where the data comes from.
    pub enum DataKind {
        /// The Peaks data set, generated in code.
        Peaks = "peaks",
        /// Sine regression, generated in code: y = sin(x), x uniform on [−π, π].
        Sine = "sine",
        Csv = "csv",
        Hdf5 = "hdf5",
        /// IDX images and labels files (MNIST, Fashion-MNIST), plain or gzip.
        Idx = "idx",
        /// The CIFAR-10 binary batches in a directory.
        Cifar10 = "cifar10",
    }
}

choice_enum! {
    /// How features are scaled after loading (see [`layerpar_data::Normalization`]).
    pub enum Normalize {
        /// "unit" for idx and cifar10, "none" for every other kind.
        Auto = "auto",
        /// The values as read.
        None = "none",
        /// x / 255.
        Unit = "unit",
        /// x / 255, then per channel (c − mean) / std with the training set's statistics.
        Standard = "standard",
    }
}

choice_enum! {
    /// How progress is shown on rank 0.
    pub enum Progress {
        /// A bar on a terminal, plain lines otherwise.
        Auto = "auto",
        Bar = "bar",
        Lines = "lines",
        None = "none",
    }
}

choice_enum! {
    /// The learning-rate schedule over epochs (see [`optim::Schedule`]).
    pub enum ScheduleKind {
        /// η(e) = η₀.
        Constant = "constant",
        /// η(e) = η₀ · lr_gamma^⌊e / lr_step⌋.
        Step = "step",
        /// η(e) from η₀ down to lr_min at e = max_iter along a half cosine.
        Cosine = "cosine",
    }
}

choice_enum! {
    /// How the hidden controls θ_n (n < N) are parameterized.
    pub enum ControlsKind {
        /// One parameter set (K_n, b_n) per hidden layer.
        Layer = "layer",
        /// θ(t) = Σ_{i<M} c_i B_i(t), layer n using θ(n·h).
        Spline = "spline",
    }
}

choice_enum! {
    /// How a deeper (or shallower) network's hidden controls are made from another's, with T
    /// fixed: fine layer i sits at t_i = i·h.
    pub enum Interp {
        /// θ(t) of the coarse layer whose interval holds t: layer ⌊i·N_c/N_f⌋.
        Constant = "constant",
        /// Linear in t between the coarse layers around t (constant after the last one).
        Linear = "linear",
        /// Spline controls: keep the coefficients (only N changes).
        Keep = "keep",
        /// Spline controls on clamped knots: insert the midpoint of every knot interval
        /// (Boehm), which leaves θ(t) unchanged and gives 2M − d coefficient sets.
        Knots = "knots",
    }
}

choice_enum! {
    /// The kind of network: its hidden layers and what it reads.
    pub enum NetworkKind {
        /// Dense layers of width w on feature vectors.
        Dense = "dense",
        /// Convolutions over c channels of the data's images.
        Conv = "conv",
    }
}

choice_enum! {
    /// How the warm-restarted MGRIT solves of mini-batch training start on each new batch.
    pub enum BatchStart {
        /// From the coarse-grid propagation of the new batch's initial condition, then
        /// mgrit.max_iter (adjoint_max_iter) cycles.
        Coarse = "coarse",
        /// From the previous batch's states (other examples), as layerpar did before.
        Warm = "warm",
    }
}

choice_enum! {
    /// Which accuracy a nested level's `target_acc` is compared with (after each iteration).
    pub enum TargetMeasure {
        /// The validation accuracy (`val_acc` of the history).
        Val = "val",
        /// The training accuracy (`train_acc`), as the reference code stops.
        Train = "train",
    }
}

impl Choice for Activation {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("tanh", Activation::Tanh),
        ("relu", Activation::Relu),
        ("smoothrelu", Activation::SmoothRelu),
    ];
}

impl Choice for Opening {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("activate", Opening::Activate),
        ("replicate", Opening::Replicate),
    ];
}

impl Choice for Readout {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("flatten", Readout::Flatten),
        ("global_average", Readout::GlobalAverage),
    ];
}

impl Choice for Closing {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("affine", Closing::Affine), ("average", Closing::Average)];
}

impl Choice for Loss {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("crossentropy", Loss::CrossEntropy), ("mse", Loss::Mse)];
}

impl Choice for KnotKind {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("clamped", KnotKind::Clamped),
        ("uniform", KnotKind::Uniform),
    ];
}

/// Every choice key with its names, in the order loading checks them.
fn choice_keys() -> [(&'static str, Vec<&'static str>); 16] {
    [
        ("network.kind", NetworkKind::names()),
        ("network.readout", Readout::names()),
        ("network.activation", Activation::names()),
        ("network.loss", Loss::names()),
        ("network.opening", Opening::names()),
        ("network.closing", Closing::names()),
        ("optimizer.kind", OptimizerKind::names()),
        ("output.progress", Progress::names()),
        ("optimizer.schedule", ScheduleKind::names()),
        ("data.kind", DataKind::names()),
        ("data.normalize", Normalize::names()),
        ("controls.kind", ControlsKind::names()),
        ("controls.knots", KnotKind::names()),
        ("nested.interp", Interp::names()),
        ("nested.target_measure", TargetMeasure::names()),
        ("mgrit.batch_start", BatchStart::names()),
    ]
}

/// Checks the string of every choice key of a merged table (types already conformed)
/// against its names: `config key `K` must be one of "a", "b", got "x"`.
fn check_choices(merged: &toml::Value) -> Result<()> {
    for (key, names) in choice_keys() {
        let value = key
            .split('.')
            .try_fold(merged, |v, part| v.get(part))
            .and_then(|v| v.as_str());
        if let Some(value) = value.filter(|v| !names.contains(v)) {
            let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            bail!(
                "config key `{key}` must be one of {}, got {value:?}",
                quoted.join(", ")
            );
        }
    }
    Ok(())
}

impl Config {
    /// The learning-rate schedule of the stochastic optimizers.
    pub fn schedule(&self) -> optim::Schedule {
        let o = &self.optimizer;
        match o.schedule {
            ScheduleKind::Constant => optim::Schedule::Constant,
            ScheduleKind::Step => optim::Schedule::Step {
                every: o.lr_step,
                gamma: o.lr_gamma,
            },
            ScheduleKind::Cosine => optim::Schedule::Cosine {
                epochs: o.max_iter,
                min: o.lr_min,
            },
        }
    }

    /// Whether the hidden controls are B-spline coefficients.
    pub fn is_spline(&self) -> bool {
        self.controls.kind == ControlsKind::Spline
    }

    /// The B-spline basis of spline controls (None for per-layer controls).
    pub fn spline_basis(&self) -> Result<Option<bspline::Basis>> {
        if !self.is_spline() {
            return Ok(None);
        }
        let c = &self.controls;
        bspline::Basis::uniform(c.knots, c.degree, c.count, self.network.final_time)
            .map(Some)
            .map_err(|e| anyhow!("config keys `controls.count` and `controls.degree`: {e}"))
    }

    /// How nested levels and --init-from carry controls over: [`Interp::Constant`] or
    /// [`Interp::Linear`] for per-layer controls, [`Interp::Keep`] or [`Interp::Knots`] for
    /// splines (spline runs treat "constant" and "linear", the defaults, as "keep").
    /// [`Config::validate`] rejects the other combinations.
    pub fn interp(&self) -> Interp {
        match (self.is_spline(), self.nested.interp) {
            (true, Interp::Constant | Interp::Linear) => Interp::Keep,
            (_, i) => i,
        }
    }

    /// Checks that `nested.interp` fits the controls: "keep" and "knots" are spline
    /// choices, "knots" needs clamped knots.
    fn check_interp(&self) -> Result<()> {
        match (self.is_spline(), self.nested.interp) {
            (false, i @ (Interp::Keep | Interp::Knots)) => {
                bail!("config key `nested.interp` = \"{i}\" applies to spline controls; per-layer controls take \"constant\" or \"linear\"")
            }
            (true, Interp::Knots) if self.controls.knots != KnotKind::Clamped => {
                bail!("config key `nested.interp` = \"knots\" needs controls.knots = \"clamped\"")
            }
            _ => Ok(()),
        }
    }

    /// Checks every value's range and that the choices fit together; the first problem is
    /// the error. (Each choice's own names are checked while loading, before deserializing.)
    pub fn validate(&self) -> Result<()> {
        fn positive(key: &str, v: f64) -> Result<()> {
            if !(v > 0.0 && v.is_finite()) {
                bail!("config key `{key}` must be a positive number, got {v}");
            }
            Ok(())
        }
        fn nonneg(key: &str, v: f64) -> Result<()> {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("config key `{key}` must be a number ≥ 0, got {v}");
            }
            Ok(())
        }
        fn at_least(key: &str, v: usize, min: usize) -> Result<()> {
            if v < min {
                bail!("config key `{key}` must be ≥ {min}, got {v}");
            }
            Ok(())
        }
        fn open_unit(key: &str, v: f64) -> Result<()> {
            if !(v > 0.0 && v < 1.0) {
                bail!("config key `{key}` must lie in (0, 1), got {v}");
            }
            Ok(())
        }
        let (opening, kind) = (self.network.opening, self.data.kind);
        let d = &self.data;
        match kind {
            DataKind::Peaks | DataKind::Sine => {
                at_least("data.train_size", d.train_size, 1)?;
                at_least("data.val_size", d.val_size, 1)?;
            }
            DataKind::Idx => {
                for (key, v) in [
                    ("data.train_images", &d.train_images),
                    ("data.train_labels", &d.train_labels),
                ] {
                    if v.is_empty() {
                        bail!("config key `{key}` must name the IDX file when data.kind = \"idx\"");
                    }
                }
                if d.test_images.is_empty() != d.test_labels.is_empty() {
                    bail!("config keys `data.test_images` and `data.test_labels` name the IDX validation files: give both or neither, got {:?} and {:?}", d.test_images, d.test_labels);
                }
            }
            DataKind::Cifar10 if d.path.is_empty() => {
                bail!("config key `data.path` must name the directory of the CIFAR-10 binary batches (data_batch_1.bin … data_batch_5.bin, test_batch.bin) when data.kind = \"cifar10\"");
            }
            _ if d.path.is_empty() => bail!(
                "config key `data.path` must name the data file when data.kind = \"{}\"",
                d.kind
            ),
            _ => {}
        }
        if !d.image_shape.is_empty() && (d.image_shape.len() != 3 || d.image_shape.contains(&0)) {
            bail!(
                "config key `data.image_shape` must be [channels, height, width] (3 integers ≥ 1) or [] (none), got {:?}",
                d.image_shape
            );
        }
        open_unit("data.val_fraction", d.val_fraction)?;
        let p = &self.parallel;
        at_least("parallel.data_groups", p.data_groups, 1)?;
        if p.data_groups > 1 && !self.network.blocks.is_empty() {
            bail!("config key `parallel.data_groups` = {}: a network of several ODE blocks (network.blocks) runs on one data group; set parallel.data_groups = 1", p.data_groups);
        }
        if p.chunks < p.data_groups {
            bail!(
                "config key `parallel.chunks` must be ≥ parallel.data_groups = {} (every data group takes whole chunks of each batch), got {}",
                p.data_groups,
                p.chunks
            );
        }
        let n = &self.network;
        at_least("network.width", n.width, 1)?;
        at_least("network.channels", n.channels, 1)?;
        if n.kernel % 2 == 0 || n.kernel > 7 {
            bail!(
                "config key `network.kernel` must be an odd kernel size from 1 to 7 (3 or 5 are usual), got {}",
                n.kernel
            );
        }
        at_least("network.layers", n.layers, 1)?;
        for (i, b) in n.blocks.iter().enumerate() {
            at_least(&format!("network.blocks[{}].layers", i + 1), b.layers, 1)?;
            b.pooling(i + 1)?;
        }
        if !n.blocks.is_empty() && n.kind != NetworkKind::Conv {
            bail!("config key `network.blocks` lists further ODE blocks, which only convolutional networks have: set network.kind = \"conv\" or remove network.blocks");
        }
        positive("network.final_time", n.final_time)?;
        nonneg("network.init_open", n.init_open)?;
        nonneg("network.init_hidden", n.init_hidden)?;
        nonneg("network.init_class", n.init_class)?;
        if opening == Opening::Replicate && kind == DataKind::Peaks && n.width < 2 {
            bail!("config key `network.width` must be ≥ the 2 Peaks features with network.opening = \"replicate\", got {}", n.width);
        }
        self.spline_basis()?;
        at_least("controls.degree", self.controls.degree, 1)?;
        at_least(
            "controls.count",
            self.controls.count,
            self.controls.degree + 1,
        )?;
        let m = &self.mgrit;
        at_least("mgrit.max_levels", m.max_levels, 1)?;
        at_least("mgrit.cfactor", m.cfactor, 2)?;
        if let Some(c) = m.cfactor_levels.iter().find(|&&c| c < 2) {
            bail!("config key `mgrit.cfactor_levels` must hold factors ≥ 2, got {c}");
        }
        at_least("mgrit.min_coarse", m.min_coarse, 2)?;
        at_least("mgrit.max_iter", m.max_iter, 1)?;
        at_least("mgrit.adjoint_max_iter", m.adjoint_max_iter, 1)?;
        nonneg("mgrit.tol", m.tol)?;
        nonneg("mgrit.adjoint_tol", m.adjoint_tol)?;
        let o = &self.optimizer;
        positive("optimizer.learning_rate", o.learning_rate)?;
        nonneg("optimizer.gtol", o.gtol)?;
        at_least("optimizer.lbfgs_memory", o.lbfgs_memory, 1)?;
        open_unit("optimizer.ls_factor", o.ls_factor)?;
        open_unit("optimizer.ls_c", o.ls_c)?;
        at_least("optimizer.ls_max_iter", o.ls_max_iter, 1)?;
        if !(0.0..1.0).contains(&o.momentum) {
            bail!(
                "config key `optimizer.momentum` must lie in [0, 1), got {}",
                o.momentum
            );
        }
        open_unit("optimizer.beta1", o.beta1)?;
        open_unit("optimizer.beta2", o.beta2)?;
        positive("optimizer.epsilon", o.epsilon)?;
        at_least("optimizer.lr_step", o.lr_step, 1)?;
        positive("optimizer.lr_gamma", o.lr_gamma)?;
        nonneg("optimizer.lr_min", o.lr_min)?;
        nonneg("optimizer.gamma_tik", o.gamma_tik)?;
        nonneg("optimizer.gamma_ddt", o.gamma_ddt)?;
        nonneg("optimizer.gamma_class", o.gamma_class)?;
        if !(o.divergence_factor == 0.0
            || (o.divergence_factor > 1.0 && o.divergence_factor.is_finite()))
        {
            bail!(
                "config key `optimizer.divergence_factor` must be 0 (off) or a number > 1, got {}",
                o.divergence_factor
            );
        }
        at_least("output.print_every", self.output.print_every, 1)?;
        at_least("output.metrics_every", self.output.metrics_every, 1)?;
        let nc = &self.nested;
        at_least("nested.levels", nc.levels, 1)?;
        at_least("nested.refine", nc.refine, 2)?;
        self.check_interp()?;
        let depth = nc
            .refine
            .checked_pow((nc.levels - 1) as u32)
            .unwrap_or(usize::MAX);
        if self.network.layers % depth != 0 {
            bail!(
                "config key `network.layers` = {} must be divisible by nested.refine^(nested.levels − 1) = {depth}",
                self.network.layers
            );
        }
        for (i, b) in n.blocks.iter().enumerate() {
            if b.layers % depth != 0 {
                bail!(
                    "config key `network.blocks[{}].layers` = {} must be divisible by nested.refine^(nested.levels − 1) = {depth}",
                    i + 1,
                    b.layers
                );
            }
        }
        if !nc.max_iter.is_empty() && nc.max_iter.len() != nc.levels {
            bail!(
                "config key `nested.max_iter` must list one count per level ({}), got {}",
                nc.levels,
                nc.max_iter.len()
            );
        }
        if !nc.target_acc.is_empty() && nc.target_acc.len() != nc.levels {
            bail!(
                "config key `nested.target_acc` must list one accuracy per level ({}), got {}",
                nc.levels,
                nc.target_acc.len()
            );
        }
        if !nc.mgrit_levels.is_empty() && nc.mgrit_levels.len() != nc.levels {
            bail!("config key `nested.mgrit_levels` must list one MGRIT level count per nested level ({}), got {}", nc.levels, nc.mgrit_levels.len());
        }
        if nc.mgrit_levels.contains(&0) {
            bail!("config key `nested.mgrit_levels` must hold counts ≥ 1");
        }
        if let Some(a) = nc.target_acc.iter().find(|a| !(0.0..=1.0).contains(*a)) {
            bail!("config key `nested.target_acc` must hold fractions in [0, 1], got {a}");
        }
        if self.output.history.is_empty() {
            bail!("config key `output.history` must name a file");
        }
        Ok(())
    }

    /// The configuration as TOML text (every key, resolved values).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serializes")
    }

    /// The configuration as bincode bytes (standard configuration), to send to other ranks:
    /// [`Config::from_bytes`] gives back exactly this configuration.
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("a Config always encodes")
    }

    /// The configuration that [`Config::to_bytes`] encoded (checked like a loaded one).
    pub fn from_bytes(bytes: &[u8]) -> Result<Config> {
        let (config, used): (Config, usize) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| anyhow!("cannot decode the broadcast configuration: {e}"))?;
        if used != bytes.len() {
            bail!(
                "cannot decode the broadcast configuration: {} trailing bytes",
                bytes.len() - used
            );
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses a complete TOML text (such as one stored in a checkpoint).
    pub fn from_toml(text: &str, origin: &str) -> Result<Config> {
        load_str(text, origin, &[])
    }
}

fn parse_toml(text: &str, origin: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>().map_err(|e| {
        let msg = e.message().trim().replace('\n', " ");
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                anyhow!("{origin} is not valid TOML (line {line}): {msg}")
            }
            None => anyhow!("{origin} is not valid TOML: {msg}"),
        }
    })
}

/// The list keys whose items are numbers (f64); every other list holds integers ≥ 0. (The
/// defaults are empty lists, so the item type cannot be read off them.)
const NUMBER_LISTS: &[&str] = &["nested.target_acc"];

/// The list keys whose items are tables ([`BlockConfig`]).
const TABLE_LISTS: &[&str] = &["network.blocks"];

/// Checks `value` for key `key` against the default `reference`: same type (an integer is
/// accepted where a float is expected), no negative integers, tables recursively.
fn conform(
    key: &str,
    value: toml::Value,
    reference: &toml::Value,
    origin: &str,
) -> Result<toml::Value> {
    use toml::Value as V;
    match (reference, value) {
        (V::Table(rt), V::Table(t)) => {
            let mut out = rt.clone();
            for (k, v) in t {
                let full = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                let r = rt
                    .get(&k)
                    .ok_or_else(|| anyhow!("unknown config key `{full}` in {origin}"))?;
                out.insert(k, conform(&full, v, r, origin)?);
            }
            Ok(V::Table(out))
        }
        (V::Float(_), V::Integer(i)) => Ok(V::Float(i as f64)),
        (V::Array(_), V::Array(items)) if TABLE_LISTS.contains(&key) => {
            let item = toml::Value::try_from(BlockConfig::default()).expect("serializes");
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    V::Table(_) => conform(&format!("{key}[{}]", i + 1), v, &item, origin),
                    bad => bail!(
                        "config key `{key}` must be a list of tables ([[{key}]] sections), got {bad} (in {origin})"
                    ),
                })
                .collect::<Result<Vec<_>>>()
                .map(V::Array)
        }
        (V::Array(_), V::Array(items)) if NUMBER_LISTS.contains(&key) => items
            .into_iter()
            .map(|v| match v {
                V::Integer(i) => Ok(V::Float(i as f64)),
                V::Float(x) => Ok(V::Float(x)),
                bad => {
                    bail!("config key `{key}` must be a list of numbers, got {bad} (in {origin})")
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(V::Array),
        (V::Array(_), V::Array(items)) => {
            if let Some(bad) = items
                .iter()
                .find(|v| !matches!(v, V::Integer(i) if *i >= 0))
            {
                bail!("config key `{key}` must be a list of integers ≥ 0, got {bad} (in {origin})");
            }
            Ok(V::Array(items))
        }
        (V::Integer(_), V::Integer(i)) if i < 0 => {
            bail!("config key `{key}` must be ≥ 0, got {i} (in {origin})")
        }
        (r, v) if std::mem::discriminant(r) == std::mem::discriminant(&v) => Ok(v),
        (r, v) => {
            let what = if key.contains('.') || !matches!(r, V::Table(_)) {
                "config key"
            } else {
                "config section"
            };
            bail!(
                "{what} `{key}` must be {} {}, got {} {} (in {origin})",
                article(r.type_str()),
                r.type_str(),
                article(v.type_str()),
                v.type_str()
            )
        }
    }
}

fn article(t: &str) -> &'static str {
    if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn defaults_table() -> toml::Value {
    toml::Value::try_from(Config::default()).expect("the default config serializes")
}

/// Applies a file's table and the `--set` overrides on top of the defaults and validates.
fn load_table(file: toml::Table, sets: &[String], origin: &str) -> Result<Config> {
    let defaults = defaults_table();
    let mut merged = conform("", toml::Value::Table(file), &defaults, origin)?;
    for set in sets {
        let (key, raw) = set
            .split_once('=')
            .ok_or_else(|| anyhow!("--set {set}: expected section.key=value"))?;
        let key = key.trim();
        let raw = raw.trim();
        let path: Vec<&str> = key.split('.').collect();
        // The value as TOML (numbers, booleans, quoted strings), else as a bare string.
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let mut nested = value;
        for part in path.iter().rev() {
            let mut t = toml::Table::new();
            t.insert(part.to_string(), nested);
            nested = toml::Value::Table(t);
        }
        merged = conform("", nested, &merged, &format!("--set {set}"))?;
    }
    check_choices(&merged)?;
    let config: Config = merged.try_into().map_err(|e: toml::de::Error| {
        anyhow!(
            "invalid configuration ({origin}): {}",
            e.message().trim().replace('\n', " ")
        )
    })?;
    config.validate()?;
    Ok(config)
}

/// Loads a configuration from TOML text with `--set` overrides on top.
pub fn load_str(text: &str, origin: &str, sets: &[String]) -> Result<Config> {
    load_table(parse_toml(text, origin)?, sets, origin)
}

/// Loads the configuration: defaults, then the file (if any), then each `--set` override.
pub fn load(path: Option<&Path>, sets: &[String]) -> Result<Config> {
    let (table, origin) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config file {}", p.display()))?;
            let origin = p.display().to_string();
            (parse_toml(&text, &origin)?, origin)
        }
        None => (toml::Table::new(), "the defaults".to_string()),
    };
    load_table(table, sets, &origin)
}

#[cfg(test)]
mod tests;
