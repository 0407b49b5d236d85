//! The command line: help, config printing, data files, and clean errors for bad input.

mod common;
use common::*;
use std::fs;

#[test]
fn help_on_every_command() {
    let d = tempfile::tempdir().unwrap();
    for cmd in [
        &["--help"][..],
        &["train", "--help"],
        &["eval", "--help"],
        &["config", "--help"],
        &["data", "peaks", "--help"],
    ] {
        let out = ok(&layerpar(d.path(), cmd));
        assert!(out.contains("Usage"), "{out}");
    }
    let out = ok(&layerpar(d.path(), &["train", "--help"]));
    for flag in ["--config", "--set", "--history"] {
        assert!(out.contains(flag));
    }
}

#[test]
fn config_prints_a_commented_default_that_train_accepts() {
    let d = tempfile::tempdir().unwrap();
    let text = ok(&layerpar(d.path(), &["config"]));
    assert!(text.contains("# ") && text.contains("[network]") && text.contains("[mgrit]"));
    fs::write(d.path().join("run.toml"), &text).unwrap();
    let resolved = ok(&layerpar(
        d.path(),
        &["config", "--config", "run.toml", "--set", "network.width=5"],
    ));
    assert!(resolved.contains("width = 5"));
}

#[test]
fn data_peaks_writes_hdf5_and_csv_that_train_reads() {
    let d = tempfile::tempdir().unwrap();
    let out = ok(&layerpar(
        d.path(),
        &[
            "data", "peaks", "--out", "pk.h5", "--train", "300", "--val", "40",
        ],
    ));
    assert!(out.contains("pk.h5") && out.contains("pk.csv"));
    let dump = std::process::Command::new("h5dump")
        .args(["-H", "pk.h5"])
        .current_dir(d.path())
        .output()
        .unwrap();
    let dump = stdout(&dump);
    assert!(
        dump.contains("( 300, 2 )") && dump.contains("( 40 )"),
        "{dump}"
    );
    let csv = fs::read_to_string(d.path().join("pk.csv")).unwrap();
    assert!(csv.starts_with("x,y,label,split\n"));
    assert_eq!(csv.lines().count(), 341);
    for (kind, file) in [("hdf5", "pk.h5"), ("csv", "pk.csv")] {
        let out = ok(&layerpar(
            d.path(),
            &[
                "train",
                "--set",
                &format!("data.kind={kind}"),
                "--set",
                &format!("data.path={file}"),
                "--set",
                "optimizer.max_iter=3",
                "--set",
                "output.progress=lines",
                "--history",
                "h.csv",
            ],
        ));
        assert!(out.contains("300 training / 40 validation"), "{out}");
    }
}

#[test]
fn bad_input_gets_one_clear_line_and_a_failing_exit() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(p.join("typo.toml"), "[network]\nwidht = 4\n").unwrap();
    fs::write(p.join("badval.toml"), "[network]\nlayers = \"many\"\n").unwrap();
    fs::write(p.join("broken.toml"), "[network\nwidth = 4\n").unwrap();
    fs::write(p.join("bad.csv"), "x,y,label\n1,2,0\n3,oops,1\n").unwrap();
    fs::write(p.join("bad.h5"), "not an hdf5 file").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--config", "typo.toml"],
            "unknown config key `network.widht`",
        ),
        (
            vec!["train", "--config", "badval.toml"],
            "`network.layers` must be an integer",
        ),
        (
            vec!["train", "--config", "broken.toml"],
            "broken.toml is not valid TOML (line 1)",
        ),
        (
            vec!["train", "--config", "missing.toml"],
            "cannot read config file missing.toml",
        ),
        (
            vec!["train", "--set", "network.width=0"],
            "`network.width` must be ≥ 1",
        ),
        (
            vec!["train", "--set", "network.activation=sigmoid"],
            "`network.activation` must be one of",
        ),
        (
            vec!["train", "--set", "optimizer.learning_rate=-1"],
            "`optimizer.learning_rate` must be a positive number",
        ),
        (
            vec!["train", "--set", "network.layers=-5"],
            "`network.layers` must be ≥ 0",
        ),
        (
            vec![
                "train",
                "--set",
                "data.kind=csv",
                "--set",
                "data.path=nope.csv",
            ],
            "cannot read data file nope.csv",
        ),
        (
            vec![
                "train",
                "--set",
                "data.kind=csv",
                "--set",
                "data.path=bad.csv",
            ],
            "line 3, column `y`",
        ),
        (
            vec![
                "train",
                "--set",
                "data.kind=hdf5",
                "--set",
                "data.path=bad.h5",
            ],
            "bad.h5",
        ),
        (
            vec!["eval", "--checkpoint", "bad.h5"],
            "cannot read checkpoint bad.h5",
        ),
        (
            vec!["eval", "--checkpoint", "none.h5"],
            "checkpoint none.h5 does not exist",
        ),
        (vec!["inspect", "bad.h5"], "cannot read checkpoint bad.h5"),
        (
            vec!["train", "--resume", "none.h5"],
            "checkpoint none.h5 does not exist",
        ),
        (
            vec!["train", "--init-from", "bad.h5"],
            "cannot read checkpoint bad.h5",
        ),
        (
            vec!["data", "peaks", "--out", "no/such/dir/p.h5"],
            "output directory no/such/dir does not exist",
        ),
    ];
    for (args, expect) in &cases {
        fails_with(&layerpar(p, args), expect);
    }
    // Under mpirun the error is printed once (by rank 0), and every rank exits.
    let o = mpirun(p, 3, &["train", "--config", "typo.toml"]);
    fails_with(&o, "unknown config key `network.widht`");
    // Nothing was written by the failed runs.
    assert!(!p.join("runs").exists());
}

#[test]
fn a_corrupted_checkpoint_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    ok(&layerpar(
        p,
        &[
            "train",
            "--set",
            "optimizer.max_iter=2",
            "--set",
            "network.layers=3",
            "--set",
            "output.progress=none",
        ],
    ));
    let good = fs::read(p.join("runs/final.h5")).unwrap();
    // Truncated file.
    fs::write(p.join("trunc.h5"), &good[..good.len() / 2]).unwrap();
    fails_with(
        &layerpar(p, &["eval", "--checkpoint", "trunc.h5"]),
        "trunc.h5",
    );
    // One parameter changed on disk: the checksum catches it. Find the classifier bias bytes
    // by value and flip one.
    let out = std::process::Command::new("h5dump")
        .args([
            "-d",
            "parameters/classifier_bias",
            "-m",
            "%.17g",
            "runs/final.h5",
        ])
        .current_dir(p)
        .output()
        .unwrap();
    let text = stdout(&out);
    let first: f64 = text
        .split("(0):")
        .nth(1)
        .and_then(|s| s.split([',', '\n']).next())
        .map(|s| s.trim().parse().unwrap())
        .expect("classifier_bias is dumped");
    let bytes = first.to_le_bytes();
    let pos = good
        .windows(8)
        .position(|w| w == bytes)
        .expect("value found in the file");
    let mut bad = good.clone();
    bad[pos] ^= 0x01;
    fs::write(p.join("flipped.h5"), &bad).unwrap();
    fails_with(
        &layerpar(p, &["eval", "--checkpoint", "flipped.h5"]),
        "checksum does not match",
    );
}
