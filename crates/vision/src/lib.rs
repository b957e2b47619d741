//! Image data for genocnn's 2D path: MNIST's IDX files (plain or gzip) and
//! CIFAR-10's binary batches, checked as they are read. Every error names
//! the file and what was expected.

pub mod augment;
pub mod preview;

use std::io::Read;
use std::path::{Path, PathBuf};

/// A failure to read an image data set.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, VisionError>;

fn invalid(path: &Path, message: impl Into<String>) -> VisionError {
    VisionError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads a whole file, inflating it when it starts with the gzip magic bytes.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| VisionError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| invalid(path, format!("the gzip data cannot be inflated: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// An IDX array of unsigned bytes: its dimensions and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (type 0x08), plain or gzipped.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let b = read_maybe_gz(path)?;
    if b.len() < 4 {
        return Err(invalid(
            path,
            format!(
                "an IDX file starts with a 4-byte magic number; the file has {} bytes",
                b.len()
            ),
        ));
    }
    if b[0] != 0 || b[1] != 0 || b[2] != 0x08 || b[3] == 0 || b[3] > 4 {
        return Err(invalid(
            path,
            format!(
                "bad IDX magic number {:02x} {:02x} {:02x} {:02x}: expected 00 00 08 (unsigned bytes) and 1–4 dimensions",
                b[0], b[1], b[2], b[3]
            ),
        ));
    }
    let ndim = b[3] as usize;
    let header = 4 + 4 * ndim;
    if b.len() < header {
        return Err(invalid(
            path,
            format!("the header needs {header} bytes; the file has {}", b.len()),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|k| {
            u32::from_be_bytes([b[4 + 4 * k], b[5 + 4 * k], b[6 + 4 * k], b[7 + 4 * k]]) as usize
        })
        .collect();
    let shape = || {
        dims.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" × ")
    };
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            invalid(
                path,
                format!(
                    "the header's dimensions {} multiply past any file size; the header is corrupt",
                    shape()
                ),
            )
        })?;
    if b.len() - header != n {
        return Err(invalid(
            path,
            format!(
                "the header promises {} = {n} values, but the file holds {}",
                shape(),
                b.len() - header
            ),
        ));
    }
    Ok(Idx {
        dims,
        data: b[header..].to_vec(),
    })
}

/// Images and labels of one split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    /// n × channels × height × width bytes.
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images of the classes `keep` only, in their order, relabelled
    /// 0, 1, … in the order of `keep` (`[5, 6, 7]`: label 5 becomes 0).
    pub fn select_classes(&self, keep: &[u8]) -> ImageSet {
        let size = self.channels * self.height * self.width;
        let mut out = ImageSet {
            images: Vec::new(),
            labels: Vec::new(),
            channels: self.channels,
            height: self.height,
            width: self.width,
        };
        for (i, &l) in self.labels.iter().enumerate() {
            if let Some(k) = keep.iter().position(|&c| c == l) {
                out.images
                    .extend_from_slice(&self.images[i * size..(i + 1) * size]);
                out.labels.push(k as u8);
            }
        }
        out
    }
}

/// Parses a list of classes: `5,6,7`, `5-9`, or both (`0-2,7`). Each class
/// is below `classes`, and none is given twice.
pub fn parse_classes(text: &str, classes: usize) -> std::result::Result<Vec<u8>, String> {
    let bad = |why: String| format!("--classes {text}: {why}");
    let num = |s: &str| -> std::result::Result<usize, String> {
        let v: usize = s
            .trim()
            .parse()
            .map_err(|_| bad(format!("'{}' is not a class number", s.trim())))?;
        if v >= classes {
            return Err(bad(format!(
                "class {v} does not exist (the data set has classes 0–{})",
                classes - 1
            )));
        }
        Ok(v)
    };
    let mut out: Vec<u8> = Vec::new();
    for part in text.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let v = num(part)?;
                (v, v)
            }
        };
        if a > b {
            return Err(bad(format!("the range {a}-{b} runs backwards")));
        }
        for c in a..=b {
            if out.contains(&(c as u8)) {
                return Err(bad(format!("class {c} is given twice")));
            }
            out.push(c as u8);
        }
    }
    if out.len() < 2 {
        return Err(bad("a classifier needs at least 2 classes".into()));
    }
    Ok(out)
}

/// Reads an MNIST split: `PREFIX-images-idx3-ubyte[.gz]` and `PREFIX-labels-idx1-ubyte[.gz]` in `dir`.
pub fn read_mnist(dir: &Path, prefix: &str) -> Result<ImageSet> {
    let find = |kind: &str| {
        let base = dir.join(format!("{prefix}-{kind}"));
        let gz = PathBuf::from(format!("{}.gz", base.display()));
        if base.exists() {
            base
        } else {
            gz
        }
    };
    let (ip, lp) = (find("images-idx3-ubyte"), find("labels-idx1-ubyte"));
    let images = read_idx(&ip)?;
    let labels = read_idx(&lp)?;
    if images.dims.len() != 3 {
        return Err(invalid(
            &ip,
            format!(
                "expected 3 dimensions (count × rows × columns), found {}",
                images.dims.len()
            ),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(invalid(
            &lp,
            format!("expected 1 dimension (count), found {}", labels.dims.len()),
        ));
    }
    if images.dims[0] == 0 {
        return Err(invalid(&ip, "the file holds no images (its count is 0)"));
    }
    if images.dims[1] == 0 || images.dims[2] == 0 {
        return Err(invalid(
            &ip,
            format!(
                "images of {} × {} pixels; expected rows and columns of at least 1",
                images.dims[1], images.dims[2]
            ),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(invalid(
            &lp,
            format!(
                "{} labels for the {} images of {}",
                labels.dims[0],
                images.dims[0],
                ip.display()
            ),
        ));
    }
    if let Some(k) = labels.data.iter().position(|&l| l > 9) {
        return Err(invalid(
            &lp,
            format!("label {k} is {}; MNIST labels are 0–9", labels.data[k]),
        ));
    }
    Ok(ImageSet {
        images: images.data,
        labels: labels.data,
        channels: 1,
        height: images.dims[1],
        width: images.dims[2],
    })
}

/// Reads CIFAR-10 binary batches: records of one label byte then 3072
/// pixel bytes (1024 red, 1024 green, 1024 blue; 32 × 32, row-major).
pub fn read_cifar(paths: &[PathBuf]) -> Result<ImageSet> {
    const REC: usize = 1 + 3072;
    let mut set = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        channels: 3,
        height: 32,
        width: 32,
    };
    for p in paths {
        let b = read_maybe_gz(p)?;
        if b.is_empty() || b.len() % REC != 0 {
            return Err(invalid(p, format!("{} bytes is not a whole number of 3073-byte CIFAR-10 records (1 label + 3072 pixels)", b.len())));
        }
        for (k, rec) in b.chunks_exact(REC).enumerate() {
            if rec[0] > 9 {
                return Err(invalid(
                    p,
                    format!("record {k} has label {}; CIFAR-10 labels are 0–9", rec[0]),
                ));
            }
            set.labels.push(rec[0]);
            set.images.extend_from_slice(&rec[1..]);
        }
    }
    Ok(set)
}

/// Writes an IDX file of unsigned bytes (for subsets and tests).
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8], gzip: bool) -> Result<()> {
    let mut b = vec![0u8, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    b.extend_from_slice(data);
    let bytes = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut enc, &b).map_err(|e| VisionError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        enc.finish().map_err(|e| VisionError::Io {
            path: path.to_path_buf(),
            source: e,
        })?
    } else {
        b
    };
    std::fs::write(path, bytes).map_err(|e| VisionError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Writes images (n × 3 × 32 × 32 bytes) and labels as one CIFAR-10 binary
/// batch: per record, the label byte then the 3072 pixel bytes.
pub fn write_cifar(path: &Path, images: &[u8], labels: &[u8]) -> Result<()> {
    if images.len() != labels.len() * 3072 {
        return Err(invalid(
            path,
            format!(
                "{} pixel bytes for {} labels; CIFAR-10 records hold 3072 each",
                images.len(),
                labels.len()
            ),
        ));
    }
    let mut b = Vec::with_capacity(labels.len() * 3073);
    for (k, &l) in labels.iter().enumerate() {
        b.push(l);
        b.extend_from_slice(&images[k * 3072..(k + 1) * 3072]);
    }
    std::fs::write(path, b).map_err(|e| VisionError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}
