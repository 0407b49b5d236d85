//! The performance model of layer-parallel training behind `layerpar scaling`: the time per
//! L-BFGS training iteration (the evaluations of J and ∇J of its line search, the validation
//! sweep, the optimizer's reductions) on a grid of P = D × L ranks (D data groups of L
//! layer-parallel ranks).
//!
//! [`calibrate`] holds what is measured on this machine and this run: a few real training
//! iterations with the run's solver settings (every rank's step calls per MGRIT level per
//! evaluation, the evaluations per iteration, the time per iteration), the validation sweep,
//! the exact serial evaluation and validation sweep (the serial reference), the forward and
//! adjoint step times at every batch a data group may hold, and the on-node message latency
//! and bandwidth; and the fit of the [`Model`] to them. [`predict`] turns a model, the MGRIT
//! grid, a [`predict::Machine`] (interconnect latency and bandwidth, ranks per node, cores)
//! and a split (D, L) into the predicted time per iteration, speedup and efficiency, and
//! finds the best split of each P (its module documentation states every term). [`plot`]
//! draws the predicted speedup as SVG.
//!
//! A model is saved as TOML (`--save`) and read back (`--model`) to validate it at another
//! rank count: [`Model::to_toml`], [`Model::read`].

pub mod calibrate;
pub mod plot;
pub mod predict;

pub use calibrate::{Calibration, Measurements, StepCounts};
pub use predict::{Machine, Prediction, Split, StepCalls};

use std::path::Path;

/// The calibrated model (what `--save` writes and `--model` reads; the field names and their
/// order are the file format).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Model {
    /// N, the fine steps (hidden layers).
    pub layers: usize,
    /// w, the state width (a message of one example's state is w values).
    pub width: usize,
    /// B and V: training and validation examples (a row of D holds ⌈B/D⌉ and ⌈V/D⌉).
    pub batch: usize,
    pub val_batch: usize,
    /// Values of one hidden layer's controls (w² + w dense) and of the opening and
    /// classifier together (the gradient a column combines over the rows).
    pub params_per_layer: usize,
    pub edge_params: usize,
    /// The rank count the model was calibrated on.
    pub calibrated_ranks: usize,
    /// The step-time table: batch sizes (ascending) and t_f(b), t_a(b) in seconds.
    pub batches: Vec<usize>,
    pub t_forward: Vec<f64>,
    pub t_adjoint: Vec<f64>,
    /// α_node (s) and β_node (bytes/s) of a message between ranks of one node.
    pub node_latency: f64,
    pub node_bandwidth: f64,
    /// Whether they were measured (ping-pong on ≥ 2 ranks) rather than nominal.
    pub message_measured: bool,
    /// ω: measured / modelled compute of the evaluations at the calibration (copies, sums,
    /// norms, the optimizer's vector work: what the step counts do not see).
    pub overhead: f64,
    /// ω_v: the same for the validation sweep.
    pub val_overhead: f64,
    /// c^f_l, c^a_l: step calls per evaluation per owned point on level l, on the busiest
    /// rank (one entry per level; the coarsest entry is 0, its work is in k).
    pub c_forward: Vec<f64>,
    pub c_adjoint: Vec<f64>,
    /// k^f, k^a: sequential sweeps of the coarsest level per evaluation (all ranks' coarsest
    /// step calls / N_{L−1}).
    pub k_forward: f64,
    pub k_adjoint: f64,
    /// MGRIT cycles per evaluation (forward + adjoint max_iter).
    pub cycles: f64,
    /// CF-sweeps per relaxation.
    pub nrelax: f64,
    /// e: evaluations of J and ∇J per L-BFGS iteration (1 + the line search's backtracks).
    pub evaluations_per_iteration: f64,
    /// m: the L-BFGS memory (its two-loop recursion costs 2m + 2 reductions).
    pub lbfgs_memory: usize,
    /// T_s,eval and T_s,val: the measured exact serial evaluation (forward, adjoint and
    /// gradient, one level on one rank) and validation sweep, seconds.
    pub serial_evaluation: f64,
    pub serial_validation: f64,
    /// T_opt: seconds per iteration outside the evaluations and the validation sweep at the
    /// calibration (the optimizer's vector work on this rank's share of the parameters, the
    /// history): it shrinks with L (each rank holds 1/L of the parameters) but not with D
    /// (every row holds them all). 0 in files saved before it was measured.
    #[serde(default)]
    pub optimizer: f64,
    /// T_vec: the part of T_opt in the optimizer's element-wise vector work (L-BFGS's
    /// two-loop recursion, its dot products and scalings), which a D × L grid shares out over
    /// its rows: it shrinks with L·D. 0 in files saved before it was measured (then nothing
    /// is shared).
    #[serde(default)]
    pub optimizer_shared: f64,
    /// κ: the slowdown of the serial evaluation when `co_run_copies` copies of it run at once
    /// on one node, one per thread, over its time alone (≥ 1): what ranks running side by
    /// side cost each other beyond sharing cores (caches, memory bandwidth, SMT siblings).
    /// 1 in files saved before it was measured.
    #[serde(default = "one")]
    pub co_run: f64,
    /// n_κ, the copies κ was measured with (1: not measured).
    #[serde(default = "one_copy")]
    pub co_run_copies: usize,
    /// The measured exact serial evaluation on the first b examples, T_s,eval(b), for the
    /// batches b < B a row of a grid may hold (ascending), seconds: how the sweep's cost
    /// beyond its step kernels changes with the batch ([`predict::batch_factor`]). Empty in
    /// files saved before it was measured (then the factor is 1).
    #[serde(default)]
    pub sweep_batches: Vec<usize>,
    #[serde(default)]
    pub sweep_seconds: Vec<f64>,
}

fn one() -> f64 {
    1.0
}

fn one_copy() -> usize {
    1
}

impl Model {
    /// The model as the TOML text `--save` writes.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string(self)?)
    }

    /// Reads a saved model.
    pub fn read(path: &Path) -> anyhow::Result<Model> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read model {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "model file {} is malformed: {}",
                path.display(),
                e.message()
            )
        })
    }

    /// Whether the model fits a run of `layers` layers on `levels` MGRIT levels (a model
    /// predicts only for the network depth and level count it was calibrated on).
    pub fn check_fits(&self, layers: usize, levels: usize) -> Result<(), String> {
        if self.layers != layers || self.c_forward.len() != levels {
            return Err(format!(
                "calibrated for {} layers and {} levels, this run has {layers} and {levels}",
                self.layers,
                self.c_forward.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        predict::tests::model3()
    }

    #[test]
    fn the_saved_file_keeps_its_keys_in_order_and_reads_back() {
        let text = model().to_toml().unwrap();
        let keys: Vec<&str> = text.lines().filter_map(|l| l.split(" = ").next()).collect();
        assert_eq!(
            keys,
            [
                "layers",
                "width",
                "batch",
                "val_batch",
                "params_per_layer",
                "edge_params",
                "calibrated_ranks",
                "batches",
                "t_forward",
                "t_adjoint",
                "node_latency",
                "node_bandwidth",
                "message_measured",
                "overhead",
                "val_overhead",
                "c_forward",
                "c_adjoint",
                "k_forward",
                "k_adjoint",
                "cycles",
                "nrelax",
                "evaluations_per_iteration",
                "lbfgs_memory",
                "serial_evaluation",
                "serial_validation",
                "optimizer",
                "optimizer_shared",
                "co_run",
                "co_run_copies",
                "sweep_batches",
                "sweep_seconds",
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.toml");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(Model::read(&path).unwrap(), model());
        std::fs::write(&path, "layers = 3\n").unwrap();
        let err = Model::read(&path).unwrap_err().to_string();
        assert!(err.contains("is malformed"), "{err}");
        let err = Model::read(&dir.path().join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read model"), "{err}");
    }

    #[test]
    fn a_model_fits_only_its_depth_and_level_count() {
        assert_eq!(model().check_fits(16, 3), Ok(()));
        assert_eq!(
            model().check_fits(32, 3).unwrap_err(),
            "calibrated for 16 layers and 3 levels, this run has 32 and 3"
        );
        assert!(model().check_fits(16, 2).is_err());
    }
}
