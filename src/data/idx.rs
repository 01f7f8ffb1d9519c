//! IDX files (MNIST, Fashion-MNIST): a big-endian header (magic 0x00000803 for
//! images, 0x00000801 for labels, then the sizes) and raw bytes, optionally gzipped.

use super::{Dataset, Split};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

const FILES: [&str; 4] = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))].into_iter().find(|p| p.is_file())
}

pub fn present(dir: &Path) -> bool {
    find(dir, FILES[0]).is_some()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::invalid(path, None, format!("not a valid gzip file: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Returns (count, dims, payload) after checking the magic and the length.
fn parse<'a>(path: &Path, bytes: &'a [u8], dims: usize) -> Result<(usize, Vec<usize>, &'a [u8])> {
    let head = 4 + 4 * dims;
    let magic = 0x0800 + dims;
    if bytes.len() < head || be32(bytes, 0) != magic {
        return Err(Error::invalid(path, None, format!("not an IDX file with {dims} dimension(s) (magic 0x{magic:08x})")));
    }
    let sizes: Vec<usize> = (0..dims).map(|i| be32(bytes, 4 + 4 * i)).collect();
    let want = head + sizes.iter().product::<usize>();
    if bytes.len() < want {
        return Err(Error::invalid(path, None, format!("truncated: header says {want} bytes, file has {}", bytes.len())));
    }
    Ok((sizes[0], sizes[1..].to_vec(), &bytes[head..want]))
}

fn split(dir: &Path, images: &str, labels: &str, limit: Option<usize>) -> Result<Split> {
    let missing = |stem: &str| Error::invalid(&dir.join(stem), None, "missing (looked for it with and without .gz)");
    let ip = find(dir, images).ok_or_else(|| missing(images))?;
    let lp = find(dir, labels).ok_or_else(|| missing(labels))?;
    let (ib, lb) = (read(&ip)?, read(&lp)?);
    let (n, dims, pixels) = parse(&ip, &ib, 3)?;
    let (m, _, labels) = parse(&lp, &lb, 1)?;
    if n != m {
        return Err(Error::invalid(&lp, None, format!("{m} labels for {n} images in {}", ip.display())));
    }
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        return Err(Error::invalid(&lp, None, format!("label {bad} outside 0..=9")));
    }
    let n = limit.map_or(n, |l| l.min(n));
    let per = dims[0] * dims[1];
    Ok(Split {
        images: pixels[..n * per].iter().map(|&p| p as f32 / 255.0).collect(),
        labels: labels[..n].to_vec(),
        shape: [1, dims[0], dims[1]],
    })
}

pub fn load(dir: &Path, limit: Option<usize>) -> Result<Dataset> {
    Ok(Dataset {
        name: "idx".into(),
        root: dir.to_path_buf(),
        classes: (0..10).map(|i| i.to_string()).collect(),
        train: split(dir, FILES[0], FILES[1], limit)?,
        test: split(dir, FILES[2], FILES[3], limit)?,
        mean: vec![],
        std: vec![],
    })
}
