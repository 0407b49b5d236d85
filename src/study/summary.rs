//! The study's tables: one result row per finished run (`runs.csv`, assembled from each run's
//! `result.csv`) and the summary per group (`summary.csv` and a printed table).

use super::{Run, Study};
use crate::csvtable::Table;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// The history columns whose last value goes into a run's row (missing ones stay empty).
pub const METRICS: &[&str] = &[
    "objective",
    "loss",
    "train_acc",
    "val_acc",
    "val_loss",
    "val_rmse",
    "val_r2",
];

/// The metrics the summary describes (those of them that any run has).
pub const SUMMARIZED: &[&str] = &["val_acc", "val_loss", "val_rmse", "val_r2"];

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Trained to its stopping rule.
    Ok,
    /// Stopped because its objective blew up (or was not finite).
    Diverged,
    /// Any other error.
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Diverged => "diverged",
            Status::Failed => "failed",
        }
    }
}

/// The result of one finished run.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: Status,
    /// Iterations over all nested levels (rows after each level's row 0).
    pub iterations: Option<usize>,
    /// The last history row's value of each of [`METRICS`].
    pub metrics: Vec<Option<f64>>,
    /// Wall time of the whole run (setup, training, checkpoints), seconds.
    pub wall_s: f64,
    /// Why it stopped (the stopping rule, or the error).
    pub stop: String,
}

impl Outcome {
    /// The final metrics from the run's history (by column name; a missing history or column
    /// leaves them empty).
    pub fn from_history(history: &Path, status: Status, wall_s: f64, stop: String) -> Outcome {
        let table = Table::read(history).ok();
        let last = table.as_ref().and_then(|t| t.rows.len().checked_sub(1));
        let metrics = METRICS
            .iter()
            .map(|m| table.as_ref().zip(last).and_then(|(t, r)| t.number(r, m)))
            .collect();
        let iterations = table.as_ref().and_then(|t| {
            t.numbers("iter")
                .map(|v| v.iter().filter(|i| i.is_some_and(|i| i > 0.0)).count())
        });
        Outcome {
            status,
            iterations,
            metrics,
            wall_s,
            stop,
        }
    }
}

/// The columns of `runs.csv`.
pub fn header(study: &Study) -> Vec<String> {
    let mut h: Vec<String> = ["run", "group", "seed"].map(String::from).to_vec();
    h.extend(study.params.iter().map(|p| p.key.clone()));
    h.extend(["status", "iterations"].map(String::from));
    h.extend(METRICS.iter().map(|m| m.to_string()));
    h.extend(["wall_s", "stop"].map(String::from));
    h
}

/// A cell without the separators of the table.
fn clean(s: &str) -> String {
    s.replace([',', '\n', '\r'], ";")
}

fn num(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.6e}")).unwrap_or_default()
}

/// The run's row under [`header`].
pub fn row(run: &Run, out: &Outcome) -> Vec<String> {
    let mut r = vec![run.id.to_string(), run.group.clone(), run.seed.to_string()];
    r.extend(run.values.iter().map(|v| clean(&super::cell_value(v))));
    r.push(out.status.name().into());
    r.push(out.iterations.map(|i| i.to_string()).unwrap_or_default());
    r.extend(out.metrics.iter().map(|&m| num(m)));
    r.push(format!("{:.3}", out.wall_s));
    r.push(clean(&out.stop));
    r
}

/// CSV text of a header and rows.
pub fn csv(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = header.join(",") + "\n";
    for r in rows {
        s += &r.join(",");
        s += "\n";
    }
    s
}

/// Writes `text` to `path` atomically.
pub fn write(path: &Path, text: &str) -> Result<()> {
    checkpoint::replace_file(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Statistics of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// The sample standard deviation (n − 1 in the denominator; None for n < 2).
    pub std: Option<f64>,
}

/// Statistics of the finite values of `x` (None if there are none).
pub fn stats(x: &[f64]) -> Option<Stats> {
    let mut v: Vec<f64> = x.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    };
    let std = (n > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    Some(Stats {
        n,
        mean,
        median,
        min: v[0],
        max: v[n - 1],
        std,
    })
}

/// The summary of one group.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSummary {
    pub group: String,
    pub runs: usize,
    pub ok: usize,
    pub diverged: usize,
    pub failed: usize,
    /// Per summarized metric: the statistics over the group's ok runs.
    pub metrics: Vec<(String, Option<Stats>)>,
    /// The fraction of the group's runs (all of them) that ended ok with val_acc ≥ reach.
    pub reached: f64,
    pub wall_s: Option<Stats>,
    /// Each ok run's values of each metric (for the box plots).
    pub values: Vec<Vec<f64>>,
}

/// The summary per group (in the order groups first appear) of a runs table.
pub fn summarize(runs: &Table, groups: &[String], reach: f64) -> Vec<GroupSummary> {
    let metrics: Vec<&str> = SUMMARIZED
        .iter()
        .copied()
        .filter(|m| *m == "val_acc" || *m == "val_loss" || runs.has_values(m))
        .collect();
    groups
        .iter()
        .map(|g| {
            let rows: Vec<usize> = (0..runs.rows.len())
                .filter(|&r| runs.cell(r, "group") == Some(g))
                .collect();
            let status = |s: &str| {
                rows.iter()
                    .filter(|&&r| runs.cell(r, "status") == Some(s))
                    .count()
            };
            let ok: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&r| runs.cell(r, "status") == Some("ok"))
                .collect();
            let values: Vec<Vec<f64>> = metrics
                .iter()
                .map(|m| ok.iter().filter_map(|&r| runs.number(r, m)).collect())
                .collect();
            let reached = ok
                .iter()
                .filter(|&&r| runs.number(r, "val_acc").is_some_and(|a| a >= reach))
                .count();
            let wall: Vec<f64> = rows
                .iter()
                .filter_map(|&r| runs.number(r, "wall_s"))
                .collect();
            GroupSummary {
                group: g.clone(),
                runs: rows.len(),
                ok: ok.len(),
                diverged: status("diverged"),
                failed: status("failed"),
                metrics: metrics
                    .iter()
                    .zip(&values)
                    .map(|(m, v)| (m.to_string(), stats(v)))
                    .collect(),
                reached: if rows.is_empty() {
                    0.0
                } else {
                    reached as f64 / rows.len() as f64
                },
                wall_s: stats(&wall),
                values,
            }
        })
        .collect()
}

/// `summary.csv`: one row per group.
pub fn summary_csv(groups: &[GroupSummary], reach: f64) -> String {
    let Some(first) = groups.first() else {
        return String::new();
    };
    let mut h: Vec<String> = ["group", "runs", "ok", "diverged", "failed"]
        .map(String::from)
        .to_vec();
    for (m, _) in &first.metrics {
        for s in ["n", "mean", "median", "min", "max", "std"] {
            h.push(format!("{m}_{s}"));
        }
    }
    h.extend(["reach_acc", "reached", "wall_s_mean"].map(String::from));
    let f = |x: Option<f64>| x.map(|v| format!("{v:.6e}")).unwrap_or_default();
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut r = vec![
                g.group.clone(),
                g.runs.to_string(),
                g.ok.to_string(),
                g.diverged.to_string(),
                g.failed.to_string(),
            ];
            for (_, s) in &g.metrics {
                r.push(s.map_or("0".into(), |s| s.n.to_string()));
                r.push(f(s.map(|s| s.mean)));
                r.push(f(s.map(|s| s.median)));
                r.push(f(s.map(|s| s.min)));
                r.push(f(s.map(|s| s.max)));
                r.push(f(s.and_then(|s| s.std)));
            }
            r.push(format!("{reach}"));
            r.push(format!("{:.4}", g.reached));
            r.push(f(g.wall_s.map(|s| s.mean)));
            r
        })
        .collect();
    csv(&h, &rows)
}

/// The summary as a table for the terminal (and the notes).
pub fn table(groups: &[GroupSummary], reach: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:>4} {:>4} {:>4} {:>4}  {:<9} {:>8} {:>8} {:>8} {:>8} {:>8}  {:>9}  {:>7}",
        "group",
        "runs",
        "ok",
        "div",
        "fail",
        "metric",
        "mean",
        "median",
        "min",
        "max",
        "std",
        format!("≥{reach} acc"),
        "wall s"
    );
    for g in groups {
        for (i, (m, st)) in g.metrics.iter().enumerate() {
            let cells = match st {
                Some(st) => format!(
                    "{:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8}",
                    st.mean,
                    st.median,
                    st.min,
                    st.max,
                    st.std.map_or("-".into(), |x| format!("{x:.4}"))
                ),
                None => format!("{:>8} {:>8} {:>8} {:>8} {:>8}", "-", "-", "-", "-", "-"),
            };
            if i == 0 {
                let _ = writeln!(
                    s,
                    "{:<12} {:>4} {:>4} {:>4} {:>4}  {:<9} {cells}  {:>9.2}  {:>7}",
                    g.group,
                    g.runs,
                    g.ok,
                    g.diverged,
                    g.failed,
                    m,
                    g.reached,
                    g.wall_s.map_or("-".into(), |w| format!("{:.2}", w.mean)),
                );
            } else {
                let _ = writeln!(
                    s,
                    "{:<12} {:>4} {:>4} {:>4} {:>4}  {:<9} {cells}",
                    "", "", "", "", "", m
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_known_numbers_are_exact() {
        let s = stats(&[4.0, 1.0, 3.0, 2.0, f64::NAN]).unwrap();
        assert_eq!(s.n, 4);
        assert_eq!((s.mean, s.median, s.min, s.max), (2.5, 2.5, 1.0, 4.0));
        // Sample variance: (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3.
        assert_eq!(s.std, Some((5.0f64 / 3.0).sqrt()));
        let s = stats(&[2.0, 9.0, 4.0]).unwrap();
        assert_eq!((s.mean, s.median), (5.0, 4.0));
        assert_eq!(s.std, Some(((9.0 + 16.0 + 1.0) / 2.0f64).sqrt()));
        assert_eq!(stats(&[7.0]).unwrap().std, None);
        assert!(stats(&[]).is_none() && stats(&[f64::NAN]).is_none());
    }

    #[test]
    fn the_summary_counts_statuses_and_the_reached_fraction() {
        let runs = Table::parse(
            "run,group,seed,status,val_acc,val_loss,wall_s\n\
             0,a,1,ok,0.9,0.3,1\n1,a,2,ok,0.8,,3\n2,a,3,diverged,0.2,,1\n3,b,1,ok,0.95,0.1,2\n",
            "runs.csv",
        )
        .unwrap();
        let g = summarize(&runs, &["a".into(), "b".into()], 0.85);
        assert_eq!(
            (g[0].runs, g[0].ok, g[0].diverged, g[0].failed),
            (3, 2, 1, 0)
        );
        let acc = g[0].metrics[0].1.unwrap();
        assert_eq!((acc.n, acc.min, acc.max), (2, 0.8, 0.9));
        // val_loss is missing in one ok run: it is not invented.
        assert_eq!(g[0].metrics[1].1.unwrap().n, 1);
        assert_eq!(g[0].reached, 1.0 / 3.0);
        assert_eq!(g[1].reached, 1.0);
        assert_eq!(g[0].wall_s.unwrap().mean, 5.0 / 3.0);
        let csv = summary_csv(&g, 0.85);
        let t = Table::parse(&csv, "summary.csv").unwrap();
        assert_eq!(t.cell(0, "val_acc_n"), Some("2"));
        assert_eq!(t.number(1, "val_acc_mean"), Some(0.95));
        assert_eq!(t.cell(1, "val_acc_std"), None);
        assert!(table(&g, 0.85).contains("val_loss"));
    }
}
