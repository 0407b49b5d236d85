//! Tests of the checkpoint format: round trips, damaged files refused in one line, failed
//! writes that keep the earlier file, chains of ODE blocks.

/// These tests create and read HDF5 files; they run one at a time, since concurrent
/// libhdf5 use in one process made a read of a just-closed file fail now and then
/// ("unable to lock file, errno = 11").
fn hdf5_serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
use super::*;
use crate::format::USERBLOCK;
use crate::seal::seal;
use crate::write::{write_with, Stage};
use hdf5::types::VarLenUnicode;
use odenet::{ConvShape, Pool, Readout, Transition};
use std::path::{Path, PathBuf};
use std::str::FromStr;

fn sample() -> Checkpoint {
    let shape = NetShape {
        input: 2,
        width: 3,
        classes: 4,
        layers: 5,
        opening_params: true,
        hidden_sets: 5,
        classifier_params: true,
        time_scale: false,
        conv: None,
    };
    let len = shape.layout().len;
    let v = |s: f64| (0..len).map(|i| s * i as f64 + 0.25).collect::<Vec<f64>>();
    Checkpoint {
        config: "seed = 3\n".into(),
        iteration: 17,
        level: 1,
        shape,
        blocks: Vec::new(),
        params: v(0.5),
        optimizer: OptimizerState {
            kind: "lbfgs".into(),
            lbfgs_s: vec![v(1.0), v(2.0)],
            lbfgs_y: vec![v(-1.0), v(3.0)],
            adam_m: vec![],
            adam_v: vec![],
            adam_t: 0,
            sgd_velocity: vec![],
        },
        rng: RngState {
            seed: [7; 32],
            stream: 9,
            word_pos: (5u128 << 64) + 11,
            batch_order: vec![2, 0, 1],
        },
        history: History {
            columns: vec!["iter".into(), "loss".into(), "fwd_res".into()],
            rows: vec![vec![0.0, 1.5, f64::NAN], vec![1.0, 1.25, f64::NAN]],
        },
    }
}

fn same(a: &Checkpoint, b: &Checkpoint) -> bool {
    a.checksum() == b.checksum()
        && a.params == b.params
        && a.optimizer == b.optimizer
        && a.rng == b.rng
}

#[test]
fn round_trip_is_exact() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    let c = sample();
    write(&p, &c).unwrap();
    let r = read(&p).unwrap();
    assert!(same(&c, &r));
    assert_eq!(r.history.columns, c.history.columns);
    assert_eq!(r.iteration, 17);
    assert_eq!(r.config, c.config);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file is left"
    );
}

/// The copy opening, the average closing and a learnable time scale round-trip; the scale
/// is the last parameter.
#[test]
fn parameter_free_layers_and_the_time_scale_round_trip() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    let mut c = sample();
    c.shape = NetShape {
        opening_params: false,
        classifier_params: false,
        time_scale: true,
        classes: 1,
        ..c.shape
    };
    let len = c.shape.layout().len;
    assert_eq!(len, 5 * 12 + 1);
    let v = |s: f64| (0..len).map(|i| s * i as f64 + 0.25).collect::<Vec<f64>>();
    c.params = v(0.5);
    c.optimizer.lbfgs_s = vec![v(1.0)];
    c.optimizer.lbfgs_y = vec![v(2.0)];
    c.optimizer.adam_m.clear();
    c.optimizer.adam_v.clear();
    c.optimizer.sgd_velocity.clear();
    write(&p, &c).unwrap();
    let r = read(&p).unwrap();
    assert!(same(&c, &r));
    assert_eq!(r.shape, c.shape);
    assert_eq!(*r.params.last().unwrap(), 0.5 * (len - 1) as f64 + 0.25);
}

/// A convolutional network's shape and kernels round-trip; the file's arrays have the
/// kernels' shapes; a dense reader's idea of the same attributes is refused.
#[test]
fn convolutional_networks_round_trip() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    let mut c = sample();
    for readout in [Readout::Flatten, Readout::GlobalAverage] {
        let conv = ConvShape {
            in_channels: 2,
            channels: 3,
            height: 4,
            width: 5,
            kernel_h: 3,
            kernel_w: 3,
            readout,
            transition: None,
        };
        c.shape = NetShape {
            input: 40,
            width: 60,
            conv: Some(conv),
            ..c.shape
        };
        let len = c.shape.layout().len;
        let f = conv.features();
        assert_eq!(len, (54 + 3) + 5 * (81 + 3) + (4 * f + 4));
        let v = |s: f64| (0..len).map(|i| s * i as f64 + 0.25).collect::<Vec<f64>>();
        c.params = v(0.5);
        c.optimizer.lbfgs_s = vec![v(1.0)];
        c.optimizer.lbfgs_y = vec![v(2.0)];
        c.optimizer.adam_m.clear();
        c.optimizer.adam_v.clear();
        c.optimizer.sgd_velocity.clear();
        write(&p, &c).unwrap();
        let r = read(&p).unwrap();
        assert!(same(&c, &r));
        assert_eq!(r.shape, c.shape);
        let file = hdf5::File::open(&p).unwrap();
        let shape_of = |name: &str| file.dataset(name).unwrap().shape();
        assert_eq!(shape_of("parameters/opening_weight"), [3, 2, 3, 3]);
        assert_eq!(shape_of("parameters/hidden_weight"), [5, 3, 3, 3, 3]);
        assert_eq!(shape_of("parameters/hidden_bias"), [5, 3]);
        assert_eq!(shape_of("parameters/classifier_weight"), [4, f]);
    }
    // A shape whose sizes do not fit together (c·H·W ≠ width) does not read back, so
    // the write fails and leaves the previous file in place.
    let before = std::fs::read(&p).unwrap();
    c.shape.width = 61;
    c.optimizer = OptimizerState {
        kind: "lbfgs".into(),
        ..OptimizerState::default()
    };
    c.params = vec![0.5; c.shape.layout().len];
    let e = write(&p, &c).unwrap_err().to_string();
    assert!(e.contains("inconsistent") && !e.contains('\n'), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

#[test]
fn damaged_files_are_reported_not_loaded() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    write(&p, &sample()).unwrap();
    let good = std::fs::read(&p).unwrap();
    // Truncated.
    let t = dir.path().join("t.h5");
    std::fs::write(&t, &good[..good.len() / 3]).unwrap();
    let e = read(&t).unwrap_err().to_string();
    assert!(e.contains("t.h5") && !e.contains('\n'), "{e}");
    // One parameter byte flipped: find 0.25 + 0.5·3 = 1.75 (parameter 3) in the file.
    let needle = 1.75f64.to_le_bytes();
    let pos = good.windows(8).position(|w| w == needle).unwrap();
    let mut bad = good.clone();
    bad[pos] ^= 1;
    let b = dir.path().join("b.h5");
    std::fs::write(&b, &bad).unwrap();
    let e = read(&b).unwrap_err().to_string();
    assert!(e.contains("checksum"), "{e}");
    // Not HDF5 at all, and missing.
    let j = dir.path().join("j.h5");
    std::fs::write(&j, b"junk").unwrap();
    assert!(read(&j)
        .unwrap_err()
        .to_string()
        .contains("cannot read checkpoint"));
    assert!(matches!(
        read(&dir.path().join("none.h5")),
        Err(CheckpointError::Missing(_))
    ));
}

#[test]
fn a_failed_write_leaves_the_old_file() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    let c = sample();
    write(&p, &c).unwrap();
    // A checkpoint whose parameters do not fit its shape cannot be written.
    let mut broken = sample();
    broken.params.truncate(3);
    let r = std::panic::catch_unwind(|| write(&p, &broken));
    assert!(r.is_err() || r.unwrap().is_err());
    assert!(same(&read(&p).unwrap(), &c));
}

/// Files in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A checkpoint of `layers` layers of width 8 with Adam moments: about 0.6 kB a layer.
fn sized(layers: usize, iteration: u64) -> Checkpoint {
    let shape = NetShape {
        input: 2,
        width: 8,
        classes: 5,
        layers,
        opening_params: false,
        hidden_sets: layers,
        classifier_params: true,
        time_scale: false,
        conv: None,
    };
    let mut c = sample();
    c.shape = shape;
    c.iteration = iteration;
    with_adam(c, shape.layout().len, (0.125, 0.5), 3)
}

/// `c` with parameters p_i = a·i + offset and Adam moments m_i = i + offset, v_i = 2i +
/// offset (i < len) after `t` steps.
fn with_adam(mut c: Checkpoint, len: usize, (a, offset): (f64, f64), t: u64) -> Checkpoint {
    let v = |s: f64| {
        (0..len)
            .map(|i| s * i as f64 + offset)
            .collect::<Vec<f64>>()
    };
    c.params = v(a);
    c.optimizer = OptimizerState {
        kind: "adam".into(),
        adam_m: v(1.0),
        adam_v: v(2.0),
        adam_t: t,
        ..Default::default()
    };
    c
}

#[test]
fn a_failure_at_every_stage_keeps_the_previous_checkpoint() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    let old = sample();
    write(&p, &old).unwrap();
    let new = sized(4, 99);
    for stage in [
        Stage::Created,
        Stage::Parameters,
        Stage::Groups,
        Stage::Closed,
        Stage::Verified,
    ] {
        for target in [p.clone(), dir.path().join("new.h5")] {
            let e = write_with(&target, &new, &mut |s, _| {
                if s == stage {
                    Err(std::io::Error::other(format!("injected at {s:?}")))
                } else {
                    Ok(())
                }
            })
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&format!("injected at {stage:?}")) && !e.contains('\n'),
                "{e}"
            );
            assert!(same(&read(&p).unwrap(), &old), "{stage:?}");
            assert_eq!(names(dir.path()), ["c.h5"], "{stage:?}");
        }
    }
}

#[test]
fn a_temporary_damaged_after_closing_is_not_published() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    let old = sample();
    write(&p, &old).unwrap();
    // What a lost write-back would leave: the tail of the file missing, or a byte changed.
    let damages: [fn(&Path); 2] = [
        |tmp| {
            let len = std::fs::metadata(tmp).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(tmp).unwrap();
            f.set_len(len * 2 / 3).unwrap();
        },
        |tmp| {
            let mut b = std::fs::read(tmp).unwrap();
            let needle = (0.125f64 * 7.0 + 0.5).to_le_bytes();
            let at = b.windows(8).position(|w| w == needle).unwrap();
            b[at] ^= 4;
            std::fs::write(tmp, b).unwrap();
        },
    ];
    for damage in damages {
        let e = write_with(&p, &sized(4, 99), &mut |s, tmp| {
            if s == Stage::Closed {
                damage(tmp);
            }
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not read back") && !e.contains('\n'), "{e}");
        assert!(same(&read(&p).unwrap(), &old));
        assert_eq!(names(dir.path()), ["c.h5"]);
    }
}

/// A tmpfs of `size` mounted on a new directory, unmounted on drop; `None` where this
/// process may not mount (not root, or no tmpfs), and the test is skipped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Tmpfs(dir))
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn a_full_disk_never_publishes_a_damaged_checkpoint() {
    let _serial = hdf5_serial();
    let Some(fs) = Tmpfs::mount("300k") else {
        return;
    };
    let dir = fs.path();
    // Checkpoints of growing size (as a run writes them, one per iteration) until the
    // file system is full: each write either publishes a loadable file or fails cleanly.
    let mut published = Vec::new();
    let mut failure = None;
    for i in 0..100u64 {
        let path = dir.join(format!("ckpt_{i:06}.h5"));
        let c = sized(8 + 8 * i as usize, i);
        match write(&path, &c) {
            Ok(()) => published.push((path, c)),
            Err(e) => {
                failure = Some(e.to_string());
                assert!(!path.exists(), "a failed write left {}", path.display());
                break;
            }
        }
    }
    let e = failure.expect("the tmpfs fills up");
    eprintln!("after {} checkpoints: {e}", published.len());
    assert!(
        e.contains("cannot write checkpoint")
            && e.contains("No space left on device")
            && !e.contains('\n'),
        "{e}"
    );
    assert!(!published.is_empty(), "{e}");
    for (path, c) in &published {
        assert!(same(&read(path).unwrap(), c), "{}", path.display());
    }
    assert!(
        names(dir)
            .iter()
            .all(|n| n.starts_with("ckpt_") && n.ends_with(".h5")),
        "{:?}",
        names(dir)
    );
    // Overwriting the newest one with a bigger checkpoint fails and keeps it.
    let (newest, c) = published.last().unwrap();
    assert!(write(newest, &sized(400, 1000)).is_err());
    assert!(same(&read(newest).unwrap(), c));
    assert_eq!(names(dir).len(), published.len());
}

/// Rewrites `path` in place with `edit` (the contents stay, so the checksum still
/// matches) and seals it again, as a tool rewriting the file consistently would.
fn tamper(path: &Path, edit: impl FnOnce(&hdf5::File) -> hdf5::Result<()>) {
    let f = hdf5::File::open_rw(path).unwrap();
    edit(&f).unwrap();
    f.close().unwrap();
    seal(path).unwrap();
}

#[test]
fn arrays_of_the_wrong_shape_or_type_are_refused() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.h5");
    let c = sized(3, 5);
    let len = c.params.len();
    write(&good, &c).unwrap();
    type Edit = Box<dyn FnOnce(&hdf5::File) -> hdf5::Result<()>>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "dataset `optimizer/adam_m` has shape [1, ",
            Box::new(move |f| {
                let o = f.group("optimizer")?;
                let m = o.dataset("adam_m")?.read_raw::<f64>()?;
                o.unlink("adam_m")?;
                o.new_dataset::<f64>()
                    .shape([1, len])
                    .create("adam_m")?
                    .write_raw(&m)
            }),
        ),
        (
            "dataset `rng/word_pos` has shape [2, 1]",
            Box::new(|f| {
                let r = f.group("rng")?;
                let v = r.dataset("word_pos")?.read_raw::<u64>()?;
                r.unlink("word_pos")?;
                r.new_dataset::<u64>()
                    .shape([2, 1])
                    .create("word_pos")?
                    .write_raw(&v)
            }),
        ),
        (
            "dataset `rng/seed` does not hold",
            Box::new(|f| {
                let r = f.group("rng")?;
                let v: Vec<u16> = r
                    .dataset("seed")?
                    .read_raw::<u8>()?
                    .into_iter()
                    .map(u16::from)
                    .collect();
                r.unlink("seed")?;
                r.new_dataset::<u16>()
                    .shape([32])
                    .create("seed")?
                    .write_raw(&v)
            }),
        ),
        (
            "dataset `parameters/classifier_bias` does not hold",
            Box::new(|f| {
                let p = f.group("parameters")?;
                let v: Vec<f32> = p
                    .dataset("classifier_bias")?
                    .read_raw::<f64>()?
                    .into_iter()
                    .map(|x| x as f32)
                    .collect();
                p.unlink("classifier_bias")?;
                p.new_dataset::<f32>()
                    .shape([v.len()])
                    .create("classifier_bias")?
                    .write_raw(&v)
            }),
        ),
        (
            "attribute `iteration` is not a scalar",
            Box::new(|f| {
                f.delete_attr("iteration")?;
                f.new_attr::<i32>()
                    .shape(())
                    .create("iteration")?
                    .write_scalar(&5)
            }),
        ),
        (
            "attribute `layers` = 1000000000000 is impossible",
            Box::new(|f| {
                f.delete_attr("layers")?;
                f.new_attr::<u64>()
                    .shape(())
                    .create("layers")?
                    .write_scalar(&1_000_000_000_000u64)
            }),
        ),
        (
            "has more parameters than a file of",
            Box::new(|f| {
                // Each size alone is possible, but not the product.
                f.delete_attr("hidden_sets")?;
                f.new_attr::<u64>()
                    .shape(())
                    .create("hidden_sets")?
                    .write_scalar(&1000u64)
            }),
        ),
        (
            "the checksum of `layerpar_version` does not match",
            Box::new(|f| {
                f.delete_attr("layerpar_version")?;
                f.new_attr::<VarLenUnicode>()
                    .shape(())
                    .create("layerpar_version")?
                    .write_scalar(&VarLenUnicode::from_str("9.9.9").unwrap())
            }),
        ),
    ];
    for (i, (expect, edit)) in cases.into_iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.h5"));
        std::fs::copy(&good, &p).unwrap();
        tamper(&p, edit);
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains(expect) && e.contains(&format!("bad{i}.h5")) && !e.contains('\n'),
            "`{e}` does not say `{expect}`"
        );
    }
    // Any change by HDF5 without a new seal is refused before HDF5 parses the file.
    let unsealed = dir.path().join("unsealed.h5");
    std::fs::copy(&good, &unsealed).unwrap();
    let f = hdf5::File::open_rw(&unsealed).unwrap();
    f.attr("iteration").unwrap().write_scalar(&18u64).unwrap();
    f.close().unwrap();
    let e = read(&unsealed).unwrap_err().to_string();
    assert!(e.contains("the file checksum does not match"), "{e}");
    let mut b = std::fs::read(&good).unwrap();
    b.push(0);
    std::fs::write(&unsealed, &b).unwrap();
    let e = read(&unsealed).unwrap_err().to_string();
    assert!(e.contains("truncated or extended"), "{e}");
    // A file from before the seal (no header in the userblock) is read by the HDF5 checks.
    let mut b = std::fs::read(&good).unwrap();
    b[..USERBLOCK].fill(0);
    std::fs::write(&unsealed, &b).unwrap();
    assert!(same(&read(&unsealed).unwrap(), &c));
    // A file from before `version_checksum` existed is still read.
    let old = dir.path().join("old.h5");
    std::fs::copy(&good, &old).unwrap();
    tamper(&old, |f| f.delete_attr("version_checksum"));
    assert!(same(&read(&old).unwrap(), &c));
}

/// A chain of three convolutional blocks: block 0 (1 → 2 channels of 8×6, no
/// transition), block 1 (average pooling to 4×3, 2 → 3 channels, two spline coefficient
/// sets for three layers), block 2 (max pooling to 2×1, 3 → 4 channels, 5 classes,
/// global average read-out, a learnable time scale); the inner blocks have no classes.
fn chain() -> Checkpoint {
    let conv = |in_channels, channels, height, width, kernel_w, transition| ConvShape {
        in_channels,
        channels,
        height,
        width,
        kernel_h: 3,
        kernel_w,
        readout: Readout::Flatten,
        transition,
    };
    let block = |input, width, classes, layers, hidden_sets, conv| NetShape {
        input,
        width,
        classes,
        layers,
        opening_params: true,
        hidden_sets,
        classifier_params: true,
        time_scale: false,
        conv: Some(conv),
    };
    let b0 = block(48, 96, 0, 2, 2, conv(1, 2, 8, 6, 3, None));
    let b1 = block(
        96,
        36,
        0,
        3,
        2,
        conv(
            2,
            3,
            4,
            3,
            3,
            Some(Transition {
                pool: Some(Pool::Average),
                in_height: 8,
                in_width: 6,
            }),
        ),
    );
    let mut c2 = conv(
        3,
        4,
        2,
        1,
        1,
        Some(Transition {
            pool: Some(Pool::Max),
            in_height: 4,
            in_width: 3,
        }),
    );
    c2.readout = Readout::GlobalAverage;
    let b2 = NetShape {
        time_scale: true,
        ..block(36, 8, 5, 2, 2, c2)
    };
    let len: usize = [b0, b1, b2].iter().map(|b| b.layout().len).sum();
    let mut c = sample();
    c.shape = b0;
    c.blocks = vec![b1, b2];
    with_adam(c, len, (0.5, 0.25), 4)
}

#[test]
fn a_chain_of_blocks_round_trips() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    let c = chain();
    assert_eq!(c.validate(), Ok(()));
    write(&p, &c).unwrap();
    let r = read(&p).unwrap();
    assert!(same(&c, &r));
    assert_eq!(r.shape, c.shape);
    assert_eq!(r.blocks, c.blocks);
    // The params split: each block's θ, as long as its layout, one after the other.
    let ranges = r.block_ranges();
    let lens: Vec<usize> = r.shapes().map(|s| s.layout().len).collect();
    assert_eq!(ranges.len(), 3);
    assert_eq!(ranges[0], 0..lens[0]);
    assert_eq!(ranges[1], lens[0]..lens[0] + lens[1]);
    assert_eq!(ranges[2].end, r.params.len());
    // Each block's arrays, with the kernels' shapes, in its own group.
    let file = hdf5::File::open(&p).unwrap();
    let shape_of = |name: &str| file.dataset(name).unwrap().shape();
    let data = |name: &str| file.dataset(name).unwrap().read_raw::<f64>().unwrap();
    assert_eq!(shape_of("parameters/hidden_weight"), [2, 2, 2, 3, 3]);
    assert_eq!(shape_of("parameters/classifier_weight"), [0, 96]);
    let (o1, o2) = (c.blocks[0].opening_kernel(), c.blocks[1].opening_kernel());
    assert_eq!(
        shape_of("block1/opening_weight"),
        [3, 2, o1.0, o1.1],
        "{o1:?}"
    );
    assert_eq!(shape_of("block1/hidden_weight"), [2, 3, 3, 3, 3]);
    assert_eq!(shape_of("block1/classifier_weight"), [0, 36]);
    assert_eq!(shape_of("block2/opening_weight"), [4, 3, o2.0, o2.1]);
    assert_eq!(shape_of("block2/hidden_weight"), [2, 4, 4, 3, 1]);
    assert_eq!(shape_of("block2/classifier_weight"), [5, 4]);
    assert_eq!(shape_of("block2/time_scale"), [1]);
    let l1 = c.blocks[0].layout();
    assert_eq!(
        data("block1/hidden_bias"),
        [
            &c.params[ranges[1].start..][l1.layer_bias(0)],
            &c.params[ranges[1].start..][l1.layer_bias(1)]
        ]
        .concat()
    );
    assert_eq!(data("block2/time_scale"), [*c.params.last().unwrap()]);
    let str_attr = |loc: &hdf5::Location, name: &str| {
        loc.attr(name)
            .unwrap()
            .read_scalar::<VarLenUnicode>()
            .unwrap()
            .to_string()
    };
    let u64_attr =
        |loc: &hdf5::Location, name: &str| loc.attr(name).unwrap().read_scalar::<u64>().unwrap();
    let (g1, g2) = (file.group("block1").unwrap(), file.group("block2").unwrap());
    assert_eq!(str_attr(&g1, "transition_pool"), "average");
    assert_eq!(str_attr(&g2, "transition_pool"), "max");
    assert_eq!(u64_attr(&g2, "transition_in_height"), 4);
    assert_eq!(u64_attr(&g2, "transition_in_width"), 3);
    assert_eq!(u64_attr(&file, "chain_blocks"), 3);
    assert_eq!(u64_attr(&file, "chain_params"), c.params.len() as u64);
    assert_eq!(u64_attr(&file, "classes"), 0);
    assert!(file.attr("transition_pool").is_err());
    // Without pooling the sizes stay; the checksum covers the transition.
    let mut none = c.clone();
    let mut c2 = none.blocks[1].conv.unwrap();
    c2.transition = Some(Transition {
        pool: None,
        in_height: 2,
        in_width: 1,
    });
    c2.height = 2;
    none.blocks[1].conv = Some(c2);
    none.blocks[1].input = 3 * 2;
    // (Block 2 then takes 2×1 images, which block 1 does not have.)
    let e = none.validate().unwrap_err();
    assert!(e.starts_with("block 2: takes images of 2×1"), "{e}");
    assert_ne!(none.checksum(), c.checksum());
}

/// A one-block network writes no chain attributes and no block groups.
#[test]
fn one_block_files_have_no_chain() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    let c = sample();
    let whole = 0..c.params.len();
    assert_eq!(c.block_ranges(), vec![whole]);
    write(&p, &c).unwrap();
    let file = hdf5::File::open(&p).unwrap();
    assert!(file.attr("chain_blocks").is_err() && file.attr("chain_params").is_err());
    assert_eq!(
        file.member_names().unwrap(),
        ["history", "optimizer", "parameters", "rng"]
    );
    assert!(read(&p).unwrap().blocks.is_empty());
}

#[test]
fn damaged_chains_are_refused_naming_the_block() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.h5");
    let c = chain();
    write(&good, &c).unwrap();
    let set_u64 = |g: &str, name: &'static str, v: u64| -> Edit {
        let g = g.to_string();
        Box::new(move |f| {
            let loc = f.group(if g.is_empty() { "/" } else { &g })?;
            loc.delete_attr(name)?;
            loc.new_attr::<u64>()
                .shape(())
                .create(name)?
                .write_scalar(&v)
        })
    };
    type Edit = Box<dyn FnOnce(&hdf5::File) -> hdf5::Result<()>>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "block 1: attribute `conv_channels` is missing",
            Box::new(|f| f.group("block1")?.delete_attr("conv_channels")),
        ),
        (
            "block 2: attribute `transition_pool` = \"min\" is not",
            Box::new(|f| {
                let g = f.group("block2")?;
                g.delete_attr("transition_pool")?;
                g.new_attr::<VarLenUnicode>()
                    .shape(())
                    .create("transition_pool")?
                    .write_scalar(&VarLenUnicode::from_str("min").unwrap())
            }),
        ),
        (
            "block 2: attribute `time_scale` is not a scalar",
            Box::new(|f| {
                let g = f.group("block2")?;
                g.delete_attr("time_scale")?;
                g.new_attr::<f64>()
                    .shape(())
                    .create("time_scale")?
                    .write_scalar(&1.0)
            }),
        ),
        (
            "block 2: dataset `block2/hidden_weight` is missing",
            Box::new(|f| f.group("block2")?.unlink("hidden_weight")),
        ),
        (
            "block 1: dataset `block1/opening_bias` has shape [2]",
            Box::new(|f| {
                let g = f.group("block1")?;
                g.unlink("opening_bias")?;
                g.new_dataset::<f64>()
                    .shape([2])
                    .create("opening_bias")?
                    .write_raw(&[0.0, 1.0])
            }),
        ),
        (
            "block 2: group `block2` is missing",
            Box::new(|f| f.unlink("block2")),
        ),
        (
            "block 1: network shape",
            // The pooled 10×6 images are not block 1's 4×3.
            set_u64("block1", "transition_in_height", 10),
        ),
        (
            "block 1: an inner block of a chain has 2 classes",
            set_u64("block1", "classes", 2),
        ),
        (
            "block 2: takes 2 channels, block 1 has 3",
            Box::new(move |f| {
                set_u64("block2", "conv_in_channels", 2)(f)?;
                set_u64("block2", "input_dim", 24)(f)
            }),
        ),
        (
            "attribute `chain_params` = 7, but the blocks' layouts (block 0: ",
            set_u64("", "chain_params", 7),
        ),
        (
            "attribute `chain_params` = ",
            // One more spline set in block 1: more parameters than the file says.
            set_u64("block1", "hidden_sets", 3),
        ),
        (
            "block 0: attribute `conv_kernel_w` is missing",
            Box::new(|f| f.delete_attr("conv_kernel_w")),
        ),
        (
            // Not a chain any more: block 0 alone would need classes.
            "attribute `classes` = 0 is impossible",
            Box::new(|f| f.delete_attr("chain_blocks")),
        ),
    ];
    for (i, (expect, edit)) in cases.into_iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.h5"));
        std::fs::copy(&good, &p).unwrap();
        tamper(&p, edit);
        let e = match std::panic::catch_unwind(|| read(&p)) {
            Ok(r) => r.unwrap_err().to_string(),
            Err(_) => panic!("reading bad{i}.h5 panicked"),
        };
        assert!(
            e.contains(expect) && e.contains(&format!("bad{i}.h5")) && !e.contains('\n'),
            "`{e}` does not say `{expect}`"
        );
    }
}

#[test]
fn a_chain_that_does_not_fit_is_not_written() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    let c = chain();
    write(&p, &c).unwrap();
    let before = std::fs::read(&p).unwrap();
    let refused = |bad: &Checkpoint, expect: &str| {
        let e = write(&p, bad).unwrap_err().to_string();
        assert!(
            e.contains("cannot write checkpoint") && e.contains(expect) && !e.contains('\n'),
            "`{e}` does not say `{expect}`"
        );
        assert_eq!(std::fs::read(&p).unwrap(), before);
        assert_eq!(names(dir.path()), ["c.h5"]);
    };
    let mut bad = c.clone();
    bad.params.pop();
    let lens: Vec<usize> = c.shapes().map(|s| s.layout().len).collect();
    refused(
        &bad,
        &format!(
            "the parameters have {} values, the blocks' layouts (block 0: {}, block 1: {}, block 2: {}) need {}",
            c.params.len() - 1,
            lens[0],
            lens[1],
            lens[2],
            c.params.len()
        ),
    );
    let mut bad = c.clone();
    bad.params.push(0.0);
    refused(&bad, "the parameters have");
    let mut bad = c.clone();
    bad.blocks[0].classes = 5;
    refused(&bad, "block 1: an inner block of a chain has 5 classes");
    let mut bad = c.clone();
    bad.blocks[1].classes = 0;
    refused(&bad, "block 2: the last block of a chain has no classes");
    let mut bad = c.clone();
    bad.blocks[1].conv.as_mut().unwrap().transition = None;
    refused(&bad, "block 2: network shape");
    let mut bad = c.clone();
    bad.blocks[0].conv = None;
    refused(&bad, "block 1: the blocks of a chain must be convolutional");
    let mut bad = c.clone();
    let c1 = bad.blocks[0].conv.as_mut().unwrap();
    c1.transition.as_mut().unwrap().pool = None;
    c1.height = 8;
    c1.width = 6;
    bad.blocks[0].width = 3 * 48;
    refused(&bad, "block 2: takes images of 4×3, block 1 has 8×6");
    // A block 0 with a transition (a one-block network too) round-trips.
    let mut one = sample();
    one.shape = chain().blocks[1];
    one.shape.classes = 4;
    let len = one.shape.layout().len;
    one.params = vec![0.5; len];
    one.optimizer = OptimizerState {
        kind: "sgd".into(),
        ..Default::default()
    };
    let q = dir.path().join("one.h5");
    write(&q, &one).unwrap();
    let r = read(&q).unwrap();
    assert_eq!(r.shape, one.shape);
    assert!(r.blocks.is_empty());
}

/// `read(path)` in a thread: its error, or a failure if it takes more than 20 s.
fn read_error_within_20s(path: &Path) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(read(&p).map(|_| ()).map_err(|e| e.to_string()));
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("reading {} hangs", path.display()))
        .unwrap_err()
}

#[test]
fn only_regular_files_are_read() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.h5");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    let mut cases = vec![
        (
            dir.path().to_path_buf(),
            "is a directory, not a regular file",
        ),
        (
            PathBuf::from("/dev/zero"),
            "is a character device, not a regular file",
        ),
    ];
    if made.is_ok_and(|s| s.success()) {
        cases.push((fifo, "is a FIFO, not a regular file"));
    }
    for (p, expect) in cases {
        let e = read_error_within_20s(&p);
        assert!(
            e.contains(expect) && e.contains(&*p.to_string_lossy()) && !e.contains('\n'),
            "{e}"
        );
    }
}
