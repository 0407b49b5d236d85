//! `layerpar bench`: every case's line has its fields with positive numbers, on 1 rank and
//! under `mpirun -n 2` (which the line says); the conv-step case prints one line per
//! configuration; a bad case, repetition count or batch is refused in one line. No timing is
//! asserted.

mod common;
use common::*;

/// The number right after `key` in `line` (up to the next space, comma or slash).
fn number_after(line: &str, key: &str) -> f64 {
    let rest = &line[line
        .find(key)
        .unwrap_or_else(|| panic!("`{key}` missing in `{line}`"))
        + key.len()..];
    let end = rest.find([' ', ',', ';']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("`{}` after `{key}` in `{line}`: {e}", &rest[..end]))
}

/// Checks the line of `case` in `out` and returns (ranks, min, median, max in ms).
fn check_line(out: &str, case: &str, unit: &str) -> (f64, [f64; 3]) {
    let l = line(out, &format!("bench {case}: "));
    let ranks = number_after(l, "ranks ");
    let key = format!("per {unit} min/median/max ");
    let spread = &l[l.find(&key).expect("the spread") + key.len()..];
    let spread: Vec<f64> = spread[..spread.find(" ms").expect("ms")]
        .split('/')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(spread.len(), 3, "{l}");
    assert!(
        spread[0] > 0.0 && spread[0] <= spread[1] && spread[1] <= spread[2],
        "{l}"
    );
    assert!(l.contains("(2 repetitions)"), "{l}");
    let total = number_after(l, "repetitions), ");
    let per_rank = number_after(l, "GFLOP/s total, ");
    assert!(total > 0.0 && per_rank > 0.0, "{l}");
    assert!(
        (total / ranks - per_rank).abs() <= 1e-3 * total + 1e-3,
        "{l}"
    );
    let dgemm = number_after(l, "(64×64)(64×64) ");
    let ratio = number_after(l, "ratio per rank/dgemm ");
    assert!(dgemm > 0.0 && ratio > 0.0, "{l}");
    assert!(
        (per_rank / dgemm - ratio).abs() <= 2e-3 * ratio + 1e-3,
        "{l}"
    );
    assert!(l.contains("width 64, 8 layers, batch 64"), "{l}");
    (ranks, [spread[0], spread[1], spread[2]])
}

const SMALL: [&str; 8] = [
    "bench",
    "--case",
    "wide-serial",
    "--repeat",
    "2",
    "--set",
    "network.layers=8",
    "--set",
];

fn small_args() -> Vec<&'static str> {
    let mut a = SMALL.to_vec();
    a.push("data.train_size=64");
    a
}

#[test]
fn bench_wide_serial_prints_its_line_on_one_rank() {
    let d = tempfile::tempdir().unwrap();
    let out = ok(&layerpar(d.path(), &small_args()));
    assert!(out.starts_with("layerpar bench: 1 MPI rank,"), "{out}");
    let (ranks, _) = check_line(&out, "wide-serial", "evaluation");
    assert_eq!(ranks, 1.0);
    let l = line(&out, "bench wide-serial: ");
    // One level: the serial sweep's work, one forward and one adjoint call per layer.
    assert!(l.contains("1 MGRIT level,"), "{l}");
    assert!(l.contains("(1.00 × the serial forward + backward)"), "{l}");
    assert!(l.contains("step calls 8 forward + 8 adjoint"), "{l}");
    assert!(!out.contains("bench overhead"), "{out}");
}

#[test]
fn bench_under_mpirun_says_two_ranks_and_the_overhead_of_both_wide_cases() {
    let d = tempfile::tempdir().unwrap();
    let out = ok(&mpirun(d.path(), 2, &small_args()));
    assert!(out.starts_with("layerpar bench: 2 MPI ranks,"), "{out}");
    let (ranks, _) = check_line(&out, "wide-serial", "evaluation");
    assert_eq!(ranks, 2.0);
    // Both wide cases in one invocation: the MGRIT line and the overhead line.
    let mut args = small_args();
    args[2] = "all";
    let out = ok(&mpirun(d.path(), 2, &args));
    let (ranks, _) = check_line(&out, "wide-mgrit3", "evaluation");
    assert_eq!(ranks, 2.0);
    let l = line(&out, "bench wide-mgrit3: ");
    assert!(l.contains("2 MGRIT levels,"), "{l}");
    let work = number_after(l, "GFLOP per evaluation (");
    assert!(
        work > 1.0,
        "MGRIT does more work than the serial sweep: {l}"
    );
    let p = line(&out, "bench peaks-adam: ");
    assert!(p.contains("ranks 2, per iteration min/median/max "), "{p}");
    assert!(number_after(p, "repetitions), ") > 0.0, "{p}");
    let o = line(&out, "bench overhead: ");
    let overhead = number_after(o, "ms = ");
    assert!(overhead > 0.0, "{o}");
    assert!(o.contains("both on 2 ranks"), "{o}");
}

#[test]
fn bench_refuses_a_bad_case_and_repeat_in_one_line() {
    let d = tempfile::tempdir().unwrap();
    let o = layerpar(d.path(), &["bench", "--case", "wide"]);
    fails_with(&o, "--case \"wide\" is not a benchmark case");
    assert!(stderr(&o).contains("wide-serial, wide-mgrit3, peaks-adam, conv-step or all"));
    fails_with(
        &layerpar(d.path(), &["bench", "--case", "all", "--repeat", "0"]),
        "--repeat must be ≥ 1",
    );
    fails_with(
        &layerpar(d.path(), &["bench", "--case", "conv-step", "--batch", "0"]),
        "--batch must be ≥ 1",
    );
    fails_with(
        &layerpar(d.path(), &["bench", "--set", "network.widht=3"]),
        "network.widht",
    );
    // Under mpirun the error is rank 0's one line.
    fails_with(
        &mpirun(d.path(), 2, &["bench", "--case", "none"]),
        "--case \"none\" is not a benchmark case",
    );
}

/// The conv-step case (a small batch): a line per configuration, each with its spread, its
/// GFLOP/s and both dgemm ratios consistent with the rates it prints; no table case runs.
#[test]
fn bench_conv_step_prints_a_line_per_configuration() {
    let d = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "--case",
        "conv-step",
        "--repeat",
        "2",
        "--batch",
        "2",
    ];
    let out = ok(&layerpar(d.path(), &args));
    assert!(out.starts_with("layerpar bench: 1 MPI rank,"), "{out}");
    assert!(!out.contains("bench wide-serial"), "{out}");
    for (c, side) in [
        (4, 28),
        (8, 28),
        (16, 28),
        (32, 28),
        (4, 32),
        (8, 32),
        (16, 32),
        (32, 32),
    ] {
        let l = line(&out, &format!("bench conv-step c={c} {side}×{side}: "));
        assert!(
            l.contains("batch 2, kernel 3×3, tanh, per step min/median/max "),
            "{l}"
        );
        let key = "min/median/max ";
        let spread = &l[l.find(key).unwrap() + key.len()..];
        let spread: Vec<f64> = spread[..spread.find(" ms").unwrap()]
            .split('/')
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(
            spread.len() == 3
                && spread[0] > 0.0
                && spread[0] <= spread[1]
                && spread[1] <= spread[2],
            "{l}"
        );
        assert!(l.contains("(2 repetitions)"), "{l}");
        let rate = number_after(l, "repetitions), ");
        let p = side * side;
        let dgemm = number_after(l, &format!("dgemm ({p}×{k})({k}×{c}) ", k = 9 * c));
        let ratio = number_after(l, &format!("{dgemm:.3} GFLOP/s, ratio "));
        let square = number_after(l, "dgemm (256×256)(256×256) ");
        let ratio_square = number_after(l, &format!("{square:.3} GFLOP/s, ratio "));
        assert!(rate > 0.0 && dgemm > 0.0 && square > 0.0, "{l}");
        assert!((rate / dgemm - ratio).abs() <= 2e-3 * ratio + 1e-3, "{l}");
        assert!(
            (rate / square - ratio_square).abs() <= 2e-3 * ratio_square + 1e-3,
            "{l}"
        );
        let cpu_ms = number_after(l, "thread CPU time per step median ");
        let cpu_rate = number_after(l, &format!("{cpu_ms:.3} ms, "));
        assert!(cpu_ms > 0.0 && cpu_rate > 0.0, "{l}");
        // Four convolutions of 2 · c · 9c · H · W · B flops.
        let want = 4.0 * 2.0 * (c * 9 * c * p * 2) as f64 / 1e9;
        assert!(
            l.contains(&format!(
                "{want:.4} GFLOP per step (forward + adjoint with gradient: 4 convolutions)"
            )),
            "{l}: {want:.4}"
        );
    }
}
