//! The performance model of layer-parallel training behind `layerpar scaling`: the time per
//! objective evaluation (forward solve, adjoint solve, gradient) at P ranks.
//!
//! [`calibrate()`] measures on this machine and this run (the time of one forward and one
//! adjoint layer step, of one state message, of a few evaluations, and the step calls of every
//! rank on every MGRIT level) and fits a [`Model`]: per-point step rates c_l, coarsest sweeps
//! k, and an overhead factor ω that makes the model reproduce the measured time at the
//! calibration rank count. [`predict`] turns a model, the MGRIT grid and a rank count P into
//! the predicted time per evaluation, speedup and efficiency (its module documentation states
//! the formulas). [`plot`] draws the predicted speedup as SVG.
//!
//! A model is saved as TOML (`--save`) and read back (`--model`) to validate it at another
//! rank count: [`Model::to_toml`], [`Model::read`].

pub mod calibrate;
pub mod plot;
pub mod predict;

pub use calibrate::{calibrate, Calibration, Measurements, StepCounts};
pub use predict::{Prediction, StepCalls};

use std::path::Path;

/// The calibrated model (what `--save` writes and `--model` reads; the field names and their
/// order are the file format).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Model {
    /// N, the fine steps (hidden layers).
    pub layers: usize,
    /// t_f, seconds per forward layer step.
    pub t_forward: f64,
    /// t_a, seconds per adjoint layer step.
    pub t_adjoint: f64,
    /// t_msg, seconds per neighbour message of one state.
    pub t_message: f64,
    /// ω: measured / raw model time at the calibration rank count (copies, sums, norms and
    /// other work the step counts do not see).
    pub overhead: f64,
    /// The rank count the model was calibrated on.
    pub calibrated_ranks: usize,
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
        Model {
            layers: 64,
            t_forward: 1.25e-6,
            t_adjoint: 2.5e-6,
            t_message: 5.2e-6,
            overhead: 2.25,
            calibrated_ranks: 1,
            c_forward: vec![5.0, 6.0, 0.0],
            c_adjoint: vec![3.5, 2.75, 0.0],
            k_forward: 3.0,
            k_adjoint: 1.0,
            cycles: 4.0,
            nrelax: 1.0,
        }
    }

    #[test]
    fn the_saved_file_keeps_its_keys_in_order_and_reads_back() {
        let text = model().to_toml().unwrap();
        let keys: Vec<&str> = text.lines().filter_map(|l| l.split(" = ").next()).collect();
        assert_eq!(
            keys,
            [
                "layers",
                "t_forward",
                "t_adjoint",
                "t_message",
                "overhead",
                "calibrated_ranks",
                "c_forward",
                "c_adjoint",
                "k_forward",
                "k_adjoint",
                "cycles",
                "nrelax"
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
        assert_eq!(model().check_fits(64, 3), Ok(()));
        assert_eq!(
            model().check_fits(32, 3).unwrap_err(),
            "calibrated for 64 layers and 3 levels, this run has 32 and 3"
        );
        assert!(model().check_fits(64, 2).is_err());
    }
}
