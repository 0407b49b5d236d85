//! Reliability of the binary's file handling (issue 11): a full disk never publishes a damaged
//! checkpoint, and anything that is not a regular file is refused at once, never read forever.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `layerpar ARGS`, killed (and the test failed) if it runs longer than 60 s.
fn layerpar_within_60s(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the layerpar binary starts");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("`layerpar {}` hangs", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn files_that_are_not_regular_are_refused_not_read() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let fifos = Command::new("mkfifo")
        .args(["p.h5", "p.csv"])
        .current_dir(p)
        .status()
        .is_ok_and(|s| s.success());
    std::fs::create_dir(p.join("dir.h5")).unwrap();
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["inspect", "/dev/zero"], "is a character device"),
        (vec!["inspect", "dir.h5"], "is a directory"),
        (
            vec![
                "train",
                "--set",
                "data.kind=hdf5",
                "--set",
                "data.path=/dev/zero",
            ],
            "is a character device",
        ),
        (
            vec![
                "train",
                "--set",
                "data.kind=csv",
                "--set",
                "data.path=/dev/zero",
            ],
            "is a character device",
        ),
    ];
    if fifos {
        cases.extend([
            (vec!["inspect", "p.h5"], "is a FIFO, not a regular file"),
            (vec!["train", "--resume", "p.h5"], "is a FIFO"),
            (vec!["train", "--init-from", "p.h5"], "is a FIFO"),
            (
                vec![
                    "train",
                    "--set",
                    "data.kind=csv",
                    "--set",
                    "data.path=p.csv",
                ],
                "is a FIFO",
            ),
            (
                vec![
                    "train",
                    "--set",
                    "data.kind=hdf5",
                    "--set",
                    "data.path=p.h5",
                ],
                "is a FIFO",
            ),
        ]);
    } else {
        eprintln!("mkfifo failed: the FIFO cases are skipped");
    }
    for (args, expect) in cases {
        fails_with(&layerpar_within_60s(p, &args), expect);
    }
}

/// A tmpfs of `size` on `dir`, unmounted on drop; `None` where this process cannot mount.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The issue's reproduction: Adam on 64 layers, a checkpoint every iteration into a 300 kB
/// tmpfs. The run fails with "No space left on device"; every checkpoint it published loads,
/// and no partial file carries a checkpoint's name.
#[test]
fn a_full_disk_during_training_leaves_every_published_checkpoint_loadable() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let Some(_fs) = Tmpfs::mount(&p.join("CK"), "300k") else {
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let out = mpirun(
        p,
        2,
        &[
            "train",
            "--set",
            "optimizer.kind=adam",
            "--set",
            "network.layers=64",
            "--set",
            "optimizer.max_iter=40",
            "--set",
            "output.checkpoint_every=1",
            "--set",
            "output.keep_last=0",
            "--set",
            "output.checkpoint_dir=CK",
            "--set",
            "output.progress=none",
        ],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "the run fits in 300 kB?\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let mut names: Vec<String> = std::fs::read_dir(p.join("CK"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let ckpts: Vec<&String> = names.iter().filter(|n| n.ends_with(".h5")).collect();
    assert!(
        !ckpts.is_empty(),
        "no checkpoint was written: {names:?}\n{err}"
    );
    assert!(
        names
            .iter()
            .all(|n| !n.contains(".tmp") && (n.ends_with(".h5") || n.ends_with(".csv"))),
        "{names:?}"
    );
    for c in ckpts {
        let shown = ok(&layerpar(p, &["inspect", &format!("CK/{c}")]));
        assert!(shown.contains("(verified)"), "{shown}");
    }
}

/// Issue 11, defect 3: sizes that cannot be allocated are refused before anything is
/// allocated, with one line naming the key (they used to abort in the allocator).
#[test]
fn sizes_beyond_memory_are_refused_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let cases: &[(&[&str], &str)] = &[
        (
            &["network.layers=1000000000000"],
            "`network.layers` = 1000000000000",
        ),
        (
            &["data.val_size=1000000000000"],
            "config key `data.val_size` = 1000000000000",
        ),
        (
            &["data.train_size=1000000000000"],
            "config key `data.train_size` = 1000000000000",
        ),
        (
            &["network.width=1000000000"],
            "`network.width` = 1000000000",
        ),
        (
            &["controls.kind=spline", "network.layers=1000000000000"],
            "the layer states of a rank",
        ),
        (
            &["optimizer.lbfgs_memory=1000000000000"],
            "with the optimizer's memory",
        ),
    ];
    for (sets, expect) in cases {
        let mut args = vec!["train"];
        for s in *sets {
            args.extend(["--set", s]);
        }
        let out = layerpar_within_60s(p, &args);
        fails_with(&out, expect);
        assert!(stderr(&out).contains("sizes are checked before anything is allocated"));
    }
    let out = mpirun(p, 2, &["train", "--set", "network.layers=1000000000000"]);
    fails_with(&out, "`network.layers` = 1000000000000");
    assert!(!p.join("runs").exists(), "nothing is written");
}

const TINY: &[&str] = &[
    "--set",
    "data.train_size=200",
    "--set",
    "data.val_size=40",
    "--set",
    "network.layers=8",
    "--set",
    "network.width=4",
    "--set",
    "output.progress=lines",
];

/// `layerpar train ARGS TINY` in `dir`, which must succeed; its stdout.
fn train_ok(dir: &Path, args: &[&str]) -> String {
    ok(&layerpar_within_60s(
        dir,
        &[&["train"], args, TINY].concat(),
    ))
}

/// Issue 11, defects 7 and 8: --resume refuses keys that change what the stored parameters
/// or optimizer state mean, naming each with both values; other changes are allowed and
/// said in the log.
#[test]
fn resume_refuses_changes_of_meaning_naming_both_values_and_logs_the_others() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    train_ok(
        p,
        &[
            "--set",
            "optimizer.max_iter=2",
            "--set",
            "output.checkpoint_dir=l8",
            "--history",
            "l8.csv",
        ],
    );
    let resume = |sets: &[&str]| {
        let mut args = vec![
            "train",
            "--resume",
            "l8/final.h5",
            "--set",
            "output.checkpoint_dir=r",
            "--history",
            "r.csv",
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        layerpar_within_60s(p, &args)
    };
    let refused: &[(&str, &str)] = &[
        (
            "controls.kind=spline",
            "`controls.kind` (\"layer\" in the checkpoint, \"spline\" now",
        ),
        (
            "network.opening=replicate",
            "`network.opening` (\"activate\" in the checkpoint, \"replicate\" now",
        ),
        (
            "network.activation=tanh",
            "`network.activation` (\"smoothrelu\" in the checkpoint, \"tanh\" now",
        ),
        (
            "network.loss=mse",
            "`network.loss` (\"crossentropy\" in the checkpoint, \"mse\" now",
        ),
        (
            "network.final_time=2",
            "`network.final_time` (1.0 in the checkpoint, 2.0 now",
        ),
        (
            "network.width=5",
            "`network.width` (4 in the checkpoint, 5 now",
        ),
        (
            "optimizer.kind=adam",
            "`optimizer.kind` (\"lbfgs\" in the checkpoint, \"adam\" now",
        ),
        ("seed=2", "`seed` (1 in the checkpoint, 2 now"),
        (
            "nested.levels=2",
            "`nested.levels` (1 in the checkpoint, 2 now",
        ),
    ];
    for (set, expect) in refused {
        let out = resume(&[set]);
        fails_with(&out, expect);
        fails_with(&out, "use --init-from");
    }
    // Two at once: both named.
    let out = resume(&["controls.kind=spline", "network.activation=relu"]);
    fails_with(&out, "`controls.kind`");
    fails_with(&out, "`network.activation`");
    // Legitimate changes go on, and the log says so.
    let out = ok(&resume(&[
        "optimizer.max_iter=4",
        "optimizer.learning_rate=0.5",
        "controls.degree=2",
        "output.progress=lines",
    ]));
    assert!(
        out.contains("resumed with optimizer.max_iter = 4, changed from 2"),
        "{out}"
    );
    assert!(
        out.contains("resumed with optimizer.learning_rate = 0.5, changed from 1.0"),
        "{out}"
    );
    // Spline settings of a per-layer run mean nothing: allowed.
    assert!(
        out.contains("resumed with controls.degree = 2, changed from 3"),
        "{out}"
    );
    // A spline checkpoint: its degree, count and knots are part of what the coefficients mean.
    train_ok(
        p,
        &[
            "--set",
            "controls.kind=spline",
            "--set",
            "controls.count=8",
            "--set",
            "optimizer.max_iter=2",
            "--set",
            "output.checkpoint_dir=s8",
            "--history",
            "s8.csv",
        ],
    );
    for (set, expect) in [
        (
            "controls.degree=2",
            "`controls.degree` (3 in the checkpoint, 2 now",
        ),
        (
            "controls.knots=uniform",
            "`controls.knots` (\"clamped\" in the checkpoint, \"uniform\" now",
        ),
        (
            "controls.count=6",
            "`controls.count` (8 in the checkpoint, 6 now",
        ),
        (
            "controls.kind=layer",
            "`controls.kind` (\"spline\" in the checkpoint, \"layer\" now",
        ),
    ] {
        let out = layerpar_within_60s(
            p,
            &[
                "train",
                "--resume",
                "s8/final.h5",
                "--set",
                "output.checkpoint_dir=r",
                "--set",
                set,
            ],
        );
        fails_with(&out, expect);
    }
}

/// Issue 11, defect 8 (--init-from): spline coefficients going into a per-layer run are
/// evaluated at its layers (the same network function: the first loss equals the spline
/// run's last); per-layer controls going into a spline run, and splines of another degree,
/// are refused. (With controls.count = network.layers both used to be taken silently.)
#[test]
fn init_from_converts_splines_to_layers_and_refuses_the_reverse() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let spline = &["--set", "controls.kind=spline", "--set", "controls.count=8"];
    train_ok(
        p,
        &[
            &[
                "--set",
                "optimizer.max_iter=5",
                "--set",
                "output.checkpoint_dir=s",
                "--history",
                "s.csv",
            ][..],
            spline,
        ]
        .concat(),
    );
    let out = train_ok(
        p,
        &[
            "--init-from",
            "s/final.h5",
            "--set",
            "optimizer.max_iter=1",
            "--set",
            "output.checkpoint_dir=l",
            "--history",
            "l.csv",
        ],
    );
    assert!(
        out.contains("evaluated at the 8 layers of this per-layer run"),
        "{out}"
    );
    let (s, l) = (
        column(&p.join("s.csv"), "loss"),
        column(&p.join("l.csv"), "loss"),
    );
    let (last, first) = (s[s.len() - 1], l[0]);
    assert!(
        (last - first).abs() <= 1e-12 * last.abs(),
        "spline run ended at {last}, the per-layer run starts at {first}"
    );
    // A deeper per-layer network gets θ(t) at its own layers.
    train_ok(
        p,
        &[
            "--init-from",
            "s/final.h5",
            "--set",
            "optimizer.max_iter=1",
            "--set",
            "output.checkpoint_dir=l16",
            "--history",
            "l16.csv",
            "--set",
            "network.layers=16",
        ],
    );
    train_ok(
        p,
        &[
            "--set",
            "optimizer.max_iter=2",
            "--set",
            "output.checkpoint_dir=p",
            "--history",
            "p.csv",
        ],
    );
    fails_with(
        &layerpar_within_60s(
            p,
            &[
                &[
                    "train",
                    "--init-from",
                    "p/final.h5",
                    "--set",
                    "output.checkpoint_dir=x",
                ][..],
                spline,
                TINY,
            ]
            .concat(),
        ),
        "per-layer controls have no exact B-spline form",
    );
    fails_with(
        &layerpar_within_60s(
            p,
            &[
                &[
                    "train",
                    "--init-from",
                    "s/final.h5",
                    "--set",
                    "output.checkpoint_dir=x",
                    "--set",
                    "controls.degree=2",
                ][..],
                spline,
                TINY,
            ]
            .concat(),
        ),
        "degree 3 on \"clamped\" knots, this run's (controls.degree, controls.knots) degree 2",
    );
}

/// Issue 11, defects 9 and 11: a second run in a checkpoint directory that a live run holds
/// is refused with one line; the lock of a killed run is stale and taken over, and the
/// checkpoint temporaries that run left are removed (nothing else).
#[test]
fn a_checkpoint_dir_is_locked_and_a_killed_runs_lock_and_temporaries_are_cleaned_up() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    /// The first run, killed when the test ends (also when it fails).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let first = Command::new(BIN)
        .args([
            "train",
            "--set",
            "optimizer.kind=adam",
            "--set",
            "optimizer.learning_rate=0.001",
            "--set",
            "optimizer.max_iter=100000",
            "--set",
            "optimizer.gtol=0",
            "--set",
            "output.checkpoint_dir=L",
            "--history",
            "a.csv",
        ])
        .args(TINY)
        .current_dir(p)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id();
    let mut first = Killed(first);
    let lock = p.join("L/.layerpar.lock");
    let start = Instant::now();
    while !p.join("a.csv").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first run did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let held = std::fs::read_to_string(&lock).unwrap();
    assert!(held.contains(&format!("pid {pid}")), "{held}");
    let second = layerpar_within_60s(
        p,
        &[
            &[
                "train",
                "--set",
                "output.checkpoint_dir=L",
                "--history",
                "b.csv",
            ][..],
            TINY,
        ]
        .concat(),
    );
    fails_with(
        &second,
        &format!("output.checkpoint_dir = L is in use by layerpar process {pid}"),
    );
    assert!(
        !p.join("b.csv").exists(),
        "the refused run wrote its history"
    );
    first.0.kill().unwrap(); // SIGKILL: the lock stays behind
    first.0.wait().unwrap();
    assert!(lock.exists());
    for n in [
        "ckpt_000007.h5.tmp4242",
        "final.h5.tmp4243",
        "notes.h5.tmp1",
        "ckpt_000007.h5",
    ] {
        std::fs::write(p.join("L").join(n), "x").unwrap();
    }
    let out = train_ok(
        p,
        &[
            "--set",
            "optimizer.max_iter=1",
            "--set",
            "output.checkpoint_dir=L",
            "--history",
            "c.csv",
        ],
    );
    assert!(
        out.contains("took over the stale lock L/.layerpar.lock (its process"),
        "{out}"
    );
    assert!(out.contains("removed 2 temporary files of an earlier, interrupted run in L: ckpt_000007.h5.tmp4242, final.h5.tmp4243"), "{out}");
    let mut left: Vec<String> = std::fs::read_dir(p.join("L"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["ckpt_000007.h5", "final.h5", "notes.h5.tmp1"],
        "the lock is released at the end"
    );
}

/// Issue 11, defect 10: an unwritable checkpoint directory (or history directory) fails at
/// once, before any iteration, not at the first write after training.
#[test]
fn an_unwritable_output_directory_fails_before_training() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let out = layerpar_within_60s(
        p,
        &[
            "train",
            "--set",
            "output.checkpoint_dir=/proc/self",
            "--set",
            "output.progress=lines",
        ],
    );
    fails_with(
        &out,
        "config key `output.checkpoint_dir` = /proc/self: cannot write in directory /proc/self",
    );
    assert!(
        !stdout(&out).contains("iter "),
        "it trained first:\n{}",
        stdout(&out)
    );
    let out = layerpar_within_60s(
        p,
        &[
            "train",
            "--history",
            "/proc/self/h.csv",
            "--set",
            "output.progress=lines",
        ],
    );
    fails_with(
        &out,
        "the history file /proc/self/h.csv: cannot write in directory /proc/self",
    );
    assert!(!stdout(&out).contains("iter "));
}

/// Issue 11, defect 12: a diverging run stops with one line and a failing exit, and keeps
/// the checkpoints written before it diverged; `optimizer.divergence_factor = 0` lets it go.
#[test]
fn a_diverging_run_stops_and_keeps_its_last_good_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let adam = [
        "--set",
        "optimizer.kind=adam",
        "--set",
        "optimizer.batch_size=50",
        "--set",
        "output.keep_last=0",
    ];
    train_ok(
        p,
        &[
            &[
                "--set",
                "optimizer.learning_rate=0.01",
                "--set",
                "optimizer.max_iter=3",
                "--set",
                "output.checkpoint_every=1",
                "--set",
                "output.checkpoint_dir=D",
                "--history",
                "d.csv",
            ][..],
            &adam,
        ]
        .concat(),
    );
    let good = std::fs::read(p.join("D/final.h5")).unwrap();
    // Continued with a learning rate of 1e3 (a legitimate change), it diverges at once.
    let out = layerpar_within_60s(
        p,
        &[
            "train",
            "--resume",
            "D/ckpt_000003.h5",
            "--set",
            "optimizer.learning_rate=1e3",
            "--set",
            "optimizer.max_iter=10",
            "--set",
            "output.checkpoint_every=1",
            "--history",
            "d.csv",
        ],
    );
    fails_with(&out, "the objective diverged: ");
    fails_with(
        &out,
        "at iteration 4 is more than optimizer.divergence_factor = 1e4 times its best",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read(p.join("D/final.h5")).unwrap(),
        good,
        "final.h5 was replaced"
    );
    assert!(
        !p.join("D/ckpt_000004.h5").exists(),
        "the diverged iterate was checkpointed"
    );
    ok(&layerpar(p, &["inspect", "D/ckpt_000003.h5"]));
    // The issue's reproductions.
    let out = layerpar_within_60s(
        p,
        &[
            &[
                "train",
                "--set",
                "optimizer.learning_rate=1e3",
                "--set",
                "optimizer.max_iter=10",
                "--set",
                "output.checkpoint_dir=E",
                "--history",
                "e.csv",
            ][..],
            &adam,
            TINY,
        ]
        .concat(),
    );
    fails_with(&out, "the objective diverged");
    fails_with(&out, "try a smaller optimizer.learning_rate");
    let out = layerpar_within_60s(
        p,
        &[
            "train",
            "--set",
            "network.init_hidden=1e6",
            "--set",
            "output.checkpoint_dir=F",
            "--history",
            "f.csv",
        ],
    );
    fails_with(&out, "at iteration 0 is more than optimizer.divergence_factor = 1e4 times the loss of zero logits 1.6094; try smaller network.init_* values");
    assert!(!p.join("F/final.h5").exists());
    // Off: the run goes on to max_iter as before.
    train_ok(
        p,
        &[
            &[
                "--set",
                "optimizer.learning_rate=1e3",
                "--set",
                "optimizer.max_iter=3",
                "--set",
                "optimizer.divergence_factor=0",
                "--set",
                "output.checkpoint_dir=G",
                "--history",
                "g.csv",
            ][..],
            &adam,
        ]
        .concat(),
    );
}

/// Issue 11, defect 13: the exit statuses docs/usage.md gives — 2 for a malformed command
/// line (clap's usage errors), 1 for bad input and failed runs, 0 for --help.
#[test]
fn exit_statuses_are_the_documented_ones() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let usage = layerpar(p, &["train", "--no-such-option"]);
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
    assert!(
        stderr(&usage).starts_with("error: unexpected argument '--no-such-option'"),
        "{}",
        stderr(&usage)
    );
    assert_eq!(layerpar(p, &["frobnicate"]).status.code(), Some(2));
    assert_eq!(layerpar(p, &["inspect"]).status.code(), Some(2));
    let bad = layerpar(p, &["train", "--set", "network.width=0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(layerpar(p, &["inspect", "none.h5"]).status.code(), Some(1));
    assert_eq!(layerpar(p, &["train", "--help"]).status.code(), Some(0));
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/usage.md")).unwrap();
    for s in ["| 0 |", "| 1 |", "| 2 |", "| 75 |"] {
        assert!(docs.contains(s), "docs/usage.md lists exit status {s}");
    }
}
