//! The training history: one row per optimization iteration, written as CSV by rank 0.
//!
//! Columns (a contract that job scripts rely on): `iter,objective,loss,grad_norm,train_acc,
//! val_acc,fwd_res,adj_res,time_s`, then `step` (the accepted step or learning rate),
//! `level` (the nested-iteration level), `val_loss` (mean loss on the validation set),
//! `val_rmse` and `val_r2` (regression: root-mean-square error over every target value, and
//! R² = 1 − SSE/SST, on the validation set) and `final_time` (s·T, the ODE's final time
//! with the time scale s; T when the scale is not learnt). Residual columns are empty when no
//! MGRIT residual was computed; accuracy columns are empty for regression, the RMSE and R²
//! columns for classification. With `output.metrics_every` = k > 1 the rows between the
//! measured ones leave the validation columns empty, and for Adam and SGD also `objective`,
//! `loss` and `train_acc` (whole training set).

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Metrics of one iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub iter: usize,
    pub objective: f64,
    pub loss: f64,
    pub grad_norm: f64,
    pub train_acc: f64,
    pub val_acc: f64,
    pub fwd_res: Option<f64>,
    pub adj_res: Option<f64>,
    pub time_s: f64,
    pub step: f64,
    pub level: usize,
    pub val_loss: f64,
    pub val_rmse: Option<f64>,
    pub val_r2: Option<f64>,
    pub final_time: f64,
}

pub const HEADER: &str = "iter,objective,loss,grad_norm,train_acc,val_acc,fwd_res,adj_res,time_s,step,level,val_loss,val_rmse,val_r2,final_time";

/// The column names of [`HEADER`].
pub fn columns() -> Vec<String> {
    HEADER.split(',').map(String::from).collect()
}

impl Row {
    /// The row as numbers in [`HEADER`] order (NaN for an empty residual).
    pub fn values(&self) -> Vec<f64> {
        vec![
            self.iter as f64,
            self.objective,
            self.loss,
            self.grad_norm,
            self.train_acc,
            self.val_acc,
            self.fwd_res.unwrap_or(f64::NAN),
            self.adj_res.unwrap_or(f64::NAN),
            self.time_s,
            self.step,
            self.level as f64,
            self.val_loss,
            self.val_rmse.unwrap_or(f64::NAN),
            self.val_r2.unwrap_or(f64::NAN),
            self.final_time,
        ]
    }

    /// A row from [`Row::values`] under `columns` (missing columns read as 0 / empty).
    pub fn from_values(columns: &[String], v: &[f64]) -> Row {
        let get = |name: &str| {
            columns
                .iter()
                .position(|c| c == name)
                .and_then(|i| v.get(i).copied())
        };
        let num = |name: &str| get(name).unwrap_or(0.0);
        let opt = |name: &str| get(name).filter(|x| !x.is_nan());
        // Columns newer than the file read as unknown.
        let nan = |name: &str| get(name).unwrap_or(f64::NAN);
        Row {
            iter: num("iter") as usize,
            objective: num("objective"),
            loss: num("loss"),
            grad_norm: num("grad_norm"),
            train_acc: num("train_acc"),
            val_acc: num("val_acc"),
            fwd_res: opt("fwd_res"),
            adj_res: opt("adj_res"),
            time_s: num("time_s"),
            step: num("step"),
            level: num("level") as usize,
            val_loss: nan("val_loss"),
            val_rmse: opt("val_rmse"),
            val_r2: opt("val_r2"),
            final_time: nan("final_time"),
        }
    }

    pub fn csv(&self) -> String {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.17e}")).unwrap_or_default();
        // NaN (an accuracy of a regression run, a value unknown to an older file): empty.
        let num = |x: f64| opt(Some(x).filter(|x| !x.is_nan()));
        format!(
            "{},{},{},{:.17e},{},{},{},{},{:.6},{:.17e},{},{},{},{},{}",
            self.iter,
            num(self.objective),
            num(self.loss),
            self.grad_norm,
            num(self.train_acc),
            num(self.val_acc),
            opt(self.fwd_res),
            opt(self.adj_res),
            self.time_s,
            self.step,
            self.level,
            num(self.val_loss),
            opt(self.val_rmse),
            opt(self.val_r2),
            num(self.final_time)
        )
    }
}

/// Appends rows to the history file as they come, flushed after each row so that a run can
/// be followed with `tail -f` and a killed run keeps every finished iteration.
pub struct HistoryWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl HistoryWriter {
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        let f = File::create(path)
            .with_context(|| format!("cannot create history file {}", path.display()))?;
        let mut out = BufWriter::new(f);
        writeln!(out, "{HEADER}")
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write history file {}", path.display()))?;
        Ok(HistoryWriter {
            path: path.to_path_buf(),
            out,
        })
    }

    pub fn push(&mut self, row: &Row) -> Result<()> {
        writeln!(self.out, "{}", row.csv())
            .and_then(|()| self.out.flush())
            .with_context(|| format!("cannot write history file {}", self.path.display()))
    }
}
