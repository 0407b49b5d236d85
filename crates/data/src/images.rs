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
    assert!(shape.channels == 1 && !shape.is_empty() && pixels.len().is_multiple_of(shape.len()));
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
mod tests;
