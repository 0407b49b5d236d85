//! Data × layer parallelism end to end: `parallel.data_groups = D` on P = D·L ranks gives the
//! same bits as one rank for every factorization (full-batch L-BFGS, mini-batch Adam, one-shot
//! MGRIT, uneven splits, splines with a learnable time scale, nested iteration), checkpoints written on one grid
//! resume on another, and bad values are refused.

mod common;
use common::*;
use std::path::Path;

const SMALL: &[&str] = &[
    "--set",
    "data.train_size=400",
    "--set",
    "data.val_size=50",
    "--set",
    "network.layers=8",
    "--set",
    "output.progress=lines",
    "--set",
    "output.print_every=1000",
];

const ADAM: &[&str] = &[
    "--set",
    "optimizer.kind=adam",
    "--set",
    "optimizer.learning_rate=0.01",
    "--set",
    "optimizer.batch_size=64",
    "--set",
    "optimizer.max_iter=3",
];

const ONESHOT: &[&str] = &[
    "--set",
    "mgrit.max_levels=2",
    "--set",
    "mgrit.max_iter=2",
    "--set",
    "mgrit.adjoint_max_iter=2",
];

/// Trains on `ranks` ranks with `data_groups` rows; checks the rank count and the grid that
/// ran; returns (the fingerprint, the history without wall time).
fn run(
    d: &Path,
    name: &str,
    ranks: usize,
    groups: usize,
    args: &[&str],
) -> (String, Vec<Vec<String>>) {
    let hist = format!("{name}-{ranks}-{groups}.csv");
    let ckpt = format!("output.checkpoint_dir={name}-{ranks}-{groups}");
    let dg = format!("parallel.data_groups={groups}");
    let all = [
        &["train", "--history", &hist, "--set", &ckpt, "--set", &dg][..],
        SMALL,
        args,
    ]
    .concat();
    let out = ok(&mpirun(d, ranks, &all));
    let s = if ranks == 1 { "" } else { "s" };
    assert!(
        out.contains(&format!("training on {ranks} MPI rank{s}\n")),
        "rank count wrong for P = {ranks}:\n{out}"
    );
    assert!(
        out.contains(&format!("grid: {groups} × {} (", ranks / groups)),
        "grid wrong for P = {ranks}, D = {groups}:\n{out}"
    );
    let fp = out
        .lines()
        .find(|l| l.starts_with("parameters:"))
        .and_then(|l| l.split("fingerprint ").nth(1))
        .unwrap_or_else(|| panic!("no fingerprint:\n{out}"))
        .to_string();
    (fp, rows_without_time(&d.join(hist)))
}

/// (1, 1), (1, 4), (2, 2) and (4, 1) give the same fingerprint and history.
fn same_bits_on_every_grid(name: &str, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [args, &["--set", "parallel.chunks=4"]].concat();
    let reference = run(d, name, 1, 1, &args);
    assert!(reference.1.len() >= 4, "{:?}", reference.1);
    for (p, groups) in [(4, 1), (4, 2), (4, 4)] {
        let got = run(d, name, p, groups, &args);
        assert_eq!(
            got.0,
            reference.0,
            "{name}: fingerprint on (D, L) = ({groups}, {})",
            p / groups
        );
        assert_eq!(
            got.1,
            reference.1,
            "{name}: history on (D, L) = ({groups}, {})",
            p / groups
        );
    }
}

/// mgrit.keep_derivatives changes no bit on a grid either: the sweep keeps σ'(Z_n) of the row's
/// batch, one-shot MGRIT forms it before the adjoint, and each chunk's gradient takes its own
/// columns of it.
#[test]
fn keeping_the_derivatives_changes_no_bit_on_a_grid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, solver) in [("sweep", &[][..]), ("oneshot", ONESHOT)] {
        let args = [
            &[
                "--set",
                "parallel.chunks=4",
                "--set",
                "optimizer.max_iter=5",
            ][..],
            solver,
        ]
        .concat();
        let kept = run(d, &format!("{name}-kept"), 4, 2, &args);
        let off = [&args[..], &["--set", "mgrit.keep_derivatives=false"]].concat();
        let formed = run(d, &format!("{name}-formed"), 4, 2, &off);
        assert_eq!(
            kept, formed,
            "{name}: (D, L) = (2, 2) with and without kept derivatives"
        );
    }
}

#[test]
fn full_batch_lbfgs_gives_the_same_bits_on_every_grid() {
    same_bits_on_every_grid("lbfgs", &["--set", "optimizer.max_iter=8"]);
}

#[test]
fn minibatch_adam_gives_the_same_bits_on_every_grid() {
    same_bits_on_every_grid("adam", ADAM);
}

#[test]
fn one_shot_mgrit_gives_the_same_bits_on_every_grid() {
    // The MGRIT residuals (fwd_res, adj_res) are in the history too.
    same_bits_on_every_grid("oneshot-adam", &[ADAM, ONESHOT].concat());
    same_bits_on_every_grid(
        "oneshot-lbfgs",
        &[&["--set", "optimizer.max_iter=5"][..], ONESHOT].concat(),
    );
}

/// Nested iteration (4 then 8 layers, the second level started from the first's trained
/// controls) on a data × layer grid: the same bits and history on every grid as on one rank.
#[test]
fn nested_iteration_gives_the_same_bits_on_every_grid() {
    same_bits_on_every_grid(
        "nested",
        &[
            "--set",
            "nested.levels=2",
            "--set",
            "nested.refine=2",
            "--set",
            "optimizer.max_iter=4",
        ],
    );
    same_bits_on_every_grid(
        "nested-adam",
        &[
            ADAM,
            &["--set", "nested.levels=2", "--set", "nested.refine=2"],
        ]
        .concat(),
    );
}

#[test]
fn uneven_splits_and_splines_with_a_time_scale_give_the_same_bits() {
    // 3 chunks of 401 training, 50 validation and 64/17-example batches; 7 layers on 2 ranks.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        &[
            "--set",
            "parallel.chunks=3",
            "--set",
            "data.train_size=401",
            "--set",
            "network.layers=7",
            "--set",
            "controls.kind=spline",
            "--set",
            "controls.count=5",
            "--set",
            "network.learn_time_scale=true",
        ][..],
        ADAM,
        ONESHOT,
    ]
    .concat();
    let reference = run(d, "uneven", 1, 1, &args);
    for (p, groups) in [(3, 3), (6, 3), (2, 1)] {
        let got = run(d, "uneven", p, groups, &args);
        assert_eq!(got, reference, "(D, L) = ({groups}, {})", p / groups);
    }
}

#[test]
fn chunk_counts_that_are_not_powers_of_two_give_the_same_bits_on_uneven_row_splits() {
    // The chunk tree's cross-row messages start at different levels for different splits:
    // 5 chunks on 2 rows (3 + 2), 3 rows (2 + 2 + 1) and 5 rows; 3 chunks on 2 rows (2 + 1).
    for (chunks, grids) in [
        (5, &[(4, 2), (3, 3), (5, 5)][..]),
        (3, &[(4, 2), (2, 2)][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let k = format!("parallel.chunks={chunks}");
        let args = [&["--set", &k[..]][..], ADAM, ONESHOT].concat();
        let name = format!("k{chunks}");
        let reference = run(d, &name, 1, 1, &args);
        for &(p, groups) in grids {
            let got = run(d, &name, p, groups, &args);
            assert_eq!(
                got,
                reference,
                "K = {chunks}, (D, L) = ({groups}, {})",
                p / groups
            );
        }
    }
}

/// 10 iterations on (2, 2), resumed to 20 on (1, 4) and on (4, 1), equal 20 straight on one rank.
#[test]
fn a_checkpoint_of_one_grid_resumes_on_others_bit_for_bit() {
    for (name, extra) in [("lbfgs", &[][..]), ("adam", ADAM)] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let common = [
            extra,
            &[
                "--set",
                "parallel.chunks=4",
                "--set",
                "optimizer.max_iter=20",
            ],
        ]
        .concat();
        let straight = run(d, name, 1, 1, &common);
        let first = [&common[..], &["--set", "optimizer.max_iter=10"]].concat();
        run(d, name, 4, 2, &first);
        for (p, groups) in [(4, 1), (4, 4)] {
            let hist = format!("resumed-{p}-{groups}.csv");
            std::fs::copy(d.join(format!("{name}-4-2.csv")), d.join(&hist)).unwrap();
            let ckpt = format!("output.checkpoint_dir=resumed-{p}-{groups}");
            let dg = format!("parallel.data_groups={groups}");
            let ck = format!("{name}-4-2/final.h5");
            let out = ok(&mpirun(
                d,
                p,
                &[
                    "train",
                    "--resume",
                    &ck,
                    "--history",
                    &hist,
                    "--set",
                    &ckpt,
                    "--set",
                    &dg,
                    "--set",
                    "optimizer.max_iter=20",
                ],
            ));
            assert!(
                out.contains("resuming") && out.contains("at iteration 10"),
                "{out}"
            );
            assert!(
                out.contains(&format!("grid: {groups} × {} (", p / groups)),
                "{out}"
            );
            let fp = out.lines().find(|l| l.starts_with("parameters:")).unwrap();
            assert!(
                fp.ends_with(&straight.0),
                "{name} resumed on ({groups}, {}): {fp} vs {}",
                p / groups,
                straight.0
            );
            assert_eq!(
                rows_without_time(&d.join(&hist)),
                straight.1,
                "{name} on ({groups}, {})",
                p / groups
            );
        }
    }
}

#[test]
fn bad_grids_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let train = |ranks: usize, sets: &[&str]| {
        let mut args = vec!["train", "--set", "optimizer.max_iter=1"];
        for s in sets {
            args.extend(["--set", s]);
        }
        mpirun(d, ranks, &args)
    };
    fails_with(
        &train(4, &["parallel.data_groups=3", "parallel.chunks=3"]),
        "`parallel.data_groups` = 3 does not divide the 4 MPI ranks",
    );
    fails_with(
        &train(2, &["parallel.data_groups=2"]),
        "`parallel.chunks` must be ≥ parallel.data_groups = 2",
    );
    fails_with(
        &train(1, &["parallel.data_groups=0"]),
        "`parallel.data_groups` must be ≥ 1",
    );
    fails_with(
        &train(
            2,
            &[
                "parallel.data_groups=2",
                "parallel.chunks=64",
                "data.val_size=50",
            ],
        ),
        "`parallel.chunks` = 64 exceeds the 50 examples of the validation set",
    );
    fails_with(
        &train(
            2,
            &[
                "parallel.chunks=8",
                "optimizer.kind=adam",
                "optimizer.batch_size=998",
                "data.train_size=1000",
            ],
        ),
        "`parallel.chunks` = 8 exceeds the 2 examples of the last mini-batch",
    );
    fails_with(
        &train(
            4,
            &[
                "parallel.data_groups=2",
                "parallel.chunks=2",
                "network.layers=1",
            ],
        ),
        "2 ranks per data group for 1 hidden layers",
    );
    fails_with(&train(1, &["parallel.chunks=x"]), "parallel.chunks");
    fails_with(
        &layerpar(
            d,
            &[
                "scaling",
                "--set",
                "parallel.data_groups=2",
                "--set",
                "parallel.chunks=2",
            ],
        ),
        "`parallel.data_groups` = 2: `layerpar scaling` models layer parallelism",
    );
}
