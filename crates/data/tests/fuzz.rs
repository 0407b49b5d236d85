//! Fuzz-style tests of the CSV and HDF5 readers: generated and mutated files from a seeded
//! generator, a bounded number of them (and a time limit). Every input must give a dataset
//! that keeps the invariants, or a one-line error naming the file: no panic, no hang.

use layerpar_data::rng::{below, generator, uniform, Generator};
use layerpar_data::{generate_peaks, read_csv, read_hdf5, write_csv, write_hdf5, Dataset};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Reader = fn(&Path) -> Result<(Dataset, Option<Dataset>), layerpar_data::DataError>;

/// What a successful read must satisfy.
fn check_dataset(d: &Dataset) {
    assert!(d.dim > 0);
    assert_eq!(d.features.len(), d.len() * d.dim);
    assert!(d.features.iter().all(|x| x.is_finite()));
    assert!(d.labels.iter().all(|&l| l < d.classes));
}

/// Reads `path`, checking the result; true if it was accepted.
fn read_and_check(read: Reader, path: &Path, what: &str) -> bool {
    let r = std::panic::catch_unwind(|| read(path));
    match r {
        Err(_) => panic!("the reader panicked on {what}"),
        Ok(Ok((t, v))) => {
            check_dataset(&t);
            assert!(!t.is_empty(), "{what}: an empty training set was accepted");
            if let Some(v) = &v {
                check_dataset(v);
                assert_eq!(v.dim, t.dim);
            }
            let examples = t.len() + v.as_ref().map_or(0, |v| v.len());
            assert!(t.classes <= examples.max(layerpar_data::io::CLASS_LIMIT_FLOOR));
            true
        }
        Ok(Err(e)) => {
            let e = e.to_string();
            assert!(!e.contains('\n'), "{what}: a multi-line error:\n{e}");
            assert!(
                e.contains(&*path.to_string_lossy()),
                "{what}: `{e}` does not name the file"
            );
            false
        }
    }
}

/// Runs `body` (which counts its inputs in the counter it is given) in a thread, failing the
/// test if it has not finished within `limit` (a hang) and printing how many inputs it ran.
fn bounded(name: &str, limit: Duration, body: impl FnOnce(Arc<AtomicUsize>) + Send + 'static) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        body(c);
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
            "{name}: input {} has not finished within {limit:?}",
            count.load(Ordering::SeqCst)
        ),
        Err(_) => panic!("{name} failed at input {}", count.load(Ordering::SeqCst)),
    }
}

fn pick<'a>(g: &mut Generator, v: &[&'a str]) -> &'a str {
    v[below(g, v.len())]
}

const NAMES: &[&str] = &["x", "y", "z", "label", "split", "", "label ", "x0", "é"];
const FIELDS: &[&str] = &[
    "0",
    "1",
    "2",
    "4",
    "-1",
    "1.5",
    "-0",
    "1e308",
    "1e309",
    "-1e309",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "",
    "abc",
    "0x10",
    " 3 ",
    "99999999999999999999",
    "1000000000",
    "4000000000000",
    "train",
    "val",
    "validation",
    "test",
    "1,2",
    "\"1\"",
    "+2",
    "1e-320",
    "٣",
];

/// A random CSV text: random header and rows from the pools above.
fn random_csv(g: &mut Generator) -> Vec<u8> {
    let cols = below(g, 6);
    let mut text = String::new();
    let header: Vec<&str> = (0..cols).map(|_| pick(g, NAMES)).collect();
    text.push_str(&header.join(","));
    text.push('\n');
    for _ in 0..below(g, 12) {
        let n = if below(g, 8) == 0 { below(g, 7) } else { cols };
        let row: Vec<&str> = (0..n).map(|_| pick(g, FIELDS)).collect();
        text.push_str(&row.join(","));
        text.push_str(if below(g, 10) == 0 { "\r\n" } else { "\n" });
    }
    text.into_bytes()
}

/// `bytes` with a few random changes: byte flips, insertions, deletions, truncation.
fn mutate(g: &mut Generator, bytes: &[u8], inserts: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..1 + below(g, 4) {
        if b.is_empty() {
            break;
        }
        let at = below(g, b.len());
        match below(g, 5) {
            0 => b[at] ^= 1 << below(g, 8),
            1 => b.insert(at, inserts[below(g, inserts.len())]),
            2 => {
                b.remove(at);
            }
            3 => b.truncate(at),
            _ => b[at] = (uniform(g) * 256.0) as u8,
        }
    }
    b
}

#[test]
fn fuzzed_csv_files_give_data_or_one_line_errors() {
    bounded("CSV fuzz", Duration::from_secs(120), |count| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.csv");
        let (t, v) = generate_peaks(30, 10, 3);
        write_csv(&p, &["x", "y"], &t, &v).unwrap();
        let valid = std::fs::read(&p).unwrap();
        let mut g = generator(11, 1);
        let start = Instant::now();
        let (mut accepted, mut total) = (0, 0);
        for i in 0..6000 {
            if start.elapsed() > Duration::from_secs(30) {
                break;
            }
            let bytes = if i % 2 == 0 {
                random_csv(&mut g)
            } else {
                mutate(&mut g, &valid, b",\n-e.0123456789\xff\x00N ")
            };
            let p = dir.path().join(format!("f{i}.csv"));
            std::fs::write(&p, &bytes).unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            total += 1;
            if read_and_check(read_csv, &p, &format!("CSV input {i}")) {
                accepted += 1;
            }
            std::fs::remove_file(&p).unwrap();
        }
        eprintln!("CSV fuzz: {total} inputs, {accepted} accepted");
        assert!(accepted > 0 && accepted < total);
    });
}

/// A random HDF5 data file: groups, shapes, element types and values drawn at random.
fn random_hdf5(g: &mut Generator, path: &Path) -> hdf5::Result<()> {
    let f = hdf5::File::create(path)?;
    match below(g, 5) {
        0 => f
            .new_attr::<u64>()
            .shape(())
            .create("classes")?
            .write_scalar(&(below(g, 8) as u64))?,
        1 => f
            .new_attr::<i64>()
            .shape(())
            .create("classes")?
            .write_scalar(&-3i64)?,
        2 => f
            .new_attr::<f64>()
            .shape(())
            .create("classes")?
            .write_scalar(&1e12)?,
        3 => f
            .new_attr::<u64>()
            .shape([2])
            .create("classes")?
            .write_raw(&[2u64, 3])?,
        _ => {}
    }
    for name in ["train", "val"] {
        if below(g, 4) == 0 {
            continue;
        }
        let grp = f.create_group(name)?;
        let rows = below(g, 6);
        let dim = below(g, 3);
        let shape: Vec<usize> = match below(g, 6) {
            0 => vec![rows],
            1 => vec![rows, dim, 2],
            _ => vec![rows, dim],
        };
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n)
            .map(|_| match below(g, 12) {
                0 => f64::NAN,
                1 => f64::INFINITY,
                _ => uniform(g) * 4.0 - 2.0,
            })
            .collect();
        if below(g, 5) == 0 {
            let v: Vec<i32> = values.iter().map(|&x| x as i32).collect();
            grp.new_dataset::<i32>()
                .shape(shape.clone())
                .create("features")?
                .write_raw(&v)?;
        } else if below(g, 8) > 0 {
            grp.new_dataset::<f64>()
                .shape(shape.clone())
                .create("features")?
                .write_raw(&values)?;
        }
        let lrows = if below(g, 6) == 0 { below(g, 6) } else { rows };
        let lshape = if below(g, 6) == 0 {
            vec![lrows, 1]
        } else {
            vec![lrows]
        };
        let labels: Vec<f64> = (0..lrows)
            .map(|_| match below(g, 10) {
                0 => -1.0,
                1 => 0.5 + below(g, 3) as f64,
                2 => 1e12,
                _ => below(g, 4) as f64,
            })
            .collect();
        match below(g, 4) {
            0 => grp
                .new_dataset::<f64>()
                .shape(lshape)
                .create("labels")?
                .write_raw(&labels)?,
            1 => {
                let l: Vec<u8> = labels.iter().map(|&x| x as u8).collect();
                grp.new_dataset::<u8>()
                    .shape(lshape)
                    .create("labels")?
                    .write_raw(&l)?
            }
            _ => {
                let l: Vec<i64> = labels.iter().map(|&x| x as i64).collect();
                grp.new_dataset::<i64>()
                    .shape(lshape)
                    .create("labels")?
                    .write_raw(&l)?
            }
        }
    }
    f.close()
}

#[test]
fn fuzzed_hdf5_files_give_data_or_one_line_errors() {
    bounded("HDF5 fuzz", Duration::from_secs(180), |count| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.h5");
        let (t, v) = generate_peaks(20, 8, 5);
        write_hdf5(&p, &t, &v).unwrap();
        let valid = std::fs::read(&p).unwrap();
        let mut g = generator(13, 2);
        let start = Instant::now();
        let (mut accepted, mut total) = (0, 0);
        for i in 0..3000 {
            if start.elapsed() > Duration::from_secs(40) {
                break;
            }
            // A new name for each input: HDF5 keeps no state between them.
            let p = dir.path().join(format!("f{i}.h5"));
            if i % 3 == 0 {
                random_hdf5(&mut g, &p).unwrap();
            } else {
                // Bit flips and truncations of a valid file.
                let mut b = valid.clone();
                if i % 3 == 1 {
                    for _ in 0..1 + below(&mut g, 3) {
                        let at = below(&mut g, b.len());
                        b[at] ^= 1 << below(&mut g, 8);
                    }
                } else {
                    b.truncate(below(&mut g, b.len()));
                }
                std::fs::write(&p, &b).unwrap();
            }
            count.fetch_add(1, Ordering::SeqCst);
            total += 1;
            if read_and_check(read_hdf5, &p, &format!("HDF5 input {i}")) {
                accepted += 1;
            }
            std::fs::remove_file(&p).unwrap();
        }
        eprintln!("HDF5 fuzz: {total} inputs, {accepted} accepted");
        assert!(accepted > 0 && accepted < total);
    });
}
