//! The layer-parallel gradient under mpirun (via the `layerpar-check` binary): bit for bit
//! the serial one with one level on 1–4 ranks, within 1e-9 of it with converged MGRIT on 2–4
//! levels, and correct against finite differences when computed in parallel.

mod common;
use common::{assert_same_bits_on_2_to_4_ranks, layerpar_check as check};

#[test]
fn one_level_gradient_is_bitwise_the_serial_one_on_every_rank_count() {
    for act in ["tanh", "relu", "smoothrelu"] {
        assert_same_bits_on_2_to_4_ranks(&["--levels", "1", "--activation", act, "--layers", "13"]);
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

/// Sine regression (copy opening, average closing, MSE against real targets) and a learnable
/// time scale: bitwise the serial gradient with one level on 1–4 ranks (the scale's gradient
/// is reduced in layer order), within 1e-9 with converged MGRIT, and passing finite
/// differences (the scale's entry included), per-layer and spline.
#[test]
fn regression_and_time_scale_gradients_match_the_serial_ones() {
    assert_same_bits_on_2_to_4_ranks(&[
        "--levels",
        "1",
        "--sine",
        "--time-scale",
        "--layers",
        "13",
    ]);
    assert_same_bits_on_2_to_4_ranks(&["--levels", "1", "--time-scale", "--layers", "13"]);
    for p in [1, 2, 3, 4] {
        check(
            p,
            &[
                "--levels",
                "3",
                "--sine",
                "--time-scale",
                "--layers",
                "29",
                "--tol",
                "1e-12",
            ],
        );
        check(
            p,
            &[
                "--levels",
                "2",
                "--fd",
                "--sine",
                "--time-scale",
                "--width",
                "5",
            ],
        );
        check(
            p,
            &["--levels", "2", "--fd", "--time-scale", "--spline", "6"],
        );
    }
}

/// Convolutional ODE-nets (conv opening, hidden convolutions, flatten and global-average
/// read-outs): bitwise the serial gradient with one level on 1–4 ranks (13 layers: uneven
/// splits), within 1e-9 with converged MGRIT (coarse levels rediscretized) on 1–4 ranks,
/// finite differences of the parallel objective, and spline controls.
#[test]
fn convolutional_gradients_match_the_serial_ones() {
    for conv in ["--conv", "--conv-gap"] {
        assert_same_bits_on_2_to_4_ranks(&["--levels", "1", conv, "--layers", "13"]);
        for p in [1, 2, 3, 4] {
            let mut args = vec!["--levels", "3", conv, "--layers", "13", "--tol", "1e-12"];
            if p == 2 {
                args.push("--fd");
            }
            check(p, &args);
        }
    }
    for p in [1, 3] {
        check(
            p,
            &[
                "--levels", "2", "--conv", "--spline", "5", "--layers", "13", "--fd",
            ],
        );
    }
}

/// Networks of three ODE blocks (average and max pooling, 1×1 channel changes, both
/// read-outs; 7, 5 and 6 layers: uneven splits), each block its own layer-parallel solve: J
/// and ∇J bitwise those of odenet's serial chain with one level on 1–4 ranks, within 1e-9
/// with converged 3-level MGRIT, the pipelined evaluation bitwise the serial sweep, and finite
/// differences of the parallel J in every block.
#[test]
fn chains_of_ode_blocks_match_the_serial_chain() {
    for chain in ["--chain", "--chain-gap"] {
        assert_same_bits_on_2_to_4_ranks(&["--levels", "1", chain]);
        for p in [1, 2, 3, 4] {
            check(p, &["--levels", "3", chain, "--tol", "1e-12"]);
        }
        check(3, &["--levels", "1", chain, "--fd"]);
    }
    check(
        2,
        &[
            "--levels",
            "1",
            "--chain",
            "--fd",
            "--activation",
            "smoothrelu",
        ],
    );
}
