//! Checkpoints end to end: exact restart (L-BFGS and Adam, across rank counts), a process
//! killed while writing, files that h5dump and h5py read, nested iteration and --init-from.

mod common;
use common::*;
use std::fs;
use std::path::Path;

const SMALL: &[&str] = &[
    "--set",
    "data.train_size=300",
    "--set",
    "data.val_size=50",
    "--set",
    "network.layers=7",
    "--set",
    "output.progress=none",
];

const ADAM: &[&str] = &[
    "--set",
    "optimizer.kind=adam",
    "--set",
    "optimizer.learning_rate=0.01",
    "--set",
    "optimizer.batch_size=64",
];

fn rows(path: &Path) -> Vec<Vec<String>> {
    rows_without_time(path)
}

fn run(d: &Path, ranks: usize, args: &[&str]) -> String {
    if ranks == 0 {
        ok(&layerpar(d, args))
    } else {
        ok(&mpirun(d, ranks, args))
    }
}

/// 20 iterations straight equal 10 + resume + 10, bit for bit; the resumed part may run on
/// another number of ranks.
fn exact_restart(extra: &[&str], first: usize, second: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let straight = [
        &[
            "train",
            "--history",
            "a.csv",
            "--set",
            "output.checkpoint_dir=a",
            "--set",
            "optimizer.max_iter=20",
        ][..],
        SMALL,
        extra,
    ]
    .concat();
    run(d, 1, &straight);
    let part = [
        &[
            "train",
            "--history",
            "b.csv",
            "--set",
            "output.checkpoint_dir=b",
            "--set",
            "optimizer.max_iter=10",
        ][..],
        SMALL,
        extra,
    ]
    .concat();
    run(d, first, &part);
    let resumed = [
        "train",
        "--resume",
        "b/final.h5",
        "--set",
        "optimizer.max_iter=20",
        "--history",
        "b.csv",
        "--set",
        "output.checkpoint_dir=c",
    ];
    let out = run(
        d,
        second,
        &[&resumed[..], &["--set", "output.progress=lines"]].concat(),
    );
    assert!(out.contains("resuming b/final.h5 at iteration 10"), "{out}");
    let (a, b) = (rows(&d.join("a.csv")), rows(&d.join("b.csv")));
    assert_eq!(a.len(), 21);
    assert_eq!(a, b, "first on {first} ranks, resumed on {second}");
}

#[test]
fn lbfgs_restart_is_exact_on_one_and_two_ranks() {
    exact_restart(&[], 1, 1);
    exact_restart(&[], 2, 2);
}

#[test]
fn adam_restart_is_exact_on_one_and_two_ranks() {
    exact_restart(ADAM, 1, 1);
    exact_restart(ADAM, 2, 2);
}

#[test]
fn a_two_rank_checkpoint_resumes_on_one_and_three_ranks() {
    exact_restart(&[], 2, 1);
    exact_restart(ADAM, 2, 3);
}

#[test]
fn periodic_checkpoints_keep_the_newest_and_h5dump_and_h5py_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        &[
            "train",
            "--set",
            "optimizer.max_iter=9",
            "--set",
            "output.checkpoint_every=2",
            "--set",
            "output.keep_last=2",
        ][..],
        SMALL,
    ]
    .concat();
    run(d, 2, &args);
    let mut names: Vec<String> = fs::read_dir(d.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ckpt_000006.h5",
            "ckpt_000008.h5",
            "final.h5",
            "history.csv"
        ]
    );
    let dump = std::process::Command::new("h5dump")
        .args(["-H", "runs/ckpt_000008.h5"])
        .current_dir(d)
        .output()
        .unwrap();
    let text = stdout(&dump);
    assert!(dump.status.success());
    for item in [
        "hidden_weight",
        "lbfgs_s",
        "batch_order",
        "\"history\"",
        "\"config\"",
        "checksum",
        "( 7, 8, 8 )",
    ] {
        assert!(text.contains(item), "h5dump lacks {item}:\n{text}");
    }
    let out = ok(&layerpar(d, &["inspect", "runs/ckpt_000008.h5"]));
    assert!(
        out.contains("iteration 8") && out.contains("(verified)") && out.contains("8 L-BFGS pairs"),
        "{out}"
    );
    // Python's h5py reads the same file: the parameter norm equals what `inspect` prints.
    let script = "import h5py, math, sys\n\
                  f = h5py.File(sys.argv[1], 'r')\n\
                  p = f['parameters']\n\
                  norm = math.sqrt(sum(float((p[k][...] ** 2).sum()) for k in p))\n\
                  print(f'{norm:.6e}', int(f.attrs['iteration']), f['history/values'].shape[0],\n\
                        '[network]' in f.attrs['config'])\n";
    let py = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script, "runs/ckpt_000008.h5"])
        .current_dir(d)
        .output()
        .expect("/usr/bin/python3 runs (scripts/setup.sh installs python3-h5py)");
    assert!(
        py.status.success(),
        "h5py cannot read the checkpoint (scripts/setup.sh installs python3-h5py): {}",
        stderr(&py)
    );
    let fields: Vec<String> = stdout(&py).split_whitespace().map(String::from).collect();
    let norm_line = out
        .lines()
        .find(|l| l.starts_with("parameter norm"))
        .expect("inspect prints the parameter norm");
    let printed: f64 = norm_line
        .trim_start_matches("parameter norm ")
        .parse()
        .unwrap();
    let read: f64 = fields[0].parse().unwrap();
    assert!(
        (read - printed).abs() <= 1e-5 * printed,
        "h5py {read} vs inspect {printed}"
    );
    assert_eq!(fields[1..], ["8", "9", "True"], "{fields:?}");
}

/// SIGKILL at several moments of a run that checkpoints every iteration: every checkpoint
/// left behind is complete and loads; partial writes exist only under temporary names.
#[test]
fn killing_the_process_during_checkpoint_writes_leaves_loadable_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Each run is killed a different time after its first complete checkpoint, so that the
    // kills land at different moments of the writes that follow (one per iteration).
    for (k, delay_ms) in [0u64, 170, 340, 510].into_iter().enumerate() {
        let ck = format!("output.checkpoint_dir=k{k}");
        let mut child = std::process::Command::new(BIN)
            .args([
                "train",
                "--set",
                "network.width=32",
                "--set",
                "network.layers=48",
                "--set",
                "data.train_size=300",
                "--set",
                "optimizer.max_iter=1000",
                "--set",
                "output.checkpoint_every=1",
                "--set",
                "output.keep_last=0",
                "--set",
                "output.progress=none",
                "--set",
                &ck,
                "--history",
                &format!("k{k}.csv"),
            ])
            .current_dir(d)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let first = std::time::Instant::now();
        let has_checkpoint = || {
            fs::read_dir(d.join(format!("k{k}"))).is_ok_and(|mut it| {
                it.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".h5")))
            })
        };
        while !has_checkpoint() {
            assert!(
                first.elapsed() < std::time::Duration::from_secs(120),
                "no checkpoint was written within two minutes"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let dir = d.join(format!("k{k}"));
        let mut complete = 0;
        for e in fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".h5") {
                let out = layerpar(&dir, &["inspect", &name]);
                assert!(
                    out.status.success(),
                    "{name} does not load after SIGKILL: {}",
                    stderr(&out)
                );
                complete += 1;
            } else {
                // Partial checkpoints, and the killed run's lock (taken over by the next run).
                assert!(
                    name.contains(".h5.tmp") || name == ".layerpar.lock",
                    "unexpected file {name}"
                );
            }
        }
        assert!(complete >= 1, "the first checkpoint is gone");
    }
}

#[test]
fn nested_iteration_trains_deeper_networks_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(
        d,
        2,
        &[
            "train",
            "--set",
            "network.layers=16",
            "--set",
            "nested.levels=3",
            "--set",
            "nested.max_iter=[6,4,3]",
            "--set",
            "nested.interp=linear",
            "--set",
            "data.train_size=300",
            "--set",
            "output.progress=lines",
        ],
    );
    for l in [
        "nested level 0 of 3: 4 hidden layers",
        "nested level 1 of 3: 8 hidden layers",
        "nested level 2 of 3: 16 hidden layers",
    ] {
        assert!(out.contains(l), "{out}");
    }
    for f in ["level0.h5", "level1.h5", "level2.h5", "final.h5"] {
        assert!(d.join("runs").join(f).exists(), "{f}");
    }
    let (_, rows) = history(&d.join("runs/history.csv"));
    let levels: Vec<&str> = rows.iter().map(|r| r[10].as_str()).collect();
    assert_eq!(levels.len(), 7 + 5 + 4);
    assert_eq!(levels.iter().filter(|l| **l == "2").count(), 4);
    // A level starts where the previous one ended: the first loss of level 1 is far below
    // the first loss of level 0.
    let loss = column(&d.join("runs/history.csv"), "loss");
    assert!(loss[7] < 0.95 * loss[0], "{loss:?}");
    let e = ok(&layerpar(d, &["eval", "--checkpoint", "runs/level1.h5"]));
    assert!(e.contains("level 1"), "{e}");
}

#[test]
fn init_from_starts_a_deeper_network_and_mismatches_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(
        d,
        0,
        &[&["train", "--set", "optimizer.max_iter=15"][..], SMALL].concat(),
    );
    let out = run(
        d,
        2,
        &[
            &[
                "train",
                "--init-from",
                "runs/final.h5",
                "--set",
                "network.layers=14",
                "--set",
                "optimizer.max_iter=2",
                "--set",
                "output.checkpoint_dir=deep",
                "--history",
                "deep.csv",
            ][..],
            &SMALL[..4],
        ]
        .concat(),
    );
    assert!(out.contains("parameters: 1077 on 2 ranks"), "{out}");
    assert!(ok(&layerpar(d, &["inspect", "deep/final.h5"])).contains("14 hidden layers"));
    let coarse = column(&d.join("runs/history.csv"), "loss");
    let deep = column(&d.join("deep.csv"), "loss");
    assert!(
        deep[0] < 0.9 * coarse[0],
        "the deeper network starts from the trained one: {deep:?} vs {coarse:?}"
    );
    fails_with(
        &layerpar(
            d,
            &[
                "train",
                "--init-from",
                "runs/final.h5",
                "--set",
                "network.width=5",
            ],
        ),
        "width 8 (the run has 5)",
    );
    fails_with(
        &layerpar(
            d,
            &[
                "train",
                "--resume",
                "runs/final.h5",
                "--set",
                "network.layers=9",
            ],
        ),
        "use --init-from",
    );
    fails_with(
        &layerpar(
            d,
            &["train", "--resume", "runs/final.h5", "--config", "x.toml"],
        ),
        "change keys with --set",
    );
}

/// A nested run resumed from a mid-level checkpoint, on another rank count, continues the
/// same history (all levels) bit for bit.
#[test]
fn nested_runs_resume_mid_level_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "train",
        "--set",
        "network.layers=16",
        "--set",
        "nested.levels=3",
        "--set",
        "nested.max_iter=[6,6,6]",
        "--set",
        "data.train_size=300",
        "--set",
        "output.checkpoint_every=3",
        "--set",
        "output.keep_last=0",
        "--set",
        "output.progress=none",
        "--history",
        "a.csv",
        "--set",
        "output.checkpoint_dir=a",
    ];
    run(d, 1, &args);
    run(
        d,
        2,
        &[
            "train",
            "--resume",
            "a/ckpt_L1_000003.h5",
            "--history",
            "b.csv",
            "--set",
            "output.checkpoint_dir=b",
        ],
    );
    let (a, b) = (rows(&d.join("a.csv")), rows(&d.join("b.csv")));
    assert_eq!(a.len(), 21);
    assert_eq!(a, b);
}

/// Spline nested iteration with knot refinement: 5 → 7 → 11 coefficient sets, θ(t) carried
/// over exactly (the first loss of a level equals the last of the level before, up to the
/// change of depth).
#[test]
fn spline_nested_iteration_refines_knots() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(
        d,
        2,
        &[
            "train",
            "--set",
            "controls.kind=spline",
            "--set",
            "controls.count=5",
            "--set",
            "network.layers=16",
            "--set",
            "nested.levels=3",
            "--set",
            "nested.interp=knots",
            "--set",
            "nested.max_iter=[8,4,4]",
            "--set",
            "nested.mgrit_levels=[1,2,2]",
            "--set",
            "data.train_size=300",
            "--set",
            "output.progress=none",
        ],
    );
    for (f, sets) in [("level0.h5", 5), ("level1.h5", 7), ("level2.h5", 11)] {
        let out = ok(&layerpar(d, &["inspect", &format!("runs/{f}")]));
        let params = 2 * 8 + 8 + sets * (8 * 8 + 8) + 5 * 8 + 5;
        assert!(
            out.contains(&format!("; {params} parameters")),
            "{f}: {out}"
        );
    }
    let loss = column(&d.join("runs/history.csv"), "loss");
    // Level 1 starts from level 0's θ(t) on a twice finer grid: close to where level 0 ended.
    assert!((loss[9] - loss[8]).abs() < 0.1 * loss[8], "{loss:?}");
    fails_with(
        &layerpar(d, &["train", "--set", "nested.interp=knots"]),
        "applies to spline controls",
    );
}

/// SIGUSR1 to mpirun (what a Slurm job script forwards before the time limit): every rank
/// finishes its iteration, a checkpoint is written, the exit status is 75 (requeue), and the
/// run resumed from that checkpoint (on another rank count) has the uninterrupted history.
#[test]
fn a_signal_stops_with_a_checkpoint_and_the_resumed_history_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "--set",
        "network.layers=48",
        "--set",
        "network.width=16",
        "--set",
        "data.train_size=2000",
        "--set",
        "output.progress=none",
        "--set",
        "optimizer.max_iter=400",
    ];
    // Uninterrupted reference is computed after the interrupted run, to the same iteration.
    let child = std::process::Command::new("mpirun")
        .args([
            "--oversubscribe",
            "-n",
            "2",
            BIN,
            "train",
            "--history",
            "sig.csv",
            "--set",
            "output.checkpoint_dir=sig",
        ])
        .args(args)
        .current_dir(d)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once a few iterations are done (the handlers are installed before the first).
    let begun = std::time::Instant::now();
    while fs::read_to_string(d.join("sig.csv")).map_or(0, |s| s.lines().count()) < 6 {
        assert!(
            begun.elapsed() < std::time::Duration::from_secs(120),
            "the run did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "stderr:\n{err}");
    assert!(err.contains("stopped by a signal after iteration"), "{err}");
    let ckpts: Vec<String> = fs::read_dir(d.join("sig"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(ckpts.len(), 1, "{ckpts:?}");
    let stopped: usize = ckpts[0]
        .trim_start_matches("ckpt_")
        .trim_end_matches(".h5")
        .parse()
        .unwrap();
    assert!(stopped < 400, "the signal arrived before the end");
    // Resume on 3 ranks to a few iterations past the stop; compare with a straight run.
    let target = format!("optimizer.max_iter={}", stopped + 3);
    run(
        d,
        3,
        &[
            "train",
            "--resume",
            &format!("sig/{}", ckpts[0]),
            "--history",
            "sig.csv",
            "--set",
            &target,
            "--set",
            "output.checkpoint_dir=sig2",
        ],
    );
    run(
        d,
        1,
        &[
            &[
                "train",
                "--history",
                "ref.csv",
                "--set",
                "output.checkpoint_dir=ref",
            ][..],
            &args[..args.len() - 2],
            &["--set", &target],
        ]
        .concat(),
    );
    assert_eq!(rows(&d.join("sig.csv")), rows(&d.join("ref.csv")));
}

/// `nested.target_acc` holds fractions, and `nested.target_measure` chooses the accuracy it
/// is compared with: a level stops before the first iteration after the row whose chosen
/// accuracy (validation by default, or training) reaches the target, with exactly the rows
/// the unstopped run has up to there; the next level then runs its whole budget.
#[test]
fn nested_levels_stop_when_the_chosen_accuracy_reaches_a_fractional_target() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = [
        "train",
        "--set",
        "network.layers=8",
        "--set",
        "nested.levels=2",
        "--set",
        "nested.max_iter=[12,2]",
        "--set",
        "data.train_size=300",
        "--set",
        "data.val_size=50",
        "--set",
        "output.progress=lines",
    ];
    let with = |extra: &[&str], name: &str| -> Vec<String> {
        let dirset = format!("output.checkpoint_dir={name}");
        let hist = format!("{name}.csv");
        let args = [&base[..], extra, &["--set", &dirset, "--history", &hist]].concat();
        run(d, 2, &args)
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    with(&[], "full");
    let full = rows(&d.join("full.csv"));
    let (train, val) = (
        column(&d.join("full.csv"), "train_acc"),
        column(&d.join("full.csv"), "val_acc"),
    );
    assert_eq!(full.len(), 13 + 3);
    // The first row of level 0 whose accuracy reaches t.
    let first = |acc: &[f64], t: f64| acc[..13].iter().position(|&a| a >= t);
    // A fractional target that the two measures reach at different rows inside the budget.
    let t = train[1..13]
        .iter()
        .chain(&val[1..13])
        .copied()
        .filter(|&t| t > 0.0 && t < 1.0)
        .find(|&t| match (first(&train, t), first(&val, t)) {
            (Some(a), Some(b)) => a != b && a < 12 && b < 12,
            _ => false,
        })
        .expect("a target the two accuracies reach at different iterations");
    let target = format!("nested.target_acc=[{t}, 1]");
    for (measure, acc) in [("val", &val), ("train", &train)] {
        let k = first(acc, t).unwrap();
        let m = format!("nested.target_measure={measure}");
        let mut extra = vec!["--set", &target];
        if measure == "train" {
            extra.extend(["--set", &m]);
        }
        let out = with(&extra, measure);
        let got = rows(&d.join(format!("{measure}.csv")));
        let level0: Vec<_> = got.iter().filter(|r| r[9] == "0").cloned().collect();
        assert_eq!(level0, full[..=k], "{measure}: stops right after row {k}");
        assert_eq!(got.len(), k + 1 + 3, "{measure}: level 1 runs its budget");
        let what = if measure == "val" {
            "validation"
        } else {
            "training"
        };
        let note = format!("nested level 0 stopped: {what} accuracy reached {t:.4}");
        assert!(out.contains(&note), "{note}\n{out:?}");
        assert!(
            out.iter()
                .any(|l| l == "stopped: reached optimizer.max_iter = 2"),
            "{out:?}"
        );
    }
}

/// `eval --set network.layers=K` of a per-layer checkpoint: at the checkpoint's own depth the
/// parameters as they are (the last history row); at another depth the controls interpolated
/// in time as `--init-from` moves them (nested.interp), with the loss and accuracy of the
/// network that `train --init-from` starts from (its row 0), and a note saying so.
#[test]
fn eval_of_a_per_layer_checkpoint_at_another_depth_interpolates_its_controls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(
        d,
        0,
        &[&["train", "--set", "optimizer.max_iter=15"][..], SMALL].concat(),
    );
    // The printed "loss L  accuracy A" of an eval line that starts with `what`.
    let metrics = |out: &str, what: &str| -> (f64, String) {
        let l = line(out, what);
        let w: Vec<&str> = l.split_whitespace().collect();
        let at = |k: &str| w[w.iter().position(|x| *x == k).unwrap() + 1];
        (at("loss").parse().unwrap(), at("accuracy").to_string())
    };
    let eval = |sets: &[&str]| {
        let mut args = vec!["eval", "--checkpoint", "runs/final.h5"];
        for s in sets {
            args.extend(["--set", s]);
        }
        ok(&layerpar(d, &args))
    };
    let hist = d.join("runs/history.csv");
    let same = eval(&["network.layers=7"]);
    assert!(!same.contains("interpolated"), "{same}");
    assert_eq!(same, eval(&[]), "the checkpoint's own depth is the default");
    let (loss, acc) = metrics(&same, "train:");
    let last = column(&hist, "loss")[15];
    assert!((loss - last).abs() <= 1e-6 * last, "{loss} vs {last}");
    assert_eq!(acc, format!("{:.4}", column(&hist, "train_acc")[15]));
    for (k, interp) in [("14", "constant"), ("14", "linear"), ("4", "linear")] {
        let layers = format!("network.layers={k}");
        let how = format!("nested.interp={interp}");
        let e = eval(&[&layers, &how]);
        assert!(
            e.contains(&format!(
                "per-layer controls interpolated in time from 7 to {k} hidden layers (nested.interp = \"{interp}\")"
            )) && e.contains(&format!("evaluated with {k} hidden layers")),
            "{e}"
        );
        let name = format!("init-{k}-{interp}");
        let (dirset, csv) = (
            format!("output.checkpoint_dir={name}"),
            format!("{name}.csv"),
        );
        let args = [
            &[
                "train",
                "--init-from",
                "runs/final.h5",
                "--set",
                &layers,
                "--set",
                &how,
                "--set",
                "optimizer.max_iter=0",
                "--set",
                &dirset,
                "--history",
                &csv,
            ][..],
            &SMALL[..4],
        ]
        .concat();
        run(d, 2, &args);
        let start = d.join(&csv);
        for (what, col) in [("train:", "train_acc"), ("validation:", "val_acc")] {
            let (loss, acc) = metrics(&e, what);
            if what == "train:" {
                let l0 = column(&start, "loss")[0];
                assert!(
                    (loss - l0).abs() <= 1e-6 * l0,
                    "{k} {interp}: {loss} vs {l0}"
                );
            }
            assert_eq!(
                acc,
                format!("{:.4}", column(&start, col)[0]),
                "{k} {interp}"
            );
        }
    }
    // The interpolations differ (the test would not tell them apart otherwise).
    let (a, _) = metrics(&eval(&["network.layers=14"]), "train:");
    let (b, _) = metrics(
        &eval(&["network.layers=14", "nested.interp=linear"]),
        "train:",
    );
    assert_ne!(a, b);
}
