//! Image data files: IDX (MNIST, Fashion-MNIST) and CIFAR-10 binary batches, and the
//! normalization of pixel values.
//!
//! IDX (LeCun's format, big-endian): an images file is the magic number 0x00000803
//! (unsigned bytes, 3 dimensions), then n, rows and cols as 32-bit integers, then n · rows ·
//! cols pixel bytes, image by image, each row by row; a labels file is 0x00000801, n, then n
//! label bytes. Either may be gzip-compressed: a file starting with the gzip magic bytes
//! (1f 8b) is decompressed whatever its name. The examples are 1 × rows × cols images with
//! the classes 0..9 ([`IDX_CLASSES`]; a label of 10 or more is refused).
//!
//! CIFAR-10 (binary version): a batch file is a sequence of 3073-byte records, one label byte
//! (0..9) then 3 × 32 × 32 pixel bytes, channel by channel (red, green, blue), each row by
//! row; a directory holds `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`.
//!
//! Pixels are read as their byte values 0..255 (as f64); [`normalize`] scales them. Every
//! problem is refused with one line naming the file: a missing file, a wrong magic number
//! (saying which was expected), a header declaring more data than the file holds (or less),
//! images and labels files of different counts, labels out of range, a CIFAR-10 file that is
//! not a whole number of records.

use crate::io::{require_regular_file, write_atomically};
use crate::{DataError, Dataset, ImageShape};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Classes of IDX label files (the digits 0..9 of MNIST, the ten Fashion-MNIST articles).
pub const IDX_CLASSES: usize = 10;
/// Classes of CIFAR-10.
pub const CIFAR10_CLASSES: usize = 10;
/// The shape of a CIFAR-10 image.
pub const CIFAR10_SHAPE: ImageShape = ImageShape {
    channels: 3,
    height: 32,
    width: 32,
};
/// Bytes per CIFAR-10 record: the label, then the pixels.
pub const CIFAR10_RECORD: usize = 1 + 3 * 32 * 32;
/// The magic number of an IDX file of unsigned-byte images (3 dimensions).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// The magic number of an IDX file of unsigned-byte labels (1 dimension).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

fn malformed(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A data file opened for reading: plain, or decompressed on the fly when it starts with the
/// gzip magic bytes.
struct Source {
    reader: Box<dyn Read>,
    path: PathBuf,
    gzip: bool,
    /// Bytes of the file on disk.
    stored: u64,
}

impl Source {
    fn open(path: &Path) -> Result<Source, DataError> {
        require_regular_file(path)?;
        let read_err = |error| DataError::Read {
            path: path.to_path_buf(),
            error,
        };
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        let stored = file.metadata().map_err(read_err)?.len();
        let mut head = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            match file.read(&mut head[got..]).map_err(read_err)? {
                0 => break,
                k => got += k,
            }
        }
        let gzip = got == 2 && head == GZIP_MAGIC;
        let rest = std::io::BufReader::new(file);
        let start = std::io::Cursor::new(head[..got].to_vec());
        let plain = start.chain(rest);
        let reader: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(plain))
        } else {
            Box::new(plain)
        };
        Ok(Source {
            reader,
            path: path.to_path_buf(),
            gzip,
            stored,
        })
    }

    /// "the file" or "the decompressed file", for messages.
    fn what(&self) -> &'static str {
        if self.gzip {
            "the decompressed (gzip) file"
        } else {
            "the file"
        }
    }

    fn error(&self, e: std::io::Error) -> DataError {
        if self.gzip {
            malformed(
                &self.path,
                format!("cannot decompress it (gzip data truncated or corrupt): {e}"),
            )
        } else {
            DataError::Read {
                path: self.path.clone(),
                error: e,
            }
        }
    }

    /// Up to `n` bytes (fewer only at the end of the data).
    fn take(&mut self, n: u64) -> Result<Vec<u8>, DataError> {
        // Plain files: no more than the file holds is allocated up front; gzip data grows
        // as it is decompressed, so a lying header cannot allocate without bound.
        let cap = if self.gzip { 1 << 24 } else { self.stored };
        let mut out = Vec::with_capacity(n.min(cap) as usize);
        (&mut self.reader)
            .take(n)
            .read_to_end(&mut out)
            .map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// The IDX header: the magic number (checked against `magic`, of a `kind` file) and
    /// `dims` sizes.
    fn idx_header(&mut self, magic: u32, kind: &str, dims: usize) -> Result<Vec<u64>, DataError> {
        let len = 4 * (1 + dims) as u64;
        let head = self.take(len)?;
        if head.len() < 4 {
            return Err(malformed(
                &self.path,
                format!(
                    "{} has {} bytes, too short for an IDX header (expected magic number 0x{magic:08x}, an IDX {kind} file)",
                    self.what(),
                    head.len()
                ),
            ));
        }
        let word = |i: usize| u32::from_be_bytes(head[4 * i..4 * i + 4].try_into().unwrap());
        let got = word(0);
        if got != magic {
            let hint = match got {
                IDX_IMAGES_MAGIC => " (that of an IDX images file)".to_string(),
                IDX_LABELS_MAGIC => " (that of an IDX labels file)".to_string(),
                _ if self.gzip => String::new(),
                _ => " (not an IDX file of unsigned bytes)".to_string(),
            };
            let of = if self.gzip {
                " of the decompressed data"
            } else {
                ""
            };
            return Err(malformed(
                &self.path,
                format!(
                    "magic number{of} 0x{got:08x}{hint}, expected 0x{magic:08x} (an IDX {kind} file)"
                ),
            ));
        }
        if head.len() < len as usize {
            return Err(malformed(
                &self.path,
                format!(
                    "{} ends inside the IDX header ({} of its {len} bytes)",
                    self.what(),
                    head.len()
                ),
            ));
        }
        Ok((1..=dims).map(|i| word(i) as u64).collect())
    }

    /// Exactly `n` bytes of data after the header (`what` describes them), and nothing more.
    fn body(&mut self, n: u64, what: &str) -> Result<Vec<u8>, DataError> {
        let data = self.take(n)?;
        if (data.len() as u64) < n {
            return Err(malformed(
                &self.path,
                format!(
                    "truncated: the header declares {what} ({n} bytes), but {} holds only {} bytes after the header",
                    self.what(),
                    data.len()
                ),
            ));
        }
        let extra = self.take(1)?;
        if !extra.is_empty() {
            return Err(malformed(
                &self.path,
                format!(
                    "{} holds more bytes than the header declares ({what}, {n} bytes after the header)",
                    self.what()
                ),
            ));
        }
        Ok(data)
    }
}

/// Reads an IDX images file (plain or gzip): the pixel bytes, image after image, and the
/// shape of an image (1 × rows × cols).
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, ImageShape), DataError> {
    let mut src = Source::open(path)?;
    let dims = src.idx_header(IDX_IMAGES_MAGIC, "images", 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if n == 0 || rows == 0 || cols == 0 {
        return Err(malformed(
            path,
            format!("the header declares {n} images of {rows} × {cols} pixels: no data"),
        ));
    }
    // Each size is below 2^32, their product below 2^96: in u128, then at most u64::MAX
    // (more than any file holds, so such a header is reported as truncated).
    let bytes = (n as u128 * rows as u128 * cols as u128).min(u64::MAX as u128) as u64;
    let pixels = src.body(bytes, &format!("{n} images of {rows} × {cols} pixels"))?;
    let shape = ImageShape {
        channels: 1,
        height: rows as usize,
        width: cols as usize,
    };
    Ok((pixels, shape))
}

/// Reads an IDX labels file (plain or gzip): one byte per item.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut src = Source::open(path)?;
    let n = src.idx_header(IDX_LABELS_MAGIC, "labels", 1)?[0];
    if n == 0 {
        return Err(malformed(path, "the header declares 0 labels: no data"));
    }
    src.body(n, &format!("{n} labels"))
}

/// Labels as classes below `classes`, refusing any other (`what` names the items).
fn class_labels(
    path: &Path,
    raw: &[u8],
    classes: usize,
    what: &str,
) -> Result<Vec<usize>, DataError> {
    match raw.iter().position(|&l| l as usize >= classes) {
        Some(i) => Err(malformed(
            path,
            format!(
                "label {} of {what} {i} is outside 0..{classes} (the classes 0..{})",
                raw[i],
                classes - 1
            ),
        )),
        None => Ok(raw.iter().map(|&l| l as usize).collect()),
    }
}

/// Reads an IDX pair of images and labels files (each plain or gzip) as a classification
/// set of 1 × rows × cols images with [`IDX_CLASSES`] classes; features are the byte values
/// 0..255.
pub fn read_idx(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let (pixels, shape) = read_idx_images(images)?;
    let raw = read_idx_labels(labels)?;
    let n = pixels.len() / shape.len();
    if raw.len() != n {
        return Err(malformed(
            labels,
            format!(
                "{} labels, but the images file {} holds {n} images",
                raw.len(),
                images.display()
            ),
        ));
    }
    let labels = class_labels(labels, &raw, IDX_CLASSES, "item")?;
    let features = pixels.iter().map(|&p| f64::from(p)).collect();
    Dataset::labelled(features, labels, shape.len(), IDX_CLASSES)
        .with_image(Some(shape))
        .map_err(|e| malformed(images, e))
}

/// Writes an IDX images file (plain, atomically): `pixels` holds the images one after
/// another, each `shape.height` × `shape.width` bytes (one channel).
pub fn write_idx_images(path: &Path, pixels: &[u8], shape: ImageShape) -> Result<(), DataError> {
    assert!(shape.channels == 1 && !shape.is_empty() && pixels.len() % shape.len() == 0);
    let n = pixels.len() / shape.len();
    let mut out = Vec::with_capacity(16 + pixels.len());
    for word in [
        IDX_IMAGES_MAGIC,
        n as u32,
        shape.height as u32,
        shape.width as u32,
    ] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    write_bytes(path, &out)
}

/// Writes an IDX labels file (plain, atomically).
pub fn write_idx_labels(path: &Path, labels: &[u8]) -> Result<(), DataError> {
    let mut out = Vec::with_capacity(8 + labels.len());
    for word in [IDX_LABELS_MAGIC, labels.len() as u32] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(labels);
    write_bytes(path, &out)
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    write_atomically(path, |tmp| {
        let werr = |error| DataError::Write {
            path: tmp.to_path_buf(),
            error,
        };
        let mut f = std::fs::File::create(tmp).map_err(werr)?;
        f.write_all(bytes).map_err(werr)?;
        f.flush().map_err(werr)
    })
}

/// Reads one CIFAR-10 binary batch file: a classification set of 3 × 32 × 32 images with
/// [`CIFAR10_CLASSES`] classes; features are the byte values 0..255.
pub fn read_cifar10_batch(path: &Path) -> Result<Dataset, DataError> {
    let mut src = Source::open(path)?;
    let stored = src.stored;
    if src.gzip {
        return Err(malformed(
            path,
            "is gzip-compressed; CIFAR-10 batches are read as the uncompressed .bin files of the binary version",
        ));
    }
    if stored == 0 || stored % CIFAR10_RECORD as u64 != 0 {
        return Err(malformed(
            path,
            format!(
                "is {stored} bytes, not a whole number of {CIFAR10_RECORD}-byte CIFAR-10 records (1 label byte + 3 × 32 × 32 pixel bytes){}",
                if stored > 0 {
                    format!(": {} records and {} bytes over", stored / CIFAR10_RECORD as u64, stored % CIFAR10_RECORD as u64)
                } else {
                    String::new()
                }
            ),
        ));
    }
    let n = (stored / CIFAR10_RECORD as u64) as usize;
    let bytes = src.body(stored, &format!("{n} records"))?;
    let mut raw = Vec::with_capacity(n);
    let mut features = Vec::with_capacity(n * (CIFAR10_RECORD - 1));
    for rec in bytes.chunks_exact(CIFAR10_RECORD) {
        raw.push(rec[0]);
        features.extend(rec[1..].iter().map(|&p| f64::from(p)));
    }
    let labels = class_labels(path, &raw, CIFAR10_CLASSES, "record")?;
    Dataset::labelled(features, labels, CIFAR10_SHAPE.len(), CIFAR10_CLASSES)
        .with_image(Some(CIFAR10_SHAPE))
        .map_err(|e| malformed(path, e))
}

/// Reads a CIFAR-10 directory: (training set, validation set) = (the batches
/// `data_batch_1.bin` … `data_batch_5.bin` that are present, in that order; `test_batch.bin`).
/// At least one training batch and the test batch must be there.
pub fn read_cifar10(dir: &Path) -> Result<(Dataset, Dataset), DataError> {
    let meta = std::fs::metadata(dir).map_err(|error| DataError::Read {
        path: dir.to_path_buf(),
        error,
    })?;
    if !meta.is_dir() {
        return Err(DataError::Directory {
            path: dir.to_path_buf(),
            message: "is not a directory (data.path of a CIFAR-10 set names the directory holding data_batch_1.bin … data_batch_5.bin and test_batch.bin)".into(),
        });
    }
    let mut train: Option<Dataset> = None;
    for i in 1..=5 {
        let p = dir.join(format!("data_batch_{i}.bin"));
        if !p.exists() {
            continue;
        }
        let b = read_cifar10_batch(&p)?;
        match &mut train {
            None => train = Some(b),
            Some(t) => {
                t.features.extend_from_slice(&b.features);
                t.labels.extend_from_slice(&b.labels);
            }
        }
    }
    let train = train.ok_or_else(|| DataError::Directory {
        path: dir.to_path_buf(),
        message: "holds none of data_batch_1.bin … data_batch_5.bin (the CIFAR-10 binary version's training batches)".into(),
    })?;
    let val = read_cifar10_batch(&dir.join("test_batch.bin"))?;
    Ok((train, val))
}

/// How pixel values (features) are scaled before training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalization {
    /// The values as read.
    None,
    /// x / 255: byte values 0..255 to [0, 1].
    Unit,
    /// x / 255, then per channel (c − mean_c) / std_c with the mean and (population)
    /// standard deviation of the channel over the training set; data without an image shape
    /// counts every feature as a channel. A channel of zero spread is only centred.
    Standard,
}

/// The per-channel statistics [`Normalization::Standard`] used (of the values after / 255).
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizeStats {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// Scales the features of `train` and `val` as `how` says (the statistics of `Standard`
/// come from `train` alone and apply to both, and are returned).
pub fn normalize(
    train: &mut Dataset,
    val: &mut Dataset,
    how: Normalization,
) -> Option<NormalizeStats> {
    if how == Normalization::None {
        return None;
    }
    for x in train.features.iter_mut().chain(val.features.iter_mut()) {
        *x /= 255.0;
    }
    if how == Normalization::Unit {
        return None;
    }
    let (channels, pixels) = match train.image {
        Some(s) => (s.channels, s.pixels()),
        None => (train.dim, 1),
    };
    let mut mean = vec![0.0; channels];
    let mut std = vec![0.0; channels];
    let count = (train.len() * pixels) as f64;
    if count > 0.0 {
        for j in 0..train.len() {
            for (c, values) in train.example(j).chunks_exact(pixels).enumerate() {
                mean[c] += values.iter().sum::<f64>();
            }
        }
        for m in &mut mean {
            *m /= count;
        }
        for j in 0..train.len() {
            for (c, values) in train.example(j).chunks_exact(pixels).enumerate() {
                std[c] += values.iter().map(|x| (x - mean[c]).powi(2)).sum::<f64>();
            }
        }
        for s in &mut std {
            *s = (*s / count).sqrt();
        }
    }
    let scale: Vec<f64> = std
        .iter()
        .map(|&s| if s > 0.0 && s.is_finite() { s } else { 1.0 })
        .collect();
    for set in [&mut *train, &mut *val] {
        let dim = set.dim;
        if dim == 0 {
            continue;
        }
        for example in set.features.chunks_exact_mut(dim) {
            for (c, values) in example.chunks_exact_mut(pixels).enumerate() {
                for x in values {
                    *x = (*x - mean[c]) / scale[c];
                }
            }
        }
    }
    Some(NormalizeStats { mean, std })
}

#[cfg(test)]
mod tests {
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
            e.contains(
                "magic number of the decompressed data 0x00000801 (that of an IDX labels file)"
            ),
            "{e}"
        );
        // A header declaring 2^32 − 1 images (nothing is allocated for them).
        fs::write(&cut, idx_images(u32::MAX, 1000, 1000, &[1, 2, 3])).unwrap();
        assert!(refusal(read_idx_images(&cut), &cut).contains("truncated"));
        // More bytes than the header declares.
        let mut long = labels.clone();
        long.push(1);
        fs::write(&cut, &long).unwrap();
        assert!(
            refusal(read_idx_labels(&cut), &cut).contains("more bytes than the header declares")
        );
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
}
