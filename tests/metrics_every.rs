//! `output.metrics_every = k`: the whole-set metrics (Adam/SGD: J, loss and training
//! accuracy over the training set; every optimizer: the validation columns) are measured at
//! row 0, every k-th iteration, the last row and checkpoint rows, and are empty in the other
//! rows; training itself (the parameters, every other column) is the same as with k = 1.

mod common;
use common::{fails_with, history, layerpar, mpirun, ok};
use std::path::Path;

fn fingerprint(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("parameters:"))
        .and_then(|l| l.rsplit(' ').next())
        .expect("parameters line")
        .to_string()
}

/// Trains on `ranks` ranks in `dir` with `sets` (each a `section.key=value`), writing
/// `name.csv`; returns stdout.
fn train(dir: &Path, ranks: usize, name: &str, sets: &[&str]) -> String {
    let ckpt = format!("output.checkpoint_dir={name}");
    let hist = format!("{name}.csv");
    let mut args = vec!["train", "--history", &hist, "--set", &ckpt];
    args.extend(["--set", "output.progress=none"]);
    for s in sets {
        args.extend(["--set", s]);
    }
    ok(&mpirun(dir, ranks, &args))
}

/// The history of `name` as (header, rows without time_s).
fn rows(dir: &Path, name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let (mut h, mut rows) = history(&dir.join(format!("{name}.csv")));
    let t = h.iter().position(|c| c == "time_s").unwrap();
    h.remove(t);
    for r in &mut rows {
        r.remove(t);
    }
    (h, rows)
}

/// Checks the history `name` (metrics every k, rows `with` having them) against the k = 1
/// history `reference`: the columns `skipped` are empty exactly in the other rows, and every
/// non-empty cell equals the reference's.
fn check_against(dir: &Path, name: &str, reference: &str, with: &[usize], skipped: &[&str]) {
    let (h, got) = rows(dir, name);
    let (h1, want) = rows(dir, reference);
    assert_eq!(h, h1);
    assert_eq!(got.len(), want.len(), "{name}: same number of rows");
    let cols: Vec<usize> = skipped
        .iter()
        .map(|c| h.iter().position(|x| x == c).expect("column exists"))
        .collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let iter: usize = g[0].parse().unwrap();
        assert_eq!(iter, i);
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            if cols.contains(&j) && !with.contains(&iter) {
                assert!(a.is_empty(), "{name}: row {iter} column {} = {a:?}", h[j]);
            } else {
                assert_eq!(a, b, "{name}: row {iter} column {}", h[j]);
            }
        }
    }
}

const ADAM: &[&str] = &[
    "optimizer.kind=adam",
    "optimizer.batch_size=500",
    "optimizer.learning_rate=0.01",
    "optimizer.max_iter=8",
    "mgrit.max_levels=2",
    "mgrit.cfactor=2",
];

#[test]
fn adam_with_metrics_every_3_trains_the_same_and_measures_every_third_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plus = |extra: &[&'static str]| -> Vec<&'static str> {
        ADAM.iter().chain(extra).copied().collect()
    };
    let one = train(d, 2, "k1", &plus(&["output.metrics_every=1"]));
    let default = train(d, 2, "default", ADAM);
    let three = train(d, 2, "k3", &plus(&["output.metrics_every=3"]));
    // A checkpoint every 5 iterations: its rows get the metrics too.
    let ckpt = train(
        d,
        2,
        "k3c5",
        &plus(&["output.metrics_every=3", "output.checkpoint_every=5"]),
    );
    let fp = fingerprint(&one);
    for out in [&default, &three, &ckpt] {
        assert_eq!(fingerprint(out), fp, "{out}");
    }
    // k = 1 is the default: the same history.
    assert_eq!(rows(d, "k1"), rows(d, "default"));
    let skipped = ["objective", "loss", "train_acc", "val_acc", "val_loss"];
    // Row 0, iterations 3 and 6, and the last (8).
    check_against(d, "k3", "k1", &[0, 3, 6, 8], &skipped);
    check_against(d, "k3c5", "k1", &[0, 3, 5, 6, 8], &skipped);
    // Every other column is in every row (training does not depend on k).
    let (h, r) = rows(d, "k3");
    for c in ["grad_norm", "step", "fwd_res", "adj_res", "final_time"] {
        let i = h.iter().position(|x| x == c).unwrap();
        assert!(r.iter().all(|row| !row[i].is_empty()), "{c}");
    }
    // The final line is the last row, which has the metrics.
    assert!(three.contains("final: iter     8"), "{three}");
    assert!(!three.contains("NaN"), "{three}");
    assert!(std::path::Path::new(&d.join("k3c5/ckpt_000005.h5")).exists());
}

#[test]
fn lbfgs_keeps_its_own_training_metrics_and_skips_only_the_validation_columns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sets = ["optimizer.max_iter=9"];
    let one = train(d, 1, "k1", &sets);
    let four = train(
        d,
        1,
        "k4",
        &["optimizer.max_iter=9", "output.metrics_every=4"],
    );
    assert_eq!(fingerprint(&four), fingerprint(&one));
    check_against(d, "k4", "k1", &[0, 4, 8, 9], &["val_acc", "val_loss"]);
}

#[test]
fn a_target_accuracy_is_checked_on_the_rows_with_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The reference: every row measured, no target.
    train(d, 1, "all", &["optimizer.max_iter=60"]);
    let (h, all) = rows(d, "all");
    let val = h.iter().position(|c| c == "val_acc").unwrap();
    let acc = |row: &Vec<String>| row[val].parse::<f64>().unwrap();
    // With metrics every 5 the level stops before the iteration after the first measured
    // row (0, 5, 10, …) whose validation accuracy reaches the target.
    let target = 0.6;
    let stop = (0..all.len())
        .step_by(5)
        .find(|&i| acc(&all[i]) >= target)
        .expect("L-BFGS passes 60 % validation accuracy in 60 iterations");
    assert!(stop < 60, "{stop}");
    let out = train(
        d,
        1,
        "k5",
        &[
            "optimizer.max_iter=60",
            "nested.target_acc=[0.6]",
            "output.metrics_every=5",
        ],
    );
    assert!(out.contains("validation accuracy reached"), "{out}");
    let (_, k5) = rows(d, "k5");
    assert_eq!(k5.len(), stop + 1);
    for (i, row) in k5.iter().enumerate() {
        if i % 5 == 0 {
            assert_eq!(row, &all[i]);
        } else {
            assert!(row[val].is_empty());
        }
    }
}

#[test]
fn metrics_every_must_be_a_positive_integer() {
    let dir = tempfile::tempdir().unwrap();
    for (value, expect) in [
        ("0", "config key `output.metrics_every` must be ≥ 1, got 0"),
        ("-2", "output.metrics_every"),
        ("1.5", "output.metrics_every"),
        ("\"often\"", "output.metrics_every"),
    ] {
        let set = format!("output.metrics_every={value}");
        let o = layerpar(dir.path(), &["train", "--set", &set]);
        fails_with(&o, expect);
    }
    assert!(!dir.path().join("runs").exists());
}

#[test]
fn a_run_that_stops_on_the_gradient_test_ends_on_a_measured_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, sets) in [
        ("lbfgs", vec!["optimizer.max_iter=30"]),
        ("adam", ADAM.to_vec()),
    ] {
        // The reference: every row measured, no gradient stop.
        let reference = format!("{name}-all");
        train(d, 2, &reference, &sets);
        let (h, all) = rows(d, &reference);
        let g = h.iter().position(|c| c == "grad_norm").unwrap();
        let val = h.iter().position(|c| c == "val_acc").unwrap();
        // A tolerance met at iteration 4 at the latest (the test is ‖g‖ ≤ gtol).
        let gtol: f64 = all[4][g].parse().unwrap();
        let stop = (1..all.len())
            .find(|&i| all[i][g].parse::<f64>().unwrap() <= gtol)
            .unwrap();
        let mut with = sets.clone();
        let gtol_set = format!("optimizer.gtol={gtol:e}");
        with.extend([gtol_set.as_str(), "output.metrics_every=1000"]);
        let out = train(d, 2, name, &with);
        assert!(out.contains("gradient norm below"), "{name}: {out}");
        let (_, got) = rows(d, name);
        assert_eq!(got.len(), stop + 1, "{name}");
        assert!(
            !got[stop][val].is_empty(),
            "{name}: the last row is measured"
        );
        assert_eq!(got[stop], all[stop], "{name}");
        assert!(got[1..stop].iter().all(|r| r[val].is_empty()), "{name}");
    }
}
