//! The official CIFAR-10 binary release: `data_batch_1.bin` ... `data_batch_5.bin` and
//! `test_batch.bin`, each record one label byte and 3,072 pixel bytes (the red, green
//! and blue 32x32 planes: already [C, H, W]); in a `cifar-10-batches-bin/` folder or
//! read straight from the `cifar-10-binary.tar.gz` archive.

use super::{Dataset, Split};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

const RECORD: usize = 1 + 3072;
const TRAIN: [&str; 5] = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
const TEST: &str = "test_batch.bin";
const CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The folder holding the batches, if `dir` is or contains one.
fn batches_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("cifar-10-batches-bin")].into_iter().find(|d| d.join(TEST).is_file())
}

fn archive(dir: &Path) -> Option<PathBuf> {
    Some(dir.join("cifar-10-binary.tar.gz")).filter(|p| p.is_file())
}

pub fn present(dir: &Path) -> bool {
    batches_dir(dir).is_some() || archive(dir).is_some()
}

fn parse(path: &Path, bytes: &[u8], limit: usize, split: &mut Split) -> Result<()> {
    if !bytes.len().is_multiple_of(RECORD) {
        return Err(Error::invalid(path, None, format!("truncated: {} bytes is not a whole number of {RECORD}-byte records", bytes.len())));
    }
    for rec in bytes.chunks_exact(RECORD) {
        if split.len() >= limit {
            break;
        }
        if rec[0] > 9 {
            return Err(Error::invalid(path, None, format!("label {} outside 0..=9", rec[0])));
        }
        split.labels.push(rec[0]);
        split.images.extend(rec[1..].iter().map(|&p| p as f32 / 255.0));
    }
    Ok(())
}

pub fn load(dir: &Path, limit: Option<usize>) -> Result<Dataset> {
    let limit = limit.unwrap_or(usize::MAX);
    let empty = || Split { images: vec![], labels: vec![], shape: [3, 32, 32] };
    let (mut train, mut test) = (empty(), empty());
    let files: HashMap<String, (PathBuf, Vec<u8>)> = match batches_dir(dir) {
        Some(b) => TRAIN
            .iter()
            .chain([&TEST])
            .map(|name| {
                let p = b.join(name);
                let bytes = std::fs::read(&p).map_err(|source| Error::Read { path: p.clone(), source })?;
                Ok((name.to_string(), (p, bytes)))
            })
            .collect::<Result<_>>()?,
        None => {
            let path = archive(dir).ok_or_else(|| Error::invalid(dir, None, "no CIFAR-10 batches"))?;
            let file = std::fs::File::open(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
            let mut files = HashMap::new();
            let bad = |e: std::io::Error| Error::invalid(&path, None, format!("cannot read the archive: {e}"));
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
            for entry in tar.entries().map_err(bad)? {
                let mut entry = entry.map_err(bad)?;
                let name = entry.path().map_err(bad)?.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if TRAIN.contains(&name.as_str()) || name == TEST {
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).map_err(bad)?;
                    files.insert(name.clone(), (path.join(&name), bytes));
                }
            }
            files
        }
    };
    for name in TRAIN.iter().chain([&TEST]) {
        let (p, bytes) = files.get(*name).ok_or_else(|| Error::invalid(&dir.join(name), None, "missing from the CIFAR-10 release"))?;
        if *name == TEST {
            parse(p, bytes, limit, &mut test)?;
        } else {
            parse(p, bytes, limit, &mut train)?;
        }
    }
    Ok(Dataset {
        name: "cifar-10-binary".into(),
        root: dir.to_path_buf(),
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        train,
        test,
        mean: vec![],
        std: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn batch(n: usize, offset: u8) -> Vec<u8> {
        (0..n).flat_map(|i| std::iter::once((i % 10) as u8).chain((0..3072).map(move |p| ((p + i) % 251) as u8 ^ offset))).collect()
    }

    #[test]
    fn reads_folders_and_the_tar_gz_alike() {
        let root = crate::data::testdata::dir("cifar");
        let folder = root.join("cifar-10-batches-bin");
        std::fs::create_dir_all(&folder).unwrap();
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (i, name) in TRAIN.iter().chain([&TEST]).enumerate() {
            let bytes = batch(4, i as u8);
            std::fs::write(folder.join(name), &bytes).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append_data(&mut h, format!("cifar-10-batches-bin/{name}"), &bytes[..]).unwrap();
        }
        let gz = builder.into_inner().unwrap().finish().unwrap();
        let from_folder = load(&root, None).unwrap();
        assert_eq!((from_folder.train.len(), from_folder.test.len()), (20, 4));
        let only_archive = crate::data::testdata::dir("cifar-tgz");
        std::fs::File::create(only_archive.join("cifar-10-binary.tar.gz")).unwrap().write_all(&gz).unwrap();
        let from_archive = load(&only_archive, Some(6)).unwrap();
        assert_eq!(from_archive.train.len(), 6);
        assert_eq!(from_archive.train.images[..], from_folder.train.images[..6 * 3072]);
        assert_eq!(from_archive.classes[9], "truck");
        std::fs::write(folder.join(TEST), &batch(2, 0)[..3000]).unwrap();
        let e = load(&root, None).unwrap_err().to_string();
        assert!(e.contains("test_batch.bin") && e.contains("truncated"), "{e}");
    }
}
