//! Training end to end under mpirun: rank count, agreement between ranks, history, accuracy.

mod common;
use common::*;

const SMALL: &[&str] = &[
    "--set",
    "optimizer.max_iter=8",
    "--set",
    "data.train_size=400",
    "--set",
    "data.val_size=50",
    "--set",
    "network.layers=7",
    "--set",
    "output.progress=lines",
];

fn fingerprint(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("parameters:"))
        .and_then(|l| l.split("fingerprint ").nth(1))
        .expect("parameters line")
        .to_string()
}

fn history_without_time(path: &std::path::Path) -> Vec<Vec<String>> {
    rows_without_time(path)
}

#[test]
fn every_rank_count_gives_the_serial_history_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serial = ok(&layerpar(
        d,
        &[&["train", "--history", "serial.csv"], SMALL].concat(),
    ));
    assert!(serial.contains("training on 1 MPI rank"), "{serial}");
    let reference = history_without_time(&d.join("serial.csv"));
    assert_eq!(reference.len(), 9);
    for p in [1usize, 2, 3, 4] {
        let name = format!("p{p}.csv");
        let out = ok(&mpirun(
            d,
            p,
            &[&["train", "--history", &name], SMALL].concat(),
        ));
        // A launcher that does not match the MPI library starts P one-rank jobs: catch that.
        let s = if p == 1 { "" } else { "s" };
        assert!(
            out.contains(&format!("training on {p} MPI rank{s}\n")),
            "rank count wrong for P = {p}:\n{out}"
        );
        assert_eq!(
            out.matches("stopped:").count(),
            1,
            "only rank 0 prints:\n{out}"
        );
        assert!(
            out.contains(&format!("on {p} rank{s}, fingerprint")),
            "{out}"
        );
        assert_eq!(history_without_time(&d.join(&name)), reference, "P = {p}");
        assert_eq!(fingerprint(&out), fingerprint(&serial), "P = {p}");
    }
}

/// Rank 0 alone reads the configuration and sends it to the others: here (an MPMD launch)
/// rank 1 is given a file that does not exist and other overrides, and the run is the
/// serial run of rank 0's file, bit for bit.
#[test]
fn only_rank_0_reads_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("run.toml"),
        "[network]\nlayers = 6\nwidth = 5\n[optimizer]\nmax_iter = 5\n[data]\ntrain_size = 300\nval_size = 40\n[output]\nprogress = \"lines\"\n",
    )
    .unwrap();
    let serial = ok(&layerpar(
        d,
        &["train", "--config", "run.toml", "--history", "serial.csv"],
    ));
    let out = std::process::Command::new("mpirun")
        .args([
            "--oversubscribe",
            "-n",
            "1",
            BIN,
            "train",
            "--config",
            "run.toml",
        ])
        .args(["--history", "p2.csv", ":", "-n", "1", BIN, "train"])
        .args(["--config", "gone.toml", "--set", "network.width=3"])
        .args(["--history", "p2.csv"])
        .current_dir(d)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .expect("mpirun is installed");
    let out = ok(&out);
    assert!(out.contains("training on 2 MPI ranks\n"), "{out}");
    assert!(out.contains("network: width 5, 6 hidden layers"), "{out}");
    assert_eq!(fingerprint(&out), fingerprint(&serial));
    assert_eq!(
        history_without_time(&d.join("p2.csv")),
        history_without_time(&d.join("serial.csv"))
    );
}

#[test]
fn history_has_the_contract_columns_and_a_row_per_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&mpirun(
        d,
        2,
        &[&["train", "--history", "h.csv"], SMALL].concat(),
    ));
    let (header, rows) = history(&d.join("h.csv"));
    let want = [
        "iter",
        "objective",
        "loss",
        "grad_norm",
        "train_acc",
        "val_acc",
        "fwd_res",
        "adj_res",
        "time_s",
    ];
    assert_eq!(&header[..want.len()], &want);
    assert_eq!(rows.len(), 9);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], i.to_string());
        for c in [4, 5] {
            let acc: f64 = r[c].parse().unwrap();
            assert!((0.0..=1.0).contains(&acc));
        }
        assert_eq!(r[6], "", "no MGRIT residual in the serial mode");
        assert_eq!(r[7], "");
    }
    let obj = column(&d.join("h.csv"), "objective");
    assert!(
        obj.windows(2).all(|w| w[1] <= w[0]),
        "L-BFGS with Armijo decreases J: {obj:?}"
    );
    assert!(d.join("runs/final.h5").exists());
}

#[test]
fn adam_and_sgd_train_with_mini_batches_on_two_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (kind, lr) in [("adam", "0.01"), ("sgd", "0.05")] {
        let name = format!("{kind}.csv");
        let kind_set = format!("optimizer.kind={kind}");
        let lr_set = format!("optimizer.learning_rate={lr}");
        let args = [
            &[
                "train",
                "--history",
                &name,
                "--set",
                &kind_set,
                "--set",
                &lr_set,
                "--set",
                "optimizer.batch_size=50",
            ][..],
            SMALL,
        ]
        .concat();
        ok(&mpirun(d, 2, &args));
        let loss = column(&d.join(&name), "loss");
        assert!(loss[8] < 0.8 * loss[0], "{kind}: {loss:?}");
    }
}

/// The default Peaks run (width 8, 30 layers, T = 1, SmoothReLU, L-BFGS, full batch, 130
/// iterations) reaches at least 85 % validation accuracy.
#[test]
fn default_peaks_run_reaches_85_percent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(&mpirun(d, 2, &["train", "--set", "output.progress=none"]));
    let val = column(&d.join("runs/history.csv"), "val_acc");
    assert_eq!(val.len(), 131);
    assert!(val[130] >= 0.85, "validation accuracy {}: {out}", val[130]);
    // eval on the written parameters reproduces the last history row.
    let e = ok(&layerpar(d, &["eval", "--checkpoint", "runs/final.h5"]));
    assert!(e.contains(&format!("accuracy {:.4}", val[130])), "{e}");
}

/// One-shot layer-parallel training (2 levels, cf 2, 2 forward and 2 adjoint MGRIT
/// iterations per objective): the same history bit for bit on 1, 2, 3 and 4 ranks (7 layers,
/// so blocks do not divide evenly), with the MGRIT residuals in the history.
#[test]
fn one_shot_mgrit_history_is_identical_on_every_rank_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mg = [
        "--set",
        "mgrit.max_levels=2",
        "--set",
        "mgrit.max_iter=2",
        "--set",
        "mgrit.adjoint_max_iter=2",
    ];
    let mut reference = None;
    for p in [1usize, 2, 3, 4] {
        let name = format!("os{p}.csv");
        let out = ok(&mpirun(
            d,
            p,
            &[&["train", "--history", &name], SMALL, &mg].concat(),
        ));
        assert!(out.contains("MGRIT: 2 levels"), "{out}");
        let h = history_without_time(&d.join(&name));
        for r in &h[1..] {
            assert!(
                !r[6].is_empty() && !r[7].is_empty(),
                "residual columns filled: {r:?}"
            );
        }
        match &reference {
            None => reference = Some((h, fingerprint(&out))),
            Some((h0, f0)) => {
                assert_eq!(&h, h0, "P = {p}");
                assert_eq!(&fingerprint(&out), f0, "P = {p}");
            }
        }
    }
}

/// mgrit.keep_derivatives changes no bit of a run, with the serial sweep (the sweep keeps
/// σ'(Z_n)) and with one-shot MGRIT (the adjoint forms it), on 3 ranks over 7 layers.
#[test]
fn keeping_the_derivatives_changes_no_bit_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for levels in ["mgrit.max_levels=1", "mgrit.max_levels=2"] {
        let mut runs = Vec::new();
        for keep in [
            "mgrit.keep_derivatives=true",
            "mgrit.keep_derivatives=false",
        ] {
            let name = format!("{levels}-{keep}.csv");
            let out = ok(&mpirun(
                d,
                3,
                &[
                    &["train", "--history", &name, "--set", levels, "--set", keep],
                    SMALL,
                ]
                .concat(),
            ));
            assert!(out.contains("on 3 ranks"), "{out}");
            runs.push((history_without_time(&d.join(&name)), fingerprint(&out)));
        }
        assert_eq!(runs[0], runs[1], "{levels}");
    }
}

#[test]
fn more_ranks_than_layers_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = mpirun(dir.path(), 3, &["train", "--set", "network.layers=2"]);
    fails_with(&o, "3 ranks for 2 hidden layers");
}

/// A configuration that rank 0 cannot load ends every rank with one error line.
#[test]
fn a_configuration_error_on_rank_0_ends_every_rank_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = mpirun(dir.path(), 3, &["train", "--set", "network.width=0"]);
    fails_with(&o, "config key `network.width` must be ≥ 1, got 0");
    let o = mpirun(dir.path(), 3, &["train", "--resume", "missing.h5"]);
    fails_with(&o, "missing.h5");
    let o = mpirun(dir.path(), 2, &["train", "--config", "missing.toml"]);
    fails_with(&o, "cannot read config file missing.toml");
}

/// The Peaks default in one-shot mode (cf 2, 2 levels, 2 forward and 2 adjoint iterations,
/// L-BFGS, 130 iterations) on 2 ranks reaches at least 87 % validation accuracy.
#[test]
fn one_shot_peaks_on_two_ranks_reaches_87_percent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(&mpirun(
        d,
        2,
        &[
            "train",
            "--set",
            "output.progress=none",
            "--set",
            "mgrit.max_levels=2",
            "--set",
            "mgrit.cfactor=2",
            "--set",
            "mgrit.max_iter=2",
            "--set",
            "mgrit.adjoint_max_iter=2",
        ],
    ));
    let val = column(&d.join("runs/history.csv"), "val_acc");
    assert_eq!(val.len(), 131);
    assert!(val[130] >= 0.87, "validation accuracy {}: {out}", val[130]);
}

/// `layerpar scaling`: calibrate on one rank, save the model, validate it on two ranks: the
/// predicted step counts per level match the measured ones.
#[test]
fn the_scaling_model_predicts_step_counts_at_another_rank_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = [
        "--set",
        "network.layers=256",
        "--set",
        "mgrit.max_levels=3",
        "--set",
        "mgrit.cfactor=4",
        "--set",
        "data.train_size=200",
        "--evaluations",
        "2",
    ];
    let cal = ok(&layerpar(
        d,
        &[
            &["scaling", "--save", "model.toml", "--max-ranks", "64"][..],
            &s,
        ]
        .concat(),
    ));
    assert!(
        cal.contains("model calibrated on 1 rank") && cal.contains("    64 "),
        "{cal}"
    );
    // (Per-point step rates are calibrated once; rank boundaries shift a few steps.)
    let val = ok(&mpirun(
        d,
        2,
        &[
            &[
                "scaling",
                "--model",
                "model.toml",
                "--max-ranks",
                "2",
                "--plot",
                "speedup.svg",
            ][..],
            &s,
        ]
        .concat(),
    ));
    // The plot: an SVG with the model curve, the ideal line and the measured point.
    let svg = std::fs::read_to_string(d.join("speedup.svg")).expect("the plot is written");
    assert!(
        svg.starts_with("<svg")
            && svg.trim_end().ends_with("</svg>")
            && ["model", "ideal (P)", "measured", "MPI ranks P"]
                .iter()
                .all(|t| svg.contains(t)),
        "{svg}"
    );
    assert!(
        val.contains("read from model.toml") && val.contains("time per iteration on 2 ranks"),
        "{val}"
    );
    for line in val.lines().filter(|l| l.trim_start().starts_with("level ")) {
        // "level l: forward M → P, adjoint M → P": predicted within 2 % (+2 steps) of measured.
        let nums: Vec<f64> = line
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .filter_map(|t| t.parse().ok())
            .collect();
        let (mf, pf, ma, pa) = (nums[1], nums[2], nums[3], nums[4]);
        assert!(
            (mf - pf).abs() <= 0.02 * mf + 2.0 && (ma - pa).abs() <= 0.02 * ma + 2.0,
            "{line}"
        );
    }
    fails_with(
        &layerpar(
            d,
            &[
                "scaling",
                "--model",
                "model.toml",
                "--set",
                "network.layers=32",
            ],
        ),
        "calibrated for 256 layers",
    );
    fails_with(
        &layerpar(
            d,
            &[&["scaling", "--plot", "no/such/dir/p.svg"][..], &s].concat(),
        ),
        "output directory no/such/dir does not exist",
    );
}

/// Mini-batch one-shot training (Adam, batch 50, 2 levels, 2 + 2 MGRIT iterations): each
/// batch's forward and adjoint solves start from the coarse-grid propagation of that batch
/// (mgrit.batch_start = "coarse", the default), not from the previous batch's states. The
/// forward residual is then far below the old warm start's, the accuracy follows the serial
/// mode's, every rank count gives the same bits (7 layers: uneven blocks), and since no
/// solve depends on an earlier one a resumed run continues bit for bit.
#[test]
fn mini_batch_one_shot_solves_start_from_each_batch_coarse_propagation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let adam = [
        "--set",
        "optimizer.kind=adam",
        "--set",
        "optimizer.learning_rate=0.03",
        "--set",
        "optimizer.batch_size=50",
        "--set",
        "optimizer.max_iter=6",
        "--set",
        "output.checkpoint_every=3",
    ];
    let mg = ["--set", "mgrit.max_levels=2"];
    let train = |p: usize, name: &str, extra: &[&str]| {
        let dirset = format!("output.checkpoint_dir={name}");
        let csv = format!("{name}.csv");
        let out = ok(&mpirun(
            d,
            p,
            &[
                &["train", "--history", &csv, "--set", &dirset][..],
                SMALL,
                &adam,
                extra,
            ]
            .concat(),
        ));
        assert!(out.contains(&format!("training on {p} MPI rank")), "{out}");
        (out, history_without_time(&d.join(&csv)))
    };
    let (_, serial) = train(1, "serial", &[]);
    let (out, coarse) = train(1, "coarse", &mg);
    assert!(
        out.contains("batch 50 (each batch's MGRIT solves start from its coarse-grid propagation)"),
        "{out}"
    );
    let (out, warm) = train(
        1,
        "warm",
        &[&mg[..], &["--set", "mgrit.batch_start=warm"]].concat(),
    );
    assert!(
        out.contains("start from the previous batch's states"),
        "{out}"
    );
    let mean_res = |h: &[Vec<String>]| {
        let r: Vec<f64> = h[1..].iter().map(|r| r[6].parse().unwrap()).collect();
        r.iter().sum::<f64>() / r.len() as f64
    };
    let (rc, rw) = (mean_res(&coarse), mean_res(&warm));
    assert!(
        rc < 0.25 * rw,
        "forward residual {rc} vs the warm start's {rw}"
    );
    let val = |h: &[Vec<String>]| h[6][5].parse::<f64>().unwrap();
    assert!(
        (val(&coarse) - val(&serial)).abs() <= 0.02,
        "validation accuracy {} vs serial {}",
        val(&coarse),
        val(&serial)
    );
    for p in [2, 3, 4] {
        let (_, h) = train(p, &format!("coarse{p}"), &mg);
        assert_eq!(h, coarse, "P = {p}");
    }
    // Resumed at epoch 3 on 2 ranks: the rest of the history bit for bit.
    let (_, resumed) = {
        let out = ok(&mpirun(
            d,
            2,
            &[
                "train",
                "--resume",
                "coarse/ckpt_000003.h5",
                "--history",
                "resumed.csv",
                "--set",
                "output.checkpoint_dir=resumed",
            ],
        ));
        (out, history_without_time(&d.join("resumed.csv")))
    };
    assert_eq!(resumed, coarse);
}

/// L-BFGS trains on the full training set: a smaller optimizer.batch_size is refused (it was
/// ignored silently while the header said "batch 100"); one that covers the training set is
/// the full batch and says so.
#[test]
fn lbfgs_refuses_mini_batches() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fails_with(
        &mpirun(d, 2, &[&["train", "--set", "optimizer.batch_size=100"][..], SMALL].concat()),
        "config keys `optimizer.kind` = \"lbfgs\" and `optimizer.batch_size` = 100 do not go together: L-BFGS trains on the full training set (400 examples)",
    );
    let out = ok(&mpirun(
        d,
        2,
        &[&["train", "--set", "optimizer.batch_size=400"][..], SMALL].concat(),
    ));
    assert!(
        out.contains("optimizer: lbfgs, 8 iterations, batch full"),
        "{out}"
    );
}
