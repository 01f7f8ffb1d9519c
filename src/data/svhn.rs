//! SVHN cropped digits (`train_32x32.mat`, `test_32x32.mat`): MATLAB level-5 files
//! holding `X` (uint8, 32 x 32 x 3 x N, column-major) and `y` (N x 1, labels 1..10,
//! where 10 means the digit 0). A minimal MAT v5 reader: compressed (zlib) and plain
//! elements, numeric arrays of any storage type.

use super::{Dataset, Split};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

const FILES: [&str; 2] = ["train_32x32.mat", "test_32x32.mat"];

pub fn present(dir: &Path) -> bool {
    dir.join(FILES[0]).is_file()
}

/// A numeric array: its name, dimensions and values.
struct Array {
    name: String,
    dims: Vec<usize>,
    values: Vec<f64>,
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads one data element at `at`: (type, payload, offset of the next element).
fn element(b: &[u8], at: usize) -> std::result::Result<(u32, &[u8], usize), String> {
    if at + 8 > b.len() {
        return Err("truncated element tag".into());
    }
    let first = u32le(b, at);
    if first >> 16 != 0 {
        // Small element: type and size share the first word, data in the next four bytes.
        let (ty, n) = (first & 0xffff, (first >> 16) as usize);
        return Ok((ty, &b[at + 4..at + 4 + n.min(4)], at + 8));
    }
    let n = u32le(b, at + 4) as usize;
    let end = at + 8 + n;
    if end > b.len() {
        return Err(format!("truncated: an element of {n} bytes runs past the end of the file"));
    }
    // Compressed elements are not padded; others pad to 8 bytes.
    let next = if first == 15 { end } else { end.div_ceil(8) * 8 };
    Ok((first, &b[at + 8..end], next))
}

fn numbers(ty: u32, d: &[u8]) -> std::result::Result<Vec<f64>, String> {
    Ok(match ty {
        1 => d.iter().map(|&v| v as i8 as f64).collect(),
        2 => d.iter().map(|&v| v as f64).collect(),
        3 => d.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        4 => d.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        5 => d.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        6 => d.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        7 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        9 => d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        12 => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64).collect(),
        13 => d.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")) as f64).collect(),
        other => return Err(format!("unsupported numeric storage type {other}")),
    })
}

/// Parses a miMATRIX payload: flags, dimensions, name, real part.
fn matrix(p: &[u8]) -> std::result::Result<Array, String> {
    let (_, _, at) = element(p, 0)?; // array flags
    let (_, dims, at) = element(p, at)?;
    let dims: Vec<usize> = dims.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let (_, name, at) = element(p, at)?;
    let (ty, real, _) = element(p, at)?;
    Ok(Array { name: String::from_utf8_lossy(name).into_owned(), dims, values: numbers(ty, real)? })
}

fn arrays(b: &[u8]) -> std::result::Result<Vec<Array>, String> {
    if b.len() < 128 || &b[126..128] != b"IM" {
        return Err("not a little-endian MATLAB level-5 file (v7.3 HDF5 files are not supported)".into());
    }
    let mut out = Vec::new();
    let mut at = 128;
    while at < b.len() {
        let (ty, payload, next) = element(b, at)?;
        match ty {
            14 => out.push(matrix(payload)?),
            15 => {
                let mut inner = Vec::new();
                flate2::read::ZlibDecoder::new(payload).read_to_end(&mut inner).map_err(|e| format!("bad compressed element: {e}"))?;
                let (ty, payload, _) = element(&inner, 0)?;
                if ty == 14 {
                    out.push(matrix(payload)?);
                }
            }
            _ => {}
        }
        at = next;
    }
    Ok(out)
}

fn split(path: &Path, limit: usize) -> Result<Split> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let bad = |m: String| Error::invalid(path, None, m);
    let arrays = arrays(&bytes).map_err(bad)?;
    let get = |name: &str| arrays.iter().find(|a| a.name == name).ok_or_else(|| bad(format!("no variable \"{name}\"")));
    let (x, y) = (get("X")?, get("y")?);
    if x.dims.len() != 4 || x.dims[..3] != [32, 32, 3] {
        return Err(bad(format!("X is {:?}, expected 32 x 32 x 3 x N", x.dims)));
    }
    let n = x.dims[3];
    if y.values.len() != n || x.values.len() != n * 3072 {
        return Err(bad(format!("{} labels and {} pixel values for {n} images", y.values.len(), x.values.len())));
    }
    let n = n.min(limit);
    let mut images = Vec::with_capacity(n * 3072);
    for i in 0..n {
        for ch in 0..3 {
            for r in 0..32 {
                for c in 0..32 {
                    // Column-major: row fastest, then column, channel, image.
                    images.push(x.values[r + 32 * c + 1024 * ch + 3072 * i] as f32 / 255.0);
                }
            }
        }
    }
    let labels = y.values[..n]
        .iter()
        .map(|&l| match l as u8 {
            10 => Ok(0),
            d @ 1..=9 => Ok(d),
            _ => Err(bad(format!("label {l} outside 1..=10"))),
        })
        .collect::<Result<_>>()?;
    Ok(Split { images, labels, shape: [3, 32, 32] })
}

pub fn load(dir: &Path, limit: Option<usize>) -> Result<Dataset> {
    let limit = limit.unwrap_or(usize::MAX);
    Ok(Dataset {
        name: "svhn".into(),
        root: dir.to_path_buf(),
        classes: (0..10).map(|d| d.to_string()).collect(),
        train: split(&dir.join(FILES[0]), limit)?,
        test: split(&dir.join(FILES[1]), limit)?,
        mean: vec![],
        std: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tag(ty: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = ty.to_le_bytes().to_vec();
        v.extend((payload.len() as u32).to_le_bytes());
        v.extend(payload);
        while !v.len().is_multiple_of(8) {
            v.push(0);
        }
        v
    }

    fn mat_matrix(name: &str, dims: &[i32], ty: u32, data: &[u8]) -> Vec<u8> {
        let mut p = tag(6, &[6u8, 0, 0, 0, 0, 0, 0, 0]);
        p.extend(tag(5, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<_>>()));
        p.extend(tag(1, name.as_bytes()));
        p.extend(tag(ty, data));
        tag(14, &p)
    }

    /// A MAT v5 file: X compressed (uint8), y plain (double), as MATLAB writes them.
    fn write_mat(path: &Path, n: usize) {
        let mut b = vec![b' '; 116];
        b.extend([0u8; 8]);
        b.extend([0x00, 0x01]);
        b.extend(b"IM");
        let x: Vec<u8> = (0..n * 3072).map(|i| (i % 256) as u8).collect();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&mat_matrix("X", &[32, 32, 3, n as i32], 2, &x)).unwrap();
        let compressed = z.finish().unwrap();
        b.extend(15u32.to_le_bytes());
        b.extend((compressed.len() as u32).to_le_bytes());
        b.extend(compressed);
        let y: Vec<u8> = (0..n).flat_map(|i| (((i % 10) + 1) as f64).to_le_bytes()).collect();
        b.extend(mat_matrix("y", &[n as i32, 1], 9, &y));
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn reads_matlab_v5_with_column_major_pixels_and_label_10_as_0() {
        let d = crate::data::testdata::dir("svhn");
        write_mat(&d.join(FILES[0]), 12);
        write_mat(&d.join(FILES[1]), 5);
        let ds = load(&d, Some(10)).unwrap();
        assert_eq!((ds.train.len(), ds.test.len()), (10, 5));
        assert_eq!(&ds.train.labels[..], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 0]);
        // Pixel (channel 0, row 1, column 0) of image 0 is X[1] = 1; (row 0, column 1) is X[32] = 32.
        assert_eq!(ds.train.image(0)[32], 1.0 / 255.0);
        assert_eq!(ds.train.image(0)[1], 32.0 / 255.0);
        std::fs::write(d.join(FILES[1]), b"MATLAB 7.3 MAT-file").unwrap();
        let e = load(&d, None).unwrap_err().to_string();
        assert!(e.contains("test_32x32.mat") && e.contains("level-5"), "{e}");
    }
}
