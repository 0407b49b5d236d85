//! Regression end to end: the sine experiment's layers (copy opening, average closing) with
//! MSE against real-valued targets, the RMSE and R² columns, a learnable time scale, CSV
//! regression files, and the one-line refusals of combinations that cannot work.

mod common;
use common::{fails_with, history, layerpar, mpirun, ok};

/// A small sine run: 300 points, width 4, tanh, 40 layers, T = 5, Adam.
const SINE: &[&str] = &[
    "--set",
    "data.kind=sine",
    "--set",
    "data.train_size=300",
    "--set",
    "data.val_size=100",
    "--set",
    "network.width=4",
    "--set",
    "network.activation=tanh",
    "--set",
    "network.layers=40",
    "--set",
    "network.final_time=5",
    "--set",
    "network.opening=replicate",
    "--set",
    "network.closing=average",
    "--set",
    "network.loss=mse",
    "--set",
    "network.init_hidden=1.0",
    "--set",
    "optimizer.kind=adam",
    "--set",
    "optimizer.learning_rate=0.01",
    "--set",
    "optimizer.batch_size=50",
    "--set",
    "optimizer.max_iter=15",
    "--set",
    "output.progress=lines",
    "--set",
    "output.print_every=100",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["train"];
    a.extend_from_slice(SINE);
    a.extend_from_slice(extra);
    a
}

/// The last value of history column `name` (None for an empty cell).
fn last(path: &std::path::Path, name: &str) -> Option<f64> {
    let (h, rows) = history(path);
    let i = h.iter().position(|c| c == name).expect("column exists");
    rows.last().unwrap()[i].parse().ok()
}

fn fingerprint(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("parameters:"))
        .and_then(|l| l.rsplit(' ').next())
        .expect("parameters line")
        .to_string()
}

#[test]
fn sine_regression_learns_and_reports_rmse_and_r2() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&layerpar(dir.path(), &args(&["--history", "h.csv"])));
    assert!(out.contains("1 target (regression)"), "{out}");
    let h = dir.path().join("h.csv");
    let (header, rows) = history(&h);
    for c in ["val_loss", "val_rmse", "val_r2", "final_time"] {
        assert!(header.contains(&c.to_string()), "{header:?}");
    }
    // Accuracy columns are empty for regression; RMSE follows from the validation loss.
    let acc = header.iter().position(|c| c == "val_acc").unwrap();
    assert!(rows.iter().all(|r| r[acc].is_empty()));
    let (first, rmse) = (
        rows[0][header.iter().position(|c| c == "val_rmse").unwrap()]
            .parse::<f64>()
            .unwrap(),
        last(&h, "val_rmse").unwrap(),
    );
    let val_loss = last(&h, "val_loss").unwrap();
    assert!(
        (rmse - (2.0 * val_loss).sqrt()).abs() <= 1e-12 * rmse,
        "{rmse} vs {val_loss}"
    );
    assert!(rmse < 0.1 && rmse < first / 3.0, "RMSE {first} → {rmse}");
    let r2 = last(&h, "val_r2").unwrap();
    assert!(r2 > 0.95 && r2 <= 1.0, "R² {r2}");
    assert_eq!(last(&h, "final_time"), Some(5.0));
    assert!(out.contains("val rmse"), "{out}");
    // eval reports the same figures.
    let e = ok(&layerpar(
        dir.path(),
        &["eval", "--checkpoint", "runs/final.h5"],
    ));
    assert!(e.contains("rmse") && e.contains("r2"), "{e}");
}

/// A learnable time scale trains, is reported, and keeps runs bit-identical on 1–4 ranks,
/// with one MGRIT level and with 2-level one-shot MGRIT; spline controls too.
#[test]
fn a_learnable_time_scale_is_learnt_and_rank_count_independent() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [
        vec![],
        vec!["--set", "mgrit.max_levels=2"],
        vec!["--set", "controls.kind=spline", "--set", "controls.count=6"],
    ] {
        let mut a = args(&[
            "--set",
            "network.learn_time_scale=true",
            "--set",
            "optimizer.max_iter=4",
        ]);
        a.extend_from_slice(&extra);
        let mut prints = Vec::new();
        for p in [1, 2, 3, 4] {
            let hist = format!("h{p}.csv");
            let mut ap = a.clone();
            ap.extend_from_slice(&["--history", &hist]);
            let out = ok(&mpirun(dir.path(), p, &ap));
            assert!(
                out.contains(&format!("training on {p} MPI rank")),
                "wrong rank count:\n{out}"
            );
            assert!(out.contains("learnt time scale"), "{out}");
            prints.push(fingerprint(&out));
            let t = last(&dir.path().join(&hist), "final_time").unwrap();
            assert!(t != 5.0 && t > 0.0, "the final time moved: {t}");
        }
        assert!(
            prints.iter().all(|f| *f == prints[0]),
            "{extra:?}: {prints:?}"
        );
    }
}

/// A regression CSV file (`target` column) trains through data.kind = "csv"; several target
/// columns give as many outputs of the affine closing.
#[test]
fn regression_csv_files_train() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("x,target0,target1\n");
    for i in 0..80 {
        let x = -1.0 + 2.0 * i as f64 / 79.0;
        text += &format!("{x},{},{}\n", x * x, 0.5 * x);
    }
    std::fs::write(dir.path().join("r.csv"), text).unwrap();
    let out = ok(&layerpar(
        dir.path(),
        &[
            "train",
            "--set",
            "data.kind=csv",
            "--set",
            "data.path=r.csv",
            "--set",
            "network.loss=mse",
            "--set",
            "network.width=4",
            "--set",
            "network.layers=8",
            "--set",
            "optimizer.max_iter=30",
            "--history",
            "h.csv",
        ],
    ));
    assert!(out.contains("2 targets (regression)"), "{out}");
    let h = dir.path().join("h.csv");
    let (_, rows) = history(&h);
    let (h0, _) = history(&h);
    let i = h0.iter().position(|c| c == "val_rmse").unwrap();
    let first: f64 = rows[0][i].parse().unwrap();
    let end = last(&h, "val_rmse").unwrap();
    assert!(end < first / 2.0, "RMSE {first} → {end}");
}

#[test]
fn impossible_regression_settings_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // Cross-entropy needs class labels.
    let mut a = args(&[]);
    a.extend_from_slice(&["--set", "network.loss=crossentropy"]);
    fails_with(&layerpar(dir.path(), &a), "network.loss");
    // The average closing gives one output; Peaks has 5 classes.
    fails_with(
        &layerpar(
            dir.path(),
            &[
                "train",
                "--set",
                "network.closing=average",
                "--set",
                "optimizer.max_iter=1",
            ],
        ),
        "network.closing",
    );
    fails_with(
        &layerpar(dir.path(), &["train", "--set", "network.closing=mean"]),
        "network.closing",
    );
    fails_with(
        &layerpar(
            dir.path(),
            &["train", "--set", "network.learn_time_scale=1"],
        ),
        "network.learn_time_scale",
    );
    // A file with both a label and a target column.
    std::fs::write(
        dir.path().join("b.csv"),
        "x,label,target\n1,0,0.5\n2,1,0.25\n",
    )
    .unwrap();
    fails_with(
        &layerpar(
            dir.path(),
            &[
                "train",
                "--set",
                "data.kind=csv",
                "--set",
                "data.path=b.csv",
            ],
        ),
        "both",
    );
}
