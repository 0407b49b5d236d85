//! `layerpar study` and `layerpar plot` end to end: a tiny study on 1 and 2 ranks, a study
//! stopped (by --max-runs and by SIGTERM) that continues without redoing finished runs, a
//! changed study file refused, bad study files rejected, and plots of a real history.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// 2 groups × 2 seeds of tiny runs.
const TINY: &str = r#"
[study]
name = "tiny"
seeds = [1, 2]
reach_acc = 0.5
[study.base]
"optimizer.max_iter" = 4
"data.train_size" = 200
"data.val_size" = 40
"network.layers" = 6
"network.width" = 4
[[study.group]]
name = "layer"
set = { "controls.kind" = "layer" }
[[study.group]]
name = "spline"
set = { "controls.kind" = "spline", "controls.count" = 4 }
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of runs.csv as (header, rows of cells).
fn runs_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    history(path)
}

/// runs.csv without the wall-time column (which differs from run to run).
fn without_wall(path: &Path) -> Vec<Vec<String>> {
    let (h, rows) = runs_csv(path);
    let w = h.iter().position(|c| c == "wall_s").unwrap();
    rows.into_iter()
        .map(|mut r| {
            r.remove(w);
            r
        })
        .collect()
}

fn nonempty(path: &Path) {
    let n = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    assert!(n > 1000, "{} has only {n} bytes", path.display());
}

#[test]
fn a_tiny_study_runs_on_1_and_2_ranks_with_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "tiny.toml", TINY);
    let out = ok(&layerpar(d, &["study", "tiny.toml"]));
    assert!(
        out.contains("4 runs, 0 finished before, 4 to run on 1 MPI rank;"),
        "{out}"
    );
    let (h, rows) = runs_csv(&d.join("tiny/runs.csv"));
    assert_eq!(rows.len(), 4);
    for col in [
        "run",
        "group",
        "seed",
        "status",
        "iterations",
        "val_acc",
        "val_loss",
        "wall_s",
    ] {
        assert!(h.iter().any(|c| c == col), "{col} missing from {h:?}");
    }
    let status = h.iter().position(|c| c == "status").unwrap();
    assert!(rows.iter().all(|r| r[status] == "ok"), "{rows:?}");
    let group = h.iter().position(|c| c == "group").unwrap();
    let groups: Vec<&str> = rows.iter().map(|r| r[group].as_str()).collect();
    assert_eq!(groups, ["layer", "layer", "spline", "spline"]);
    let (sh, summary) = runs_csv(&d.join("tiny/summary.csv"));
    assert_eq!(summary.len(), 2);
    let n = sh.iter().position(|c| c == "val_acc_n").unwrap();
    assert_eq!((summary[0][n].as_str(), summary[1][n].as_str()), ("2", "2"));
    for f in ["boxplot.svg", "boxplot.png"] {
        nonempty(&d.join("tiny").join(f));
    }
    assert!(read(&d.join("tiny/boxplot.svg")).contains("Validation accuracy"));
    // The printed table has a row per group.
    assert!(
        out.lines()
            .any(|l| l.starts_with("layer ") && l.contains("val_acc")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("spline ")), "{out}");
    for r in 0..4 {
        let run = d.join(format!("tiny/runs/run-{r:04}"));
        assert!(run.join("final.h5").is_file() && run.join("history.csv").is_file());
    }

    // The same study on 2 ranks: every rank runs every run, the results are the same bits.
    let p2 = ok(&mpirun(d, 2, &["study", "tiny.toml", "--out", "p2"]));
    assert!(
        p2.contains("4 to run on 2 MPI ranks;"),
        "rank count wrong (a launcher that does not match the MPI library starts 1-rank jobs):\n{p2}"
    );
    assert_eq!(
        p2.matches("run 3 [4/4]").count(),
        1,
        "only rank 0 prints:\n{p2}"
    );
    assert_eq!(
        without_wall(&d.join("p2/runs.csv")),
        without_wall(&d.join("tiny/runs.csv"))
    );

    // --list and --count read only.
    let list = ok(&layerpar(d, &["study", "tiny.toml", "--list"]));
    assert!(
        list.starts_with("study tiny: 4 runs (2 groups × 1 points × 2 seeds)"),
        "{list}"
    );
    assert_eq!(list.matches("finished").count(), 4, "{list}");
    assert_eq!(
        ok(&layerpar(d, &["study", "tiny.toml", "--count"])).trim(),
        "4"
    );
    // Rerun: nothing left to do, the summary is written again.
    let again = ok(&layerpar(d, &["study", "tiny.toml"]));
    assert!(again.contains("4 finished before, 0 to run"), "{again}");
}

#[test]
fn a_stopped_study_continues_without_redoing_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "tiny.toml", TINY);
    let first = ok(&layerpar(d, &["study", "tiny.toml", "--max-runs", "2"]));
    assert!(
        first.contains("2 of 4 runs finished (2 in this job), stopped at --max-runs 2"),
        "{first}"
    );
    assert!(!d.join("tiny/summary.csv").exists());
    let before = read(&d.join("tiny/runs.csv"));
    assert_eq!(before.lines().count(), 3);
    let results: Vec<String> = (0..2)
        .map(|r| read(&d.join(format!("tiny/runs/run-{r:04}/result.csv"))))
        .collect();
    // An unfinished run's leftovers (as a killed run leaves them) are cleared and redone.
    std::fs::create_dir_all(d.join("tiny/runs/run-0002")).unwrap();
    write(&d.join("tiny/runs/run-0002"), "history.csv", "iter\n0\n");
    let rest = ok(&layerpar(d, &["study", "tiny.toml"]));
    assert!(rest.contains("2 finished before, 2 to run"), "{rest}");
    assert!(
        !rest.contains("run 0 [") && !rest.contains("run 1 ["),
        "{rest}"
    );
    let after = read(&d.join("tiny/runs.csv"));
    assert_eq!(after.lines().count(), 5);
    // The first runs' rows (wall times included) are untouched.
    assert!(after.starts_with(&before), "{before}\n---\n{after}");
    for (r, text) in results.iter().enumerate() {
        assert_eq!(
            &read(&d.join(format!("tiny/runs/run-{r:04}/result.csv"))),
            text
        );
    }
    assert!(d.join("tiny/summary.csv").is_file());
    // The same result as a study run in one go.
    ok(&layerpar(d, &["study", "tiny.toml", "--out", "whole"]));
    assert_eq!(
        without_wall(&d.join("whole/runs.csv")),
        without_wall(&d.join("tiny/runs.csv"))
    );
}

#[test]
fn a_signalled_study_stops_with_75_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "long.toml",
        "[study]\nname = \"long\"\nseeds = [1, 2]\n[study.base]\n\"optimizer.max_iter\" = 400\n\"optimizer.gtol\" = 0\n\"data.train_size\" = 200\n\"data.val_size\" = 40\n\"network.layers\" = 6\n\"network.width\" = 4\n",
    );
    let child = std::process::Command::new(BIN)
        .args(["study", "long.toml"])
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal while the second run trains (after the first has finished).
    let second = d.join("long/runs/run-0001/history.csv");
    let t = Instant::now();
    while std::fs::read_to_string(&second).map_or(0, |s| s.lines().count()) < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the second run did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{}\n{err}", stdout(&out));
    assert!(
        err.contains("study stopped by a signal with 1 of 2 runs finished"),
        "{err}"
    );
    assert!(!d.join("long/runs/run-0001/result.csv").exists());
    let first = read(&d.join("long/runs/run-0000/result.csv"));
    let again = ok(&layerpar(d, &["study", "long.toml"]));
    assert!(again.contains("1 finished before, 1 to run"), "{again}");
    assert_eq!(read(&d.join("long/runs/run-0000/result.csv")), first);
    assert_eq!(read(&d.join("long/runs.csv")).lines().count(), 3);
}

#[test]
fn a_changed_study_file_is_refused_against_its_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "tiny.toml", TINY);
    ok(&layerpar(d, &["study", "tiny.toml", "--max-runs", "1"]));
    write(
        d,
        "tiny.toml",
        &TINY.replace("\"optimizer.max_iter\" = 4", "\"optimizer.max_iter\" = 5"),
    );
    let o = layerpar(d, &["study", "tiny.toml"]);
    fails_with(&o, "holds runs of a different design");
    assert!(
        stderr(&o).contains("first at run 0 group layer seed 1"),
        "{}",
        stderr(&o)
    );
    // A --set changes the design too; the original design is accepted again.
    write(d, "tiny.toml", TINY);
    fails_with(
        &layerpar(d, &["study", "tiny.toml", "--set", "network.width=5"]),
        "different design",
    );
    let o = ok(&layerpar(d, &["study", "tiny.toml"]));
    assert!(o.contains("1 finished before, 3 to run"), "{o}");
}

#[test]
fn bad_study_files_fail_before_any_run_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = [
        (
            "[study]\nname = \"b\"\nsamples = 3\n",
            "`study.samples` and `study.lhs_seed` apply to design = \"lhs\"",
        ),
        ("[study]\nname = \"b\"\nseed = [1]\n", "unknown key `study.seed`"),
        (
            "[study]\nname = \"b\"\n[[study.param]]\nkey = \"optimizer.learning_rate\"\nrange = [1, 0.1]\npoints = 2\n",
            "`range` must be [lo, hi] with numbers lo < hi",
        ),
        (
            "[study]\nname = \"b\"\n[[study.param]]\nkey = \"optimizer.learnig_rate\"\nvalues = [0.1]\n",
            "unknown config key `optimizer.learnig_rate`",
        ),
        (
            "[study]\nname = \"b\"\n[[study.group]]\nname = \"g\"\nset = { \"controls.kind\" = \"bspline\" }\n",
            "config key `controls.kind` must be one of",
        ),
        (
            "[study]\nname = \"b\"\n[study.base]\n\"output.checkpoint_dir\" = \"x\"\n",
            "the study sets `output.checkpoint_dir` for each run",
        ),
    ];
    for (text, expect) in cases {
        write(d, "bad.toml", text);
        fails_with(&layerpar(d, &["study", "bad.toml"]), expect);
        assert!(
            !d.join("b").exists(),
            "{text}: the output folder was created"
        );
    }
    fails_with(
        &layerpar(d, &["study", "missing.toml"]),
        "cannot read study file missing.toml",
    );
    write(d, "tiny.toml", TINY);
    fails_with(
        &layerpar(d, &["study", "tiny.toml", "--run", "4"]),
        "--run 4: the study has 4 runs (0 … 3)",
    );
}

#[test]
fn job_array_tasks_run_one_run_each_and_the_last_writes_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "tiny.toml", TINY);
    for id in [3, 1, 0] {
        let o = ok(&layerpar(
            d,
            &["study", "tiny.toml", "--run", &id.to_string()],
        ));
        assert!(o.contains(&format!("run {id} [")), "{o}");
        assert!(!d.join("tiny/summary.csv").exists());
    }
    let o = ok(&layerpar(d, &["study", "tiny.toml", "--run", "1"]));
    assert!(o.contains("run 1 has finished already"), "{o}");
    let last = ok(&layerpar(d, &["study", "tiny.toml", "--run", "2"]));
    assert!(last.contains("wrote tiny/runs.csv"), "{last}");
    assert_eq!(read(&d.join("tiny/runs.csv")).lines().count(), 5);
    let s = ok(&layerpar(d, &["study", "tiny.toml", "--summarize"]));
    assert!(
        s.contains("wrote tiny/runs.csv, tiny/summary.csv, tiny/boxplot.svg and tiny/boxplot.png"),
        "{s}"
    );
}

#[test]
fn plot_draws_a_real_history_as_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A layer-parallel run with MGRIT residuals, and a serial one without.
    let small = [
        "--set",
        "optimizer.max_iter=5",
        "--set",
        "data.train_size=200",
        "--set",
        "network.layers=8",
        "--set",
        "output.progress=none",
    ];
    ok(&layerpar(
        d,
        &[
            &[
                "train",
                "--history",
                "mgrit.csv",
                "--set",
                "mgrit.max_levels=2",
            ],
            &small[..],
        ]
        .concat(),
    ));
    ok(&layerpar(
        d,
        &[&["train", "--history", "serial.csv"], &small[..]].concat(),
    ));
    let o = ok(&layerpar(d, &["plot", "mgrit.csv"]));
    assert!(o.contains("wrote mgrit.svg and mgrit.png"), "{o}");
    for f in ["mgrit.svg", "mgrit.png"] {
        nonempty(&d.join(f));
    }
    let svg = read(&d.join("mgrit.svg"));
    for text in [
        "MGRIT residuals",
        "adjoint MGRIT residual",
        "validation accuracy",
        "iteration",
    ] {
        assert!(svg.contains(text), "{text} missing");
    }
    assert!(!svg.contains("no MGRIT residuals"));
    ok(&layerpar(d, &["plot", "serial.csv", "--out", "s"]));
    nonempty(&d.join("s.png"));
    assert!(read(&d.join("s.svg")).contains("no MGRIT residuals (serial run)"));
    assert_eq!(&std::fs::read(d.join("s.png")).unwrap()[1..4], b"PNG");
    write(d, "bad.csv", "a,b\n1,2\n");
    fails_with(&layerpar(d, &["plot", "bad.csv"]), "no `iter` column");
    fails_with(&layerpar(d, &["plot", "none.csv"]), "cannot read none.csv");
}
