//! Convolutional ODE-nets on real images, end to end under mpirun: scikit-learn's 8×8 digits
//! (from `data/real/digits8`, which `scripts/setup.sh` writes through the IDX loader's
//! format) trained layer-parallel with per-layer and with spline controls, nested iteration,
//! and a checkpoint read back on another rank count.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// The real 8×8 digits' directory, with a clear failure when setup has not written it.
fn digits8() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/real/digits8");
    assert!(
        dir.join("train-images-idx3-ubyte").is_file(),
        "the real digits are missing from {}: run `bash scripts/setup.sh`",
        dir.display()
    );
    dir
}

/// A run file: the 8×8 digits as IDX files, a convolutional ODE-net of 4 channels, 3×3
/// kernels, `layers` layers, T = 1, tanh, flatten read-out, L-BFGS.
fn config(dir: &Path, layers: usize, max_iter: usize) -> PathBuf {
    let data = digits8();
    let f = |name: &str| data.join(name).display().to_string();
    let text = format!(
        "seed = 1\n\
         [data]\nkind = \"idx\"\ntrain_images = \"{}\"\ntrain_labels = \"{}\"\n\
         test_images = \"{}\"\ntest_labels = \"{}\"\n\
         [network]\nkind = \"conv\"\nchannels = 4\nkernel = 3\nlayers = {layers}\n\
         final_time = 1.0\nactivation = \"tanh\"\nreadout = \"flatten\"\n\
         [optimizer]\nkind = \"lbfgs\"\nmax_iter = {max_iter}\ngamma_class = 1e-2\n\
         [output]\nprogress = \"lines\"\nprint_every = 10\n",
        f("train-images-idx3-ubyte"),
        f("train-labels-idx1-ubyte"),
        f("test-images-idx3-ubyte"),
        f("test-labels-idx1-ubyte"),
    );
    let path = dir.join("digits.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The validation accuracy of the `final:` line.
fn final_val(out: &str) -> f64 {
    let l = line(out, "final:");
    l.split("val ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no validation accuracy in {l:?}"))
}

fn on_ranks(out: &str, p: usize) {
    let s = if p == 1 { "" } else { "s" };
    assert!(
        out.contains(&format!("training on {p} MPI rank{s}\n")),
        "rank count wrong for P = {p}:\n{out}"
    );
}

/// The fingerprint of the `parameters:` line.
fn fingerprint_of(out: &str) -> String {
    line(out, "parameters:")
        .split("fingerprint ")
        .nth(1)
        .unwrap()
        .to_string()
}

/// Nested level 1 of the history `path` starts from level 0's trained controls: its first
/// objective is below half of level 0's first.
fn assert_level_one_starts_below_half(path: &Path) {
    let (header, rows) = history(path);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (lv, obj) = (col("level"), col("objective"));
    let first = |level: &str| -> f64 {
        rows.iter()
            .find(|r| r[lv] == level)
            .map(|r| r[obj].parse().unwrap())
            .unwrap()
    };
    assert!(
        first("1") < 0.5 * first("0"),
        "level 1 starts at J = {} although level 0 started at {}",
        first("1"),
        first("0")
    );
}

/// A conv ODE-net on 2 ranks (one MGRIT level: the exact sweep, pipelined) reaches 97 % on
/// the held-out digits; the checkpoint it writes evaluates to the same accuracy on 1 rank.
#[test]
fn conv_net_learns_the_8x8_digits_on_two_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config(d, 8, 80);
    let cfg = cfg.to_str().unwrap();
    let out = ok(&mpirun(d, 2, &["train", "--config", cfg]));
    on_ranks(&out, 2);
    assert!(
        out.contains("network: convolutional, 1 → 4 channels of 8×8"),
        "{out}"
    );
    let val = final_val(&out);
    assert!(val >= 0.97, "validation accuracy {val} < 0.97:\n{out}");
    let eval = ok(&layerpar(d, &["eval", "--checkpoint", "runs/final.h5"]));
    assert!(
        line(&eval, "validation:").contains(&format!("accuracy {val:.4}")),
        "eval of the checkpoint on 1 rank does not give the trained accuracy {val}:\n{eval}"
    );
}

/// SpliNet: the conv net's kernels as B-splines in time (4 coefficient sets for 8 layers),
/// trained with 2-level MGRIT on 2 ranks, reaches 97 % too.
#[test]
fn spline_conv_net_learns_the_8x8_digits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config(d, 8, 80);
    let cfg = cfg.to_str().unwrap();
    let out = ok(&mpirun(
        d,
        2,
        &[
            "train",
            "--config",
            cfg,
            "--set",
            "controls.kind=spline",
            "--set",
            "controls.degree=2",
            "--set",
            "controls.count=4",
            "--set",
            "mgrit.max_levels=2",
            "--set",
            "mgrit.cfactor=2",
        ],
    ));
    on_ranks(&out, 2);
    assert!(out.contains("B-spline coefficient sets"), "{out}");
    let val = final_val(&out);
    assert!(val >= 0.97, "validation accuracy {val} < 0.97:\n{out}");
}

/// Nested iteration deepens a conv net (4 → 8 layers): the second level starts from the
/// first level's trained controls, so its first objective is far below a fresh start's; the
/// run gives the same bits on 1 and 3 ranks.
#[test]
fn nested_iteration_deepens_a_conv_net_on_any_rank_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config(d, 8, 15);
    let cfg = cfg.to_str().unwrap();
    let args = [
        "train",
        "--config",
        cfg,
        "--set",
        "nested.levels=2",
        "--set",
        "output.print_every=1",
    ];
    let one = ok(&mpirun(
        d,
        1,
        &[&args[..], &["--history", "h1.csv"]].concat(),
    ));
    let three = ok(&mpirun(
        d,
        3,
        &[&args[..], &["--history", "h3.csv"]].concat(),
    ));
    on_ranks(&three, 3);
    assert_eq!(
        rows_without_time(&d.join("h1.csv")),
        rows_without_time(&d.join("h3.csv"))
    );
    assert_eq!(fingerprint_of(&one), fingerprint_of(&three));
    assert_level_one_starts_below_half(&d.join("h1.csv"));
}

/// Bad convolutional settings end with one line naming the problem: a conv net without
/// image data, an even kernel, no channels, an unknown read-out, a dense checkpoint as the
/// start of a conv run.
#[test]
fn convolutional_configuration_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fails_with(
        &layerpar(d, &["train", "--set", "network.kind=conv"]),
        "`network.kind` = \"conv\" needs image data",
    );
    let cfg = config(d, 4, 1);
    let cfg = cfg.to_str().unwrap();
    for (set, expect) in [
        (
            "network.kernel=4",
            "`network.kernel` must be an odd kernel size",
        ),
        ("network.channels=0", "`network.channels` must be ≥ 1"),
        ("network.readout=max", "`network.readout` must be one of"),
    ] {
        fails_with(
            &layerpar(d, &["train", "--config", cfg, "--set", set]),
            expect,
        );
    }
    ok(&layerpar(
        d,
        &[
            "train",
            "--config",
            cfg,
            "--set",
            "network.kind=dense",
            "--set",
            "output.checkpoint_dir=dense",
        ],
    ));
    fails_with(
        &layerpar(
            d,
            &["train", "--config", cfg, "--init-from", "dense/final.h5"],
        ),
        "a dense network (the run has a convolutional network of 4 channels",
    );
}

/// The 1-D case (a spectrum of bands, as the Indian Pines experiment's): CSV features
/// declared as 1 × 16 × 1 images train a conv net of 3 × 1 kernels; two classes of signals
/// (a bump at band 4 or at band 11, in noise) are told apart on 1 and 2 ranks, with the same
/// bits.
#[test]
fn one_dimensional_conv_net_separates_spectra() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bands = 16;
    let mut csv = (0..bands)
        .map(|b| format!("band{b}"))
        .collect::<Vec<_>>()
        .join(",");
    csv.push_str(",label,split\n");
    let mut s = 12345u64;
    let mut noise = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.6
    };
    for j in 0..240 {
        let label = j % 2;
        let centre = if label == 0 { 4.0 } else { 11.0 };
        for b in 0..bands {
            let x = (-(b as f64 - centre).powi(2) / 4.0).exp() + noise();
            csv.push_str(&format!("{x:.6},"));
        }
        let split = if j < 200 { "train" } else { "val" };
        csv.push_str(&format!("{label},{split}\n"));
    }
    std::fs::write(d.join("spectra.csv"), csv).unwrap();
    let args = [
        "train",
        "--set",
        "data.kind=csv",
        "--set",
        "data.path=spectra.csv",
        "--set",
        "data.image_shape=[1, 16, 1]",
        "--set",
        "network.kind=conv",
        "--set",
        "network.channels=2",
        "--set",
        "network.layers=5",
        "--set",
        "network.activation=tanh",
        "--set",
        "optimizer.max_iter=30",
        "--set",
        "output.progress=lines",
    ];
    let one = ok(&mpirun(d, 1, &args));
    assert!(
        one.contains("network: convolutional, 1 → 2 channels of 16×1, 3×1 kernels"),
        "{one}"
    );
    let val = final_val(&one);
    assert!(val >= 0.95, "validation accuracy {val} < 0.95:\n{one}");
    let two = ok(&mpirun(d, 2, &args));
    on_ranks(&two, 2);
    assert_eq!(fingerprint_of(&one), fingerprint_of(&two));
}

/// [`config`] with 4 layers, followed by a second ODE block: 2×2 average pooling to 4×4, a
/// 1×1 change to 8 channels, 4 layers.
fn chain_config(dir: &Path, max_iter: usize) -> PathBuf {
    let path = config(dir, 4, max_iter);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[[network.blocks]]\nlayers = 4\nchannels = 8\npool = \"average\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// A network of two ODE blocks (4 channels of 8×8; average pooling and a 1×1 change to 8
/// channels of 4×4), each its own layer-parallel solve over the ranks, reaches 97 % on 2
/// ranks; the run gives the same bits on 1 rank, a checkpoint written halfway resumes on 3
/// ranks bit for bit, and the final checkpoint evaluates to the trained accuracy.
#[test]
fn a_chain_of_two_conv_blocks_learns_the_8x8_digits_on_any_rank_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = chain_config(d, 80);
    let cfg = cfg.to_str().unwrap();
    let two = ok(&mpirun(
        d,
        2,
        &[
            "train",
            "--config",
            cfg,
            "--set",
            "output.checkpoint_every=40",
        ],
    ));
    on_ranks(&two, 2);
    assert!(
        two.contains("ODE block 2 of 2: 4 → 8 channels of 4×4 after 2×2 average pooling of 8×8"),
        "{two}"
    );
    let val = final_val(&two);
    assert!(val >= 0.97, "validation accuracy {val} < 0.97:\n{two}");
    let fp = fingerprint_of(&two);
    let one = ok(&layerpar(
        d,
        &[
            "train",
            "--config",
            cfg,
            "--set",
            "output.checkpoint_dir=one",
        ],
    ));
    assert_eq!(fingerprint_of(&one), fp, "1 rank:\n{one}");
    let resumed = ok(&mpirun(
        d,
        3,
        &[
            "train",
            "--resume",
            "runs/ckpt_000040.h5",
            "--set",
            "output.checkpoint_dir=resumed",
        ],
    ));
    on_ranks(&resumed, 3);
    assert_eq!(
        fingerprint_of(&resumed),
        fp,
        "resumed on 3 ranks:\n{resumed}"
    );
    let eval = ok(&layerpar(d, &["eval", "--checkpoint", "runs/final.h5"]));
    assert!(
        eval.contains("4 + 4 hidden layers (2 ODE blocks)"),
        "{eval}"
    );
    assert!(
        line(&eval, "validation:").contains(&format!("accuracy {val:.4}")),
        "eval of the chain's checkpoint does not give the trained accuracy {val}:\n{eval}"
    );
}

/// Bad block settings end with one line naming the problem.
#[test]
fn block_configuration_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = chain_config(d, 1);
    let cfg = cfg.to_str().unwrap();
    for (set, expect) in [
        (
            "network.kind=dense",
            "`network.blocks` lists further ODE blocks, which only convolutional networks have",
        ),
        (
            "nested.levels=4",
            "`network.layers` = 4 must be divisible by nested.refine^(nested.levels − 1) = 8",
        ),
        (
            "network.learn_time_scale=true",
            "needs a network of one ODE block",
        ),
        (
            "parallel.data_groups=2",
            "a network of several ODE blocks (network.blocks) runs on one data group",
        ),
    ] {
        fails_with(
            &layerpar(d, &["train", "--config", cfg, "--set", set]),
            expect,
        );
    }
    let text = std::fs::read_to_string(cfg).unwrap();
    for (block, expect) in [
        ("layers = 0\n", "`network.blocks[1].layers` must be ≥ 1"),
        (
            "layers = 2\npool = \"min\"\n",
            "`network.blocks[1].pool` must be \"average\", \"max\" or \"none\", got \"min\"",
        ),
        (
            "layers = 2\nkernel = 5\n",
            "unknown config key `network.blocks[1].kernel`",
        ),
        (
            "layers = 3\n",
            "`network.blocks[1].layers` = 3 must be divisible by nested.refine^(nested.levels − 1) = 2",
        ),
    ] {
        let bad = text.replace(
            "[[network.blocks]]\nlayers = 4\nchannels = 8\npool = \"average\"\n",
            &format!("[[network.blocks]]\n{block}"),
        );
        let path = d.join("bad.toml");
        std::fs::write(&path, bad).unwrap();
        fails_with(
            &layerpar(
                d,
                &[
                    "train",
                    "--config",
                    path.to_str().unwrap(),
                    "--set",
                    "nested.levels=2",
                ],
            ),
            expect,
        );
    }
    // Three poolings of 8×8 images leave 1×1; a fourth leaves nothing.
    let mut deep = text.clone();
    for _ in 0..3 {
        deep.push_str("[[network.blocks]]\nlayers = 1\n");
    }
    let path = d.join("deep.toml");
    std::fs::write(&path, deep).unwrap();
    fails_with(
        &layerpar(d, &["train", "--config", path.to_str().unwrap()]),
        "`network.blocks[4].pool` = \"average\" pools the 1×1 images of the block before to nothing",
    );
}

/// [`chain_config`] with 6 + 6 layers: a second block of 8 channels of 4×4.
fn nested_chain_config(dir: &Path, max_iter: usize) -> PathBuf {
    let path = chain_config(dir, max_iter);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("layers = 4\n", "layers = 6\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// Nested iteration deepens every block of a chain (3 + 3 → 6 + 6 layers): the second level
/// starts from the first level's trained controls, block by block, so its first objective is
/// far below the first level's; the run gives the same bits on 1 and 3 ranks.
#[test]
fn nested_iteration_deepens_every_block_of_a_chain_on_any_rank_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = nested_chain_config(d, 15);
    let cfg = cfg.to_str().unwrap();
    let args = [
        "train",
        "--config",
        cfg,
        "--set",
        "nested.levels=2",
        "--set",
        "nested.interp=linear",
        "--set",
        "output.print_every=1",
    ];
    let one = ok(&mpirun(
        d,
        1,
        &[&args[..], &["--history", "h1.csv"]].concat(),
    ));
    assert!(
        one.contains("nested level 0 of 2: 3 + 3 hidden layers"),
        "{one}"
    );
    assert!(
        one.contains("nested level 1 of 2: 6 + 6 hidden layers"),
        "{one}"
    );
    let three = ok(&mpirun(
        d,
        3,
        &[
            &args[..],
            &[
                "--history",
                "h3.csv",
                "--set",
                "output.checkpoint_dir=three",
            ],
        ]
        .concat(),
    ));
    on_ranks(&three, 3);
    assert_eq!(fingerprint_of(&one), fingerprint_of(&three));
    assert_eq!(
        rows_without_time(&d.join("h1.csv")),
        rows_without_time(&d.join("h3.csv"))
    );
    assert_level_one_starts_below_half(&d.join("h1.csv"));
}

/// --init-from starts a chain from a chain checkpoint of other depths (4 + 4 layers into
/// 8 + 8 on 2 ranks, starting far below a fresh start's objective); a checkpoint of another
/// block count is refused in one line naming both counts.
#[test]
fn init_from_starts_a_chain_from_a_chain_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // (config() writes digits.toml: the chain's file is kept under its own name.)
    let chain = d.join("chain.toml");
    std::fs::rename(chain_config(d, 15), &chain).unwrap();
    let cfg = chain.to_str().unwrap();
    ok(&layerpar(
        d,
        &["train", "--config", cfg, "--history", "coarse.csv"],
    ));
    let text = std::fs::read_to_string(cfg)
        .unwrap()
        .replace("layers = 4\n", "layers = 8\n");
    let deep_cfg = d.join("deep.toml");
    std::fs::write(&deep_cfg, text).unwrap();
    let deep = [
        "train",
        "--config",
        deep_cfg.to_str().unwrap(),
        "--set",
        "optimizer.max_iter=1",
        "--set",
        "output.print_every=1",
    ];
    let fresh = ok(&mpirun(
        d,
        2,
        &[
            &deep[..],
            &[
                "--history",
                "fresh.csv",
                "--set",
                "output.checkpoint_dir=deep",
            ],
        ]
        .concat(),
    ));
    assert!(
        fresh.contains("8 hidden layers (ODE block 1 of 2)"),
        "{fresh}"
    );
    let init = ok(&mpirun(
        d,
        2,
        &[
            &deep[..],
            &[
                "--history",
                "init.csv",
                "--set",
                "output.checkpoint_dir=init",
                "--init-from",
                "runs/final.h5",
            ],
        ]
        .concat(),
    ));
    let first_objective = |file: &str| -> f64 {
        let (header, rows) = history(&d.join(file));
        let obj = header.iter().position(|h| h == "objective").unwrap();
        rows[0][obj].parse().unwrap()
    };
    let (coarse, fresh_j, init_j) = (
        first_objective("coarse.csv"),
        first_objective("fresh.csv"),
        first_objective("init.csv"),
    );
    assert!(
        init_j < 0.5 * fresh_j,
        "--init-from starts at J = {init_j}, a fresh start at {fresh_j} (the coarse run started at {coarse}):\n{init}"
    );
    // A one-block checkpoint into the chain, and the chain's into a one-block run.
    let single = config(d, 4, 1);
    let single = single.to_str().unwrap();
    ok(&layerpar(
        d,
        &[
            "train",
            "--config",
            single,
            "--set",
            "output.checkpoint_dir=single",
            "--history",
            "single.csv",
        ],
    ));
    fails_with(
        &layerpar(
            d,
            &[
                "train",
                "--config",
                cfg,
                "--init-from",
                "single/final.h5",
                "--set",
                "output.checkpoint_dir=x",
            ],
        ),
        "the checkpoint's network has 1 ODE block, this run's 2 (network.blocks)",
    );
    fails_with(
        &layerpar(
            d,
            &[
                "train",
                "--config",
                single,
                "--init-from",
                "runs/final.h5",
                "--set",
                "output.checkpoint_dir=y",
            ],
        ),
        "the checkpoint's network has 2 ODE blocks, this run's 1 (network.blocks)",
    );
}
