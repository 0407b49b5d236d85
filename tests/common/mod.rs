//! Helpers for end-to-end tests of the `layerpar` binary, plain and under `mpirun`.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_layerpar");

/// `layerpar ARGS` as a plain process (an MPI singleton for train/eval).
pub fn layerpar(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .output()
        .expect("the layerpar binary starts")
}

/// `mpirun -n P layerpar ARGS` (as root where needed, oversubscribed on small machines).
pub fn mpirun(dir: &Path, ranks: usize, args: &[&str]) -> Output {
    Command::new("mpirun")
        .args(["--oversubscribe", "-n", &ranks.to_string(), BIN])
        .args(args)
        .current_dir(dir)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .expect("mpirun is installed (scripts/setup.sh installs OpenMPI)")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts a clean failure: non-zero exit, a one-line `error:` message containing `expect`,
/// and no panic.
pub fn fails_with(o: &Output, expect: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stdout:\n{}",
        stdout(o)
    );
    assert!(!err.contains("panicked"), "the binary panicked:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, stderr:\n{err}");
    assert!(
        lines[0].contains(expect),
        "error `{}` does not mention `{expect}`",
        lines[0]
    );
}

/// Parses a history CSV into (header, rows of fields).
pub fn history(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).expect("history file exists");
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

/// Column `name` of the history as numbers.
pub fn column(path: &Path, name: &str) -> Vec<f64> {
    let (h, rows) = history(path);
    let i = h.iter().position(|c| c == name).expect("column exists");
    rows.iter().map(|r| r[i].parse().unwrap()).collect()
}

/// The history's rows without the wall-time column (which differs between runs).
pub fn rows_without_time(path: &Path) -> Vec<Vec<String>> {
    let (h, rows) = history(path);
    let t = h.iter().position(|c| c == "time_s").unwrap();
    rows.into_iter()
        .map(|mut r| {
            r.remove(t);
            r
        })
        .collect()
}

/// `mpirun -n P <check binary> ARGS`: asserts success, the rank count and no failed check.
pub fn mpirun_check(binary: &str, ranks: usize, args: &[&str], banner: &str) -> String {
    let out = Command::new("mpirun")
        .args(["--oversubscribe", "-n", &ranks.to_string(), binary])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun is installed (scripts/setup.sh installs OpenMPI)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} on {ranks} ranks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A launcher that does not match the MPI library starts separate one-rank jobs.
    assert!(
        stdout.contains(&format!("{banner} on {ranks} ranks")),
        "wrong rank count:\n{stdout}"
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    stdout
}

/// `mpirun -n P layerpar-check ARGS`, checked as [`mpirun_check`] does.
pub fn layerpar_check(ranks: usize, args: &[&str]) -> String {
    mpirun_check(
        env!("CARGO_BIN_EXE_layerpar-check"),
        ranks,
        args,
        "layerpar-check",
    )
}

/// `layerpar-check ARGS` on 2, 3 and 4 ranks prints the same objective bits and gradient
/// fingerprint as on 1 rank.
pub fn assert_same_bits_on_2_to_4_ranks(args: &[&str]) {
    let first = layerpar_check(1, args);
    for p in [2, 3, 4] {
        let out = layerpar_check(p, args);
        for what in ["objective bits", "gradient fingerprint"] {
            assert_eq!(line(&out, what), line(&first, what), "{args:?}, P = {p}");
        }
    }
}

/// The first line of `out` that starts with `prefix`.
pub fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .expect("line present")
}
