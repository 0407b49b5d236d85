//! The solver under mpirun: every check of `mgrit-check` on 1, 2, 3, 4 and 7 ranks, with the
//! rank count verified, and the converged solutions bit-for-bit equal across rank counts.
#![cfg(feature = "mpi")]

use std::process::Command;

fn run(ranks: usize, mode: &str) -> String {
    let out = Command::new("mpirun")
        .args([
            "--oversubscribe",
            "-n",
            &ranks.to_string(),
            env!("CARGO_BIN_EXE_mgrit-check"),
            mode,
        ])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun is installed (scripts/setup.sh installs OpenMPI)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{mode} on {ranks} ranks failed:\n{stdout}\n{stderr}"
    );
    // A launcher that does not match the MPI library starts separate one-rank jobs.
    assert!(
        stdout.contains(&format!("mgrit-check {mode} on {ranks} ranks\n")),
        "wrong rank count:\n{stdout}"
    );
    assert_eq!(
        stdout.matches(" passed, ").count(),
        1,
        "only rank 0 reports:\n{stdout}"
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    stdout
}

fn fingerprint(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("solution fingerprint"))
        .expect("fingerprint line")
        .to_string()
}

#[test]
fn converged_mgrit_equals_the_serial_sweep_at_every_rank_count() {
    // ranks 1–4 and 7; cf 2, 3, 4; 2–5 levels; N = 64, 100, 257; V and F cycles; F and FCF.
    let reference = fingerprint(&run(1, "sweep"));
    for p in [2, 3, 4, 7] {
        assert_eq!(fingerprint(&run(p, "sweep")), reference, "P = {p}");
    }
}

#[test]
fn one_level_is_the_serial_sweep_bit_for_bit() {
    for p in [1, 2, 3, 4, 7] {
        run(p, "bitwise");
    }
}

#[test]
fn two_level_f_relaxation_is_exact_after_n_over_cf_iterations() {
    for p in [1, 3, 4] {
        run(p, "exact");
    }
}

#[test]
fn two_level_convergence_factors_stay_below_the_dobrev_bound() {
    for p in [1, 2] {
        run(p, "bound");
    }
}

#[test]
fn reverse_time_solves_keep_points_on_their_forward_ranks() {
    let reference = fingerprint(&run(1, "reverse"));
    for p in [2, 3, 7] {
        assert_eq!(fingerprint(&run(p, "reverse")), reference, "P = {p}");
    }
}

#[test]
fn the_harness_checks_every_rank_and_rank_0_reports_each() {
    for p in 1..=4 {
        let out = run(p, "harness");
        let line = |case: &str, r: usize| {
            let head = format!("harness {case} rank {r}: ");
            out.lines()
                .find(|l| l.starts_with(&head))
                .unwrap_or_else(|| panic!("no `{head}` line on {p} ranks:\n{out}"))
                .to_string()
        };
        for r in 0..p {
            for name in ["scalar", "linear", "cubic"] {
                assert!(
                    line(&format!("{name} init(0)"), r).ends_with("0 FAIL, 0 inconclusive, pass")
                );
                assert!(
                    line(&format!("{name} own state"), r).ends_with("0 FAIL, 0 inconclusive, pass")
                );
                assert!(line(&format!("{name} zero guess"), r).contains(" 0 pass, 0 FAIL,"));
            }
            assert!(line("lossy pack", r).ends_with(", FAIL"));
            // The last rank's deviating step is caught on it and on the rank before it.
            let caught = p >= 2 && r + 2 >= p;
            assert_eq!(
                line("rank-dependent step", r).ends_with(", FAIL"),
                caught,
                "{out}"
            );
        }
    }
}
