//! The configuration's sections as serde structs, their defaults, and the choice enums whose
//! values the TOML text spells by name.

use anyhow::{bail, Result};
use bspline::KnotKind;
use odenet::{Activation, Closing, Loss, Opening, Readout};
use serde::{Deserialize, Serialize};

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
