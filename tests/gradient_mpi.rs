//! The layer-parallel gradient under mpirun (via the `layerpar-check` binary): bit for bit
//! the serial one with one level on 1–4 ranks, within 1e-9 of it with converged MGRIT on 2–4
//! levels, and correct against finite differences when computed in parallel.

mod common;
use common::{line, mpirun_check};

fn check(ranks: usize, args: &[&str]) -> String {
    mpirun_check(
        env!("CARGO_BIN_EXE_layerpar-check"),
        ranks,
        args,
        "layerpar-check",
    )
}

#[test]
fn one_level_gradient_is_bitwise_the_serial_one_on_every_rank_count() {
    for act in ["tanh", "relu", "smoothrelu"] {
        let args = ["--levels", "1", "--activation", act, "--layers", "13"];
        let first = check(1, &args);
        for p in [2, 3, 4] {
            let out = check(p, &args);
            assert_eq!(
                line(&out, "objective bits"),
                line(&first, "objective bits"),
                "P = {p}"
            );
            assert_eq!(
                line(&out, "gradient fingerprint"),
                line(&first, "gradient fingerprint"),
                "P = {p}"
            );
        }
    }
}

#[test]
fn converged_mgrit_gradient_matches_the_serial_one() {
    for p in [1, 2, 3, 4] {
        for levels in ["2", "3", "4"] {
            for cf in ["2", "3"] {
                check(
                    p,
                    &[
                        "--levels", levels, "--cf", cf, "--tol", "1e-12", "--layers", "29",
                    ],
                );
            }
        }
    }
}

#[test]
fn parallel_gradient_passes_finite_differences() {
    for (p, levels) in [(1, "1"), (2, "1"), (3, "3"), (4, "2")] {
        check(
            p,
            &[
                "--levels",
                levels,
                "--fd",
                "--width",
                "5",
                "--activation",
                "tanh",
            ],
        );
    }
}
