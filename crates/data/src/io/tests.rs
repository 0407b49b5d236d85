//! HDF5 and CSV data files: round trips, and each malformed file refused with its problem named.

use super::*;
use crate::{generate_peaks, Dataset, ImageShape};
use std::fs;

#[test]
fn hdf5_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.h5");
    let (t, v) = generate_peaks(50, 10, 1);
    write_hdf5(&p, &t, &v).unwrap();
    let (t2, v2) = read_hdf5(&p).unwrap();
    assert_eq!(t, t2);
    assert_eq!(Some(v), v2);
}

#[test]
fn hdf5_image_shapes_round_trip_and_are_checked() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("img.h5");
    let shape = ImageShape {
        channels: 2,
        height: 1,
        width: 3,
    };
    let make = |n: usize| {
        Dataset::labelled((0..6 * n).map(|i| i as f64).collect(), vec![1; n], 6, 2)
            .with_image(Some(shape))
            .unwrap()
    };
    let (t, v) = (make(3), make(1));
    write_hdf5(&p, &t, &v).unwrap();
    assert_eq!(read_hdf5(&p).unwrap(), (t, Some(v)));
    // On the group or the file; of the wrong size, type or length.
    let x = [1.0, 2.0, 3.0, 4.0];
    h5(&p, |f| {
        group(f, "train", &x, &[0i64, 1], &[2])?;
        f.group("train")?
            .new_attr::<u32>()
            .shape(3)
            .create("image_shape")?
            .write_raw(&[1u32, 2, 1])
    });
    let shape = read_hdf5(&p).unwrap().0.image.unwrap();
    assert_eq!((shape.channels, shape.height, shape.width), (1, 2, 1));
    h5(&p, |f| {
        group(f, "train", &x, &[0i64, 1], &[2])?;
        f.new_attr::<i64>()
            .shape(3)
            .create("image_shape")?
            .write_raw(&[1i64, 2, 2])
    });
    let e = refusal(&p, read_hdf5);
    assert!(
            e.contains("attribute `image_shape` of the file is 1 × 2 × 2 = 4 values per example, but the examples have 2 features"),
            "{e}"
        );
    h5(&p, |f| {
        group(f, "train", &x, &[0i64, 1], &[2])?;
        f.new_attr::<i64>()
            .shape(2)
            .create("image_shape")?
            .write_raw(&[1i64, 2])
    });
    assert!(refusal(&p, read_hdf5).contains("must be 3 integers ≥ 1"));
}

#[test]
fn regression_files_round_trip() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let (t, v) = crate::generate_sine(40, 8, 3);
    let p = dir.path().join("s.csv");
    write_csv(&p, &["x"], &t, &v).unwrap();
    assert!(fs::read_to_string(&p)
        .unwrap()
        .starts_with("x,target,split\n"));
    assert_eq!(read_csv(&p).unwrap(), (t.clone(), Some(v.clone())));
    let h = dir.path().join("s.h5");
    write_hdf5(&h, &t, &v).unwrap();
    assert_eq!(read_hdf5(&h).unwrap(), (t, Some(v)));
    // Two targets per example.
    let two = Dataset::regression(vec![1.0, 2.0], vec![0.5, -0.5, 1.5, -1.5], 1, 2);
    write_csv(&p, &["x"], &two, &Dataset::regression(vec![], vec![], 1, 2)).unwrap();
    assert!(fs::read_to_string(&p)
        .unwrap()
        .starts_with("x,target0,target1,split\n"));
    assert_eq!(read_csv(&p).unwrap(), (two, None));
}

#[test]
fn csv_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.csv");
    let (t, v) = generate_peaks(50, 10, 1);
    write_csv(&p, &["x", "y"], &t, &v).unwrap();
    let (t2, v2) = read_csv(&p).unwrap();
    assert_eq!(t, t2);
    assert_eq!(Some(v), v2);
}

#[test]
fn bad_files_give_one_line_errors() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let missing = read_csv(&dir.path().join("nope.csv"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.csv"), "{missing}");
    let p = dir.path().join("bad.csv");
    fs::write(&p, "x,y,label\n1,2,0\n1,zz,1\n").unwrap();
    let e = read_csv(&p).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("`y`"), "{e}");
    assert!(!e.contains('\n'));
    fs::write(&p, "x,y\n1,2\n").unwrap();
    assert!(read_csv(&p).unwrap_err().to_string().contains("label"));
    fs::write(&p, "x,label,target\n1,2,0.5\n").unwrap();
    let e = read_csv(&p).unwrap_err().to_string();
    assert!(e.contains("both") && e.contains("`target`"), "{e}");
    fs::write(&p, "x,target\n1,0.5\n2,nan\n").unwrap();
    let e = read_csv(&p).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("`target`"), "{e}");
    let h = dir.path().join("bad.h5");
    fs::write(&h, b"this is not hdf5").unwrap();
    let e = read_hdf5(&h).unwrap_err().to_string();
    assert!(e.contains("bad.h5") && !e.contains('\n'), "{e}");
    assert!(read_hdf5(&dir.path().join("nope.h5"))
        .unwrap_err()
        .to_string()
        .contains("nope.h5"));
}

#[test]
fn failed_atomic_write_keeps_the_old_file() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("keep.csv");
    fs::write(&p, "old").unwrap();
    let r = write_atomically(&p, |tmp| {
        fs::write(tmp, "partial").unwrap();
        Err(malformed(tmp, "simulated failure"))
    });
    assert!(r.is_err());
    assert_eq!(fs::read_to_string(&p).unwrap(), "old");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// `read_csv` or `read_hdf5`.
type Reader = fn(&Path) -> Result<(Dataset, Option<Dataset>), DataError>;

/// An HDF5 data file built by `build` (on a fresh file).
/// The tests that create and read HDF5 files run one at a time: run concurrently in one
/// process, libhdf5's file locks made a read of a just-closed file fail now and then
/// ("unable to lock file, errno = 11"), about one run in five.
fn hdf5_serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn h5(path: &Path, build: impl FnOnce(&hdf5::File) -> hdf5::Result<()>) {
    let f = hdf5::File::create(path).unwrap();
    build(&f).unwrap();
    f.close().unwrap();
}

/// A group `name` with `features` (rows × 2) and `labels` of type T and shape `lshape`.
fn group<T: hdf5::H5Type>(
    f: &hdf5::File,
    name: &str,
    features: &[f64],
    labels: &[T],
    lshape: &[usize],
) -> hdf5::Result<()> {
    let g = f.create_group(name)?;
    g.new_dataset::<f64>()
        .shape([features.len() / 2, 2])
        .create("features")?
        .write_raw(features)?;
    g.new_dataset::<T>()
        .shape(lshape)
        .create("labels")?
        .write_raw(labels)
}

/// The error reading `path` with `read`, checked to be one line naming the file.
fn refusal(path: &Path, read: Reader) -> String {
    let e = read(path).unwrap_err().to_string();
    assert!(
        e.contains(&*path.to_string_lossy()) && !e.contains('\n'),
        "{e}"
    );
    e
}

#[test]
fn non_finite_features_are_refused_naming_row_and_column() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nan.csv");
    for bad in ["NaN", "inf", "-infinity"] {
        fs::write(&p, format!("x,y,label\n1,2,0\n3,{bad},1\n")).unwrap();
        let e = refusal(&p, read_csv);
        assert!(
            e.contains(&format!(
                "line 3, column `y`: `{bad}` is not a finite number"
            )),
            "{e}"
        );
    }
    let h = dir.path().join("nan.h5");
    h5(&h, |f| {
        group(
            f,
            "train",
            &[1.0, 2.0, 3.0, 4.0, f64::NAN, 6.0],
            &[0i64, 1, 0],
            &[3],
        )
    });
    let e = refusal(&h, read_hdf5);
    assert!(e.contains("`train/features`[2, 0] is NaN"), "{e}");
    h5(&h, |f| {
        group(f, "train", &[1.0, 2.0, 3.0, 4.0], &[0i64, 1], &[2])?;
        group(f, "val", &[1.0, f64::INFINITY], &[0i64], &[1])
    });
    let e = refusal(&h, read_hdf5);
    assert!(e.contains("`val/features`[0, 1] is inf"), "{e}");
}

#[test]
fn duplicate_column_names_are_refused() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dup.csv");
    fs::write(&p, "x,y,label,split,label\n1,2,0,train,1\n").unwrap();
    let e = refusal(&p, read_csv);
    assert!(
        e.contains("the header names column `label` twice (columns 3 and 5)"),
        "{e}"
    );
    fs::write(&p, "x,x,label\n1,2,0\n").unwrap();
    assert!(refusal(&p, read_csv).contains("column `x` twice"));
}

#[test]
fn hdf5_labels_must_be_whole_numbers_of_shape_n() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("l.h5");
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    h5(&h, |f| group(f, "train", &x, &[0.5f64, 1.5, 0.5], &[3]));
    let e = refusal(&h, read_hdf5);
    assert!(
        e.contains("label 0.5 of `train` example 0 is not a class number"),
        "{e}"
    );
    h5(&h, |f| group(f, "train", &x, &[0i64, 1, 0], &[3, 1]));
    let e = refusal(&h, read_hdf5);
    assert!(
        e.contains("`train/labels` must be 1-D (n), got shape [3, 1]"),
        "{e}"
    );
    h5(&h, |f| group(f, "train", &x, &[0u8, 1, 0], &[1, 3]));
    assert!(refusal(&h, read_hdf5).contains("must be 1-D"));
    // Whole numbers stored as floats, and unsigned integers, are fine.
    h5(&h, |f| group(f, "train", &x, &[0.0f64, 1.0, 0.0], &[3]));
    assert_eq!(read_hdf5(&h).unwrap().0.labels, [0, 1, 0]);
    h5(&h, |f| group(f, "train", &x, &[1u16, 0, 1], &[3]));
    assert_eq!(read_hdf5(&h).unwrap().0.labels, [1, 0, 1]);
}

#[test]
fn messages_say_what_is_wrong() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    // HDF5 with no training rows: the same words as CSV, not a later "not finite".
    let h = dir.path().join("empty.h5");
    h5(&h, |f| group::<i64>(f, "train", &[], &[], &[0]));
    assert!(refusal(&h, read_hdf5).contains("no training rows"));
    let p = dir.path().join("empty.csv");
    fs::write(&p, "x,label\n").unwrap();
    assert!(refusal(&p, read_csv).contains("no training rows"));
    // A negative label in a 5-class file.
    let p = dir.path().join("neg.csv");
    fs::write(&p, "x,y,label\n1,2,4\n1,2,-1\n1,2,0\n").unwrap();
    let e = refusal(&p, read_csv);
    assert!(e.contains("line 3: label -1 is negative"), "{e}");
    assert!(!e.contains("0..0"), "{e}");
    // An HDF5 label beyond the declared classes.
    h5(&h, |f| {
        f.new_attr::<u64>()
            .shape(())
            .create("classes")?
            .write_scalar(&2u64)?;
        group(f, "train", &[1.0, 2.0, 3.0, 4.0], &[0i64, 2], &[2])
    });
    let e = refusal(&h, read_hdf5);
    assert!(
        e.contains("label 2 of `train` example 1 is outside 0..2"),
        "{e}"
    );
}

#[test]
fn class_counts_are_checked_against_the_data_before_allocating() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.csv");
    fs::write(&p, "x,y,label\n1,2,0\n1,2,1000000000\n").unwrap();
    let e = refusal(&p, read_csv);
    assert!(
        e.contains(
            "label 1000000000 on line 3 means 1000000001 classes, more than the file's 2 examples"
        ),
        "{e}"
    );
    let h = dir.path().join("big.h5");
    let x = [1.0, 2.0, 3.0, 4.0];
    h5(&h, |f| {
        f.new_attr::<u64>()
            .shape(())
            .create("classes")?
            .write_scalar(&1_000_000_000_000u64)?;
        group(f, "train", &x, &[0i64, 1], &[2])
    });
    let e = refusal(&h, read_hdf5);
    assert!(
        e.contains("attribute `classes` = 1000000000000 means"),
        "{e}"
    );
    h5(&h, |f| {
        f.new_attr::<f64>()
            .shape(())
            .create("classes")?
            .write_scalar(&3.0)?;
        group(f, "train", &x, &[0i64, 1], &[2])
    });
    assert!(refusal(&h, read_hdf5).contains("attribute `classes` is not a scalar integer"));
    h5(&h, |f| {
        group(f, "train", &x, &[0i64, 4_000_000_000_000], &[2])
    });
    assert!(refusal(&h, read_hdf5).contains("the largest label, 4000000000000, means"));
    // Many classes with no examples are fine up to the floor.
    h5(&h, |f| {
        f.new_attr::<u64>()
            .shape(())
            .create("classes")?
            .write_scalar(&1000u64)?;
        group(f, "train", &x, &[0i64, 1], &[2])
    });
    assert_eq!(read_hdf5(&h).unwrap().0.classes, 1000);
    // A header declaring far more values than the file stores.
    h5(&h, |f| {
        let g = f.create_group("train")?;
        g.new_dataset::<f64>()
            .chunk([1024, 2])
            .shape([1usize << 40, 2])
            .create("features")?;
        g.new_dataset::<i64>()
            .shape([2])
            .create("labels")?
            .write_raw(&[0i64, 1])
    });
    let e = refusal(&h, read_hdf5);
    assert!(
        e.contains("`train/features` declares shape [1099511627776, 2]"),
        "{e}"
    );
}

/// `read(path)`'s error within 20 s (a FIFO must not block it).
fn refusal_within_20s(path: &Path, read: Reader) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(read(&p).map(|_| ()).map_err(|e| e.to_string()));
    });
    let e = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("reading {} hangs", path.display()))
        .unwrap_err();
    assert!(!e.contains('\n'), "{e}");
    e
}

#[test]
fn only_regular_files_are_read() {
    let _serial = hdf5_serial();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.csv");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    let mut cases = vec![
        (
            dir.path().to_path_buf(),
            "is a directory, not a regular file",
        ),
        (
            std::path::PathBuf::from("/dev/zero"),
            "is a character device, not a regular file",
        ),
    ];
    if made.is_ok_and(|s| s.success()) {
        cases.push((fifo, "is a FIFO, not a regular file"));
    }
    for (p, expect) in cases {
        for read in [read_csv, read_hdf5] {
            let e = refusal_within_20s(&p, read);
            assert!(
                e.contains(expect) && e.contains(&*p.to_string_lossy()),
                "{e}"
            );
        }
    }
}
