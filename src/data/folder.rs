//! Image class folders: `root/{train,test}/<class>/*.{jpg,jpeg,png}`. Classes are the
//! train split's folder names in alphabetical order (torchvision's ImageFolder), so
//! for CIFAR-10 they match the official label order.

use super::{Dataset, Split};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

fn classes(split: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(split)
        .map_err(|source| Error::Read { path: split.to_path_buf(), source })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(Error::invalid(split, None, "no class folders"));
    }
    Ok(names)
}

fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Read { path: dir.to_path_buf(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Reads one split. With a limit, takes images round-robin across classes so that a
/// small subset still has every class.
fn split(dir: &Path, classes: &[String], limit: Option<usize>, channels: usize) -> Result<Split> {
    let per_class: Vec<Vec<PathBuf>> = classes.iter().map(|c| files(&dir.join(c))).collect::<Result<_>>()?;
    let total: usize = per_class.iter().map(Vec::len).sum();
    let n = limit.map_or(total, |l| l.min(total));
    let mut picks = Vec::with_capacity(n);
    let mut round = 0;
    while picks.len() < n {
        for (label, list) in per_class.iter().enumerate() {
            if let Some(p) = list.get(round)
                && picks.len() < n
            {
                picks.push((p.clone(), label as u8));
            }
        }
        round += 1;
    }
    let decoded: Vec<(Vec<f32>, [usize; 3])> = picks
        .par_iter()
        .map(|(path, _)| {
            let img = image::open(path).map_err(|e| Error::invalid(path, None, format!("cannot decode image: {e}")))?;
            let (w, h) = (img.width() as usize, img.height() as usize);
            let pixels: Vec<f32> = if channels == 1 {
                img.to_luma8().into_raw().into_iter().map(|p| p as f32 / 255.0).collect()
            } else {
                // HWC bytes to CHW floats.
                let rgb = img.to_rgb8().into_raw();
                (0..3).flat_map(|c| (0..h * w).map(move |i| (c, i))).map(|(c, i)| rgb[i * 3 + c] as f32 / 255.0).collect()
            };
            Ok((pixels, [channels, h, w]))
        })
        .collect::<Result<_>>()?;
    let shape = decoded.first().map_or([channels, 0, 0], |d| d.1);
    if let Some(((_, s), (p, _))) = decoded.iter().zip(&picks).find(|((_, s), _)| *s != shape) {
        return Err(Error::invalid(p, None, format!("image is {s:?}, others are {shape:?}")));
    }
    Ok(Split { images: decoded.into_iter().flat_map(|d| d.0).collect(), labels: picks.iter().map(|p| p.1).collect(), shape })
}

/// Reads `root/train` and `root/test`. A folder with `test/` alone is a test set (a
/// few images shipped to run a trained network on): its training split is empty.
pub fn load(root: &Path, limit: Option<usize>, channels: usize) -> Result<Dataset> {
    let (train_dir, test_dir) = (root.join("train"), root.join("test"));
    if !test_dir.is_dir() {
        return Err(Error::invalid(&test_dir, None, "missing: image folders need test/ (and train/ to train)"));
    }
    let classes = classes(if train_dir.is_dir() { &train_dir } else { &test_dir })?;
    let test = split(&test_dir, &classes, limit, channels)?;
    let train = if train_dir.is_dir() {
        split(&train_dir, &classes, limit, channels)?
    } else {
        Split { images: vec![], labels: vec![], shape: test.shape }
    };
    Ok(Dataset { name: "image-folders".into(), root: root.to_path_buf(), train, test, classes, mean: vec![], std: vec![] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_give_alphabetical_classes_and_chw_pixels() {
        let root = crate::data::testdata::dir("folders");
        for split in ["train", "test"] {
            for (k, class) in ["cat", "airplane"].iter().enumerate() {
                let d = root.join(split).join(class);
                std::fs::create_dir_all(&d).unwrap();
                for i in 0..3 {
                    let img = image::RgbImage::from_fn(4, 2, |x, _| image::Rgb([(k * 200) as u8, x as u8 * 10, i * 50]));
                    img.save(d.join(format!("{i}.png"))).unwrap();
                }
            }
        }
        let ds = crate::data::load(&root, Some(4), &[3, 2, 4]).unwrap();
        assert_eq!(ds.classes, ["airplane", "cat"]);
        assert_eq!(ds.train.len(), 4);
        assert_eq!(ds.train.labels, [0, 1, 0, 1]);
        // The green channel of a pixel at x = 3 is 30 / 255 before normalisation.
        let raw = split(&root.join("train"), &ds.classes, Some(1), 3).unwrap();
        assert_eq!(raw.image(0)[8 + 3], 30.0 / 255.0);
        // Without train/, a test set: the same test images, no training ones.
        std::fs::remove_dir_all(root.join("train")).unwrap();
        let test_only = crate::data::load_raw(&root, Some(4), &[3, 2, 4]).unwrap();
        assert_eq!((test_only.train.len(), test_only.test.len()), (0, 4));
        assert_eq!(test_only.classes, ["airplane", "cat"]);
    }
}
