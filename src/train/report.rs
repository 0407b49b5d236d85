//! What rank 0 shows while training: a progress bar on a terminal, plain lines otherwise.

use super::history::Row;
use super::{Iterate, Observer};
use crate::config::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub enum Reporter {
    Bar(ProgressBar),
    Lines { every: usize },
    Silent,
}

/// `x` with `digits` decimals (in exponent form when `exp`), or "-" when it was not
/// measured (NaN: a row without the metrics, output.metrics_every).
fn figure(x: f64, digits: usize, exp: bool) -> String {
    match (x.is_nan(), exp) {
        (true, _) => "-".to_string(),
        (false, true) => format!("{x:.digits$e}"),
        (false, false) => format!("{x:.digits$}"),
    }
}

/// The validation figure of a row: accuracy, or RMSE and R² for regression.
fn validation(r: &Row, digits: usize) -> String {
    match (r.val_rmse, r.val_r2) {
        (Some(rmse), Some(r2)) => format!("val rmse {rmse:.digits$e} r2 {r2:.digits$}"),
        _ => format!(
            "train {}  val {}",
            figure(r.train_acc, digits, false),
            figure(r.val_acc, digits, false)
        ),
    }
}

/// One line of metrics.
pub fn format_row(r: &Row) -> String {
    let mut s = format!(
        "iter {:>5}  obj {}  loss {}  |g| {:.3e}  {}",
        r.iter,
        figure(r.objective, 6, true),
        figure(r.loss, 6, true),
        r.grad_norm,
        validation(r, 4)
    );
    if let Some(f) = r.fwd_res {
        s += &format!("  fwd {f:.2e}");
    }
    if let Some(a) = r.adj_res {
        s += &format!("  adj {a:.2e}");
    }
    s += &format!("  {:.2}s", r.time_s);
    s
}

impl Reporter {
    /// A reporter for `total` iterations; only rank 0 should make a visible one.
    pub fn new(mode: Progress, root: bool, total: usize, every: usize) -> Self {
        if !root || mode == Progress::None {
            return Reporter::Silent;
        }
        let bar = match mode {
            Progress::Bar => true,
            Progress::Auto => std::io::stdout().is_terminal(),
            _ => false,
        };
        if bar {
            let pb = ProgressBar::new(total as u64);
            pb.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos:>5}/{len} {elapsed_precise} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Reporter::Bar(pb)
        } else {
            Reporter::Lines { every }
        }
    }

    pub fn row(&self, r: &Row) {
        match self {
            Reporter::Bar(pb) => {
                pb.set_position(r.iter as u64);
                pb.set_message(format!(
                    "loss {:.4e} |g| {:.2e} {}",
                    r.loss,
                    r.grad_norm,
                    validation(r, 3)
                ));
            }
            Reporter::Lines { every } => {
                if r.iter.is_multiple_of(*every) {
                    println!("{}", format_row(r));
                }
            }
            Reporter::Silent => {}
        }
    }

    /// A message that must not be lost in the bar.
    pub fn note(&self, msg: &str) {
        match self {
            Reporter::Bar(pb) => pb.println(msg),
            Reporter::Lines { .. } => println!("{msg}"),
            Reporter::Silent => {}
        }
    }

    pub fn finish(&self) {
        if let Reporter::Bar(pb) = self {
            pb.finish();
        }
    }
}

/// The progress display follows the rows (notes go to it directly).
impl Observer for &Reporter {
    fn observe(&mut self, it: &Iterate) -> anyhow::Result<()> {
        self.row(it.row);
        Ok(())
    }
}
