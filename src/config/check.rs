//! What the values mean and whether they are valid: every choice key's string against its
//! names (while loading), the views the run takes of the configuration, and
//! [`Config::validate`], every value's range and how the choices fit together.

use super::schema::{
    BatchStart, Choice, Config, ControlsKind, DataKind, Interp, NetworkKind, Normalize,
    OptimizerKind, Progress, ScheduleKind, TargetMeasure,
};
use anyhow::{anyhow, bail, Result};
use bspline::KnotKind;
use odenet::{Activation, Closing, Loss, Opening, Readout};

/// Every choice key with its names, in the order loading checks them.
pub(super) fn choice_keys() -> [(&'static str, Vec<&'static str>); 16] {
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
pub(super) fn check_choices(merged: &toml::Value) -> Result<()> {
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
        if n.kernel.is_multiple_of(2) || n.kernel > 7 {
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
        if !self.network.layers.is_multiple_of(depth) {
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
}
