//! IDX and CIFAR-10 image files and the normalization: round trips and malformed files.

use super::*;
use std::fs;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An IDX images file's bytes: header (magic, n, rows, cols) then `pixels`.
fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for w in [IDX_IMAGES_MAGIC, n, rows, cols] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

fn idx_labels(n: u32, labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for w in [IDX_LABELS_MAGIC, n] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out.extend_from_slice(labels);
    out
}

/// Three 2 × 3 images with pixels 0, 1, … and labels 7, 0, 9.
fn tiny() -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..18).map(|i| (i * 15) as u8).collect();
    (idx_images(3, 2, 3, &pixels), idx_labels(3, &[7, 0, 9]))
}

/// The error of `r`, checked to be one line naming `path`.
fn refusal<T: std::fmt::Debug>(r: Result<T, DataError>, path: &Path) -> String {
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains(&*path.to_string_lossy()) && !e.contains('\n'),
        "{e}"
    );
    e
}

#[test]
fn idx_files_are_read_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = tiny();
    let (pi, pl) = (dir.path().join("img"), dir.path().join("lab"));
    fs::write(&pi, &images).unwrap();
    fs::write(&pl, &labels).unwrap();
    let plain = read_idx(&pi, &pl).unwrap();
    assert_eq!(plain.len(), 3);
    assert_eq!(plain.dim, 6);
    assert_eq!(plain.classes, 10);
    assert_eq!(plain.labels, [7, 0, 9]);
    assert_eq!(
        plain.image,
        Some(ImageShape {
            channels: 1,
            height: 2,
            width: 3
        })
    );
    // Image 1, row 1, column 2 is pixel 6 + 3 + 2 = 11 of the file: 165.
    assert_eq!(plain.example(1)[3 + 2], 165.0);
    assert_eq!(
        plain.example(2),
        &[180.0, 195.0, 210.0, 225.0, 240.0, 255.0]
    );
    // Gzip is recognized by its magic bytes, whatever the name (and a `.gz` name does
    // not make a plain file gzip).
    let (gi, gl) = (dir.path().join("img.idx"), dir.path().join("lab.gz"));
    fs::write(&gi, gzip(&images)).unwrap();
    fs::write(&gl, &labels).unwrap();
    assert_eq!(read_idx(&gi, &gl).unwrap(), plain);
    fs::write(&gl, gzip(&labels)).unwrap();
    assert_eq!(read_idx(&gi, &gl).unwrap(), plain);
    // The writers give back the same files.
    let (wi, wl) = (dir.path().join("w-img"), dir.path().join("w-lab"));
    let (pixels, shape) = read_idx_images(&pi).unwrap();
    write_idx_images(&wi, &pixels, shape).unwrap();
    write_idx_labels(&wl, &[7, 0, 9]).unwrap();
    assert_eq!(fs::read(&wi).unwrap(), images);
    assert_eq!(fs::read(&wl).unwrap(), labels);
}

#[test]
fn idx_problems_are_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = tiny();
    let (pi, pl) = (dir.path().join("img"), dir.path().join("lab"));
    fs::write(&pi, &images).unwrap();
    fs::write(&pl, &labels).unwrap();
    // Missing file.
    let nope = dir.path().join("nope-idx");
    let e = refusal(read_idx(&nope, &pl), &nope);
    assert!(e.contains("cannot read data file"), "{e}");
    // Swapped files: wrong magic numbers, saying which was expected.
    let e = refusal(read_idx(&pl, &pi), &pl);
    assert!(
            e.contains("magic number 0x00000801 (that of an IDX labels file), expected 0x00000803 (an IDX images file)"),
            "{e}"
        );
    let e = refusal(read_idx_labels(&pi), &pi);
    assert!(
        e.contains("magic number 0x00000803 (that of an IDX images file), expected 0x00000801"),
        "{e}"
    );
    let junk = dir.path().join("junk");
    fs::write(&junk, b"P5\n28 28\n255\n....").unwrap();
    let e = refusal(read_idx_images(&junk), &junk);
    assert!(
        e.contains("magic number 0x50350a32 (not an IDX file"),
        "{e}"
    );
    fs::write(&junk, [0u8, 0]).unwrap();
    assert!(refusal(read_idx_images(&junk), &junk).contains("too short for an IDX header"));
    fs::write(&junk, &images[..10]).unwrap();
    assert!(refusal(read_idx_images(&junk), &junk).contains("ends inside the IDX header"));
    // Truncated: the header says 3 images of 2 × 3, the file holds 17 pixel bytes.
    let cut = dir.path().join("cut");
    fs::write(&cut, &images[..images.len() - 1]).unwrap();
    let e = refusal(read_idx_images(&cut), &cut);
    assert!(
            e.contains("truncated: the header declares 3 images of 2 × 3 pixels (18 bytes), but the file holds only 17 bytes"),
            "{e}"
        );
    fs::write(&cut, gzip(&labels[..9])).unwrap();
    let e = refusal(read_idx_labels(&cut), &cut);
    assert!(
        e.contains(
            "declares 3 labels (3 bytes), but the decompressed (gzip) file holds only 1 bytes"
        ),
        "{e}"
    );
    // A gzip stream cut short, and a gzip file holding the wrong kind of data.
    let gz = gzip(&images);
    fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let e = refusal(read_idx_images(&cut), &cut);
    assert!(
        e.contains("cannot decompress it (gzip data truncated or corrupt)"),
        "{e}"
    );
    fs::write(&cut, gzip(&labels)).unwrap();
    let e = refusal(read_idx_images(&cut), &cut);
    assert!(
        e.contains("magic number of the decompressed data 0x00000801 (that of an IDX labels file)"),
        "{e}"
    );
    // A header declaring 2^32 − 1 images (nothing is allocated for them).
    fs::write(&cut, idx_images(u32::MAX, 1000, 1000, &[1, 2, 3])).unwrap();
    assert!(refusal(read_idx_images(&cut), &cut).contains("truncated"));
    // More bytes than the header declares.
    let mut long = labels.clone();
    long.push(1);
    fs::write(&cut, &long).unwrap();
    assert!(refusal(read_idx_labels(&cut), &cut).contains("more bytes than the header declares"));
    // No images.
    fs::write(&cut, idx_images(0, 28, 28, &[])).unwrap();
    assert!(refusal(read_idx_images(&cut), &cut).contains("no data"));
    // Images and labels of different counts.
    let two = dir.path().join("two");
    fs::write(&two, idx_labels(2, &[1, 2])).unwrap();
    let e = refusal(read_idx(&pi, &two), &two);
    assert!(
        e.contains(&format!(
            "2 labels, but the images file {} holds 3 images",
            pi.display()
        )),
        "{e}"
    );
    // A label beyond the ten classes.
    fs::write(&two, idx_labels(3, &[1, 10, 2])).unwrap();
    let e = refusal(read_idx(&pi, &two), &two);
    assert!(
        e.contains("label 10 of item 1 is outside 0..10 (the classes 0..9)"),
        "{e}"
    );
    // A directory is not a file.
    let e = refusal(read_idx(&pi, dir.path()), dir.path());
    assert!(e.contains("not a regular file"), "{e}");
}

/// A CIFAR-10 batch's bytes: one record per label, pixel p of record r = r + p (mod 256).
fn cifar(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (r, &l) in labels.iter().enumerate() {
        out.push(l);
        out.extend((0..3072).map(|p| ((r + p) % 256) as u8));
    }
    out
}

#[test]
fn cifar10_batches_are_read() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("data_batch_1.bin"), cifar(&[3, 9])).unwrap();
    fs::write(dir.path().join("data_batch_3.bin"), cifar(&[0])).unwrap();
    fs::write(dir.path().join("test_batch.bin"), cifar(&[5, 1, 2])).unwrap();
    let (train, val) = read_cifar10(dir.path()).unwrap();
    assert_eq!(train.labels, [3, 9, 0]);
    assert_eq!(val.labels, [5, 1, 2]);
    for set in [&train, &val] {
        assert_eq!(set.dim, 3072);
        assert_eq!(set.classes, 10);
        assert_eq!(set.image, Some(CIFAR10_SHAPE));
    }
    // Channel-major: record 1 (of batch 1), green (channel 1), row 2, column 5.
    let at = 1024 + 2 * 32 + 5;
    assert_eq!(train.example(1)[at], ((1 + at) % 256) as f64);
    assert_eq!(train.example(2)[0], 0.0);
    assert_eq!(val.example(2)[3071], ((2 + 3071) % 256) as f64);
}

#[test]
fn cifar10_problems_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No training batches.
    let e = read_cifar10(d).unwrap_err().to_string();
    assert!(
        e.contains("holds none of data_batch_1.bin") && !e.contains('\n'),
        "{e}"
    );
    // A training batch but no test batch: the missing file is named.
    fs::write(d.join("data_batch_2.bin"), cifar(&[1])).unwrap();
    let test = d.join("test_batch.bin");
    let e = refusal(read_cifar10(d), &test);
    assert!(e.contains("cannot read data file"), "{e}");
    // A record size that does not fit.
    let mut bad = cifar(&[1, 2]);
    bad.pop();
    fs::write(&test, &bad).unwrap();
    let e = refusal(read_cifar10(d), &test);
    assert!(
            e.contains("is 6145 bytes, not a whole number of 3073-byte CIFAR-10 records (1 label byte + 3 × 32 × 32 pixel bytes): 1 records and 3072 bytes over"),
            "{e}"
        );
    fs::write(&test, b"").unwrap();
    assert!(refusal(read_cifar10(d), &test).contains("is 0 bytes"));
    // A label beyond the ten classes.
    fs::write(&test, cifar(&[1, 12])).unwrap();
    let e = refusal(read_cifar10(d), &test);
    assert!(e.contains("label 12 of record 1 is outside 0..10"), "{e}");
    // data.path naming a file, not the directory.
    let e = refusal(read_cifar10(&test), &test);
    assert!(e.contains("is not a directory"), "{e}");
    let e = refusal(read_cifar10(&d.join("gone")), &d.join("gone"));
    assert!(e.contains("cannot read data file"), "{e}");
}

#[test]
fn normalization_scales_by_255_and_standardizes_per_channel() {
    let shape = ImageShape {
        channels: 2,
        height: 1,
        width: 2,
    };
    // Two examples: channel 0 pixels (0, 255), (255, 0); channel 1 pixels all 51.
    let make = || {
        Dataset::labelled(
            vec![0.0, 255.0, 51.0, 51.0, 255.0, 0.0, 51.0, 51.0],
            vec![0, 1],
            4,
            2,
        )
        .with_image(Some(shape))
        .unwrap()
    };
    let (mut t, mut v) = (make(), make());
    assert_eq!(normalize(&mut t, &mut v, Normalization::None), None);
    assert_eq!(t, make());
    assert_eq!(normalize(&mut t, &mut v, Normalization::Unit), None);
    assert_eq!(t.example(0), &[0.0, 1.0, 0.2, 0.2]);
    assert_eq!(v, t);
    let (mut t, mut v) = (make(), make());
    v.features[0] = 510.0;
    let stats = normalize(&mut t, &mut v, Normalization::Standard).unwrap();
    assert_eq!(stats.mean, [0.5, 0.2]);
    assert_eq!(stats.std, [0.5, 0.0]);
    // Channel 0 to ±1; channel 1 (no spread) only centred; val with train's statistics.
    assert_eq!(t.example(0), &[-1.0, 1.0, 0.0, 0.0]);
    assert_eq!(t.example(1), &[1.0, -1.0, 0.0, 0.0]);
    assert_eq!(v.example(0), &[3.0, 1.0, 0.0, 0.0]);
    // Without an image shape every feature is a channel.
    let mut t = Dataset::labelled(vec![0.0, 10.0, 255.0, 10.0], vec![0, 1], 2, 2);
    let mut v = t.clone();
    let stats = normalize(&mut t, &mut v, Normalization::Standard).unwrap();
    assert_eq!(stats.mean.len(), 2);
    assert_eq!(t.features, [-1.0, 0.0, 1.0, 0.0]);
}

#[test]
fn the_image_shape_survives_batching_and_splitting() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = tiny();
    let (pi, pl) = (dir.path().join("img"), dir.path().join("lab"));
    fs::write(&pi, images).unwrap();
    fs::write(&pl, labels).unwrap();
    let set = read_idx(&pi, &pl).unwrap();
    let shape = set.image;
    let mut batch = Dataset::default();
    set.gather(&[2, 0], &mut batch);
    assert_eq!(batch.image, shape);
    let mut shuffled = set.clone();
    shuffled.shuffle(&mut crate::rng::generator(1, 2));
    assert_eq!(shuffled.image, shape);
    let (a, b) = set.split_tail(1);
    assert_eq!((a.image, b.image), (shape, shape));
    assert!(a.clone().with_image(Some(CIFAR10_SHAPE)).is_err());
    assert_eq!(a.with_image(None).unwrap().image, None);
}
