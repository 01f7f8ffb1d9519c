//! Datasets as they sit on disk: IDX files (MNIST, Fashion-MNIST; gzipped or not),
//! the CIFAR-10 binary release (folder or .tar.gz), SVHN's MATLAB files, and image
//! class folders (`train/<class>/*.jpg|png`, the torchvision ImageFolder
//! convention, classes in alphabetical order). Images become f32 in [0, 1],
//! normalised per channel with the training split's mean and standard deviation.

mod cifar;
mod folder;
mod idx;
mod svhn;

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// One split of a dataset: images in [N, C, H, W] order, one label each.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    /// [C, H, W]
    pub shape: [usize; 3],
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The first `n` images (all when `n` is larger).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.images.truncate(n * self.image_len());
        self.labels.truncate(n);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub train: Split,
    pub test: Split,
    /// Per-channel mean and standard deviation of the training images (before
    /// normalisation), applied to both splits.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// Where Debian's `dataset-fashion-mnist` package puts Fashion-MNIST.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The directory to read: `--data`, else `$EXPLORE_DATA`, else (for 28x28 grey
/// networks) the Debian package's location.
pub fn locate(explicit: Option<&Path>, input_shape: &[usize]) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("EXPLORE_DATA") {
        return Some(PathBuf::from(p));
    }
    (input_shape == [1, 28, 28] && Path::new(DEBIAN_FASHION_MNIST).is_dir()).then(|| PathBuf::from(DEBIAN_FASHION_MNIST))
}

/// Loads the dataset in `dir`, recognised by its files, keeping at most `limit`
/// images per split, checks it against the network's input shape, and normalises
/// it with the training split's per-channel statistics.
pub fn load(dir: &Path, limit: Option<usize>, input_shape: &[usize]) -> Result<Dataset> {
    let mut ds = load_raw(dir, limit, input_shape)?;
    let (mean, std) = channel_stats(&ds.train);
    normalise_with(&mut ds, &mean, &std);
    Ok(ds)
}

/// Loads without normalising (pixels in [0, 1]).
pub fn load_raw(dir: &Path, limit: Option<usize>, input_shape: &[usize]) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(Error::invalid(dir, None, "dataset directory not found"));
    }
    let ds = if idx::present(dir) {
        idx::load(dir, limit)?
    } else if cifar::present(dir) {
        cifar::load(dir, limit)?
    } else if svhn::present(dir) {
        svhn::load(dir, limit)?
    } else if dir.join("train").is_dir() || dir.join("test").is_dir() {
        folder::load(dir, limit, input_shape.first().copied().unwrap_or(3))?
    } else {
        return Err(Error::invalid(
            dir,
            None,
            "no dataset recognised: expected IDX files (train-images-idx3-ubyte[.gz]), CIFAR-10 batches (data_batch_1.bin or cifar-10-binary.tar.gz), SVHN (train_32x32.mat) or image class folders (train/<class>/*.jpg, test/<class>/*.jpg)",
        ));
    };
    if ds.train.is_empty() && ds.test.is_empty() {
        return Err(Error::invalid(dir, None, "the dataset holds no images (0 training, 0 test)"));
    }
    if ds.train.shape[..] != input_shape[..] {
        return Err(Error::invalid(dir, None, format!("images are {:?}, the network's input is {input_shape:?}", ds.train.shape)));
    }
    Ok(ds)
}

/// At most `limit` images per split, normalised with `stats` (a checkpoint's input
/// mean and standard deviation) or, without them, with the test images' own.
pub fn load_normalised(dir: &Path, limit: usize, input_shape: &[usize], stats: Option<(Vec<f32>, Vec<f32>)>) -> Result<Dataset> {
    let mut ds = load_raw(dir, Some(limit), input_shape)?;
    if ds.test.is_empty() {
        return Err(Error::invalid(dir, None, "the dataset holds no test images"));
    }
    let (mean, std) = stats.unwrap_or_else(|| channel_stats(&ds.test));
    normalise_with(&mut ds, &mean, &std);
    Ok(ds)
}

/// The dataset normalised with other statistics (a checkpoint's): each value back to
/// its pixel, then through the new mean and standard deviation. A warm start on a
/// subset (`--limit`) sees its images as the checkpoint's training did.
pub fn renormalised(ds: &Dataset, mean: &[f32], std: &[f32]) -> Dataset {
    let mut out = ds.clone();
    map_values(&mut out, |ch, v| (v * ds.std[ch] + ds.mean[ch] - mean[ch]) / std[ch]);
    out.mean = mean.to_vec();
    out.std = std.to_vec();
    out
}

/// Applies `f(channel, value)` to every value of both splits.
fn map_values(ds: &mut Dataset, f: impl Fn(usize, f32) -> f32) {
    let [c, h, w] = ds.train.shape;
    let plane = h * w;
    for split in [&mut ds.train, &mut ds.test] {
        for (i, v) in split.images.iter_mut().enumerate() {
            *v = f((i / plane) % c, *v);
        }
    }
}

/// Per-channel mean and standard deviation of a split.
pub fn channel_stats(split: &Split) -> (Vec<f32>, Vec<f32>) {
    let [c, h, w] = split.shape;
    let plane = h * w;
    let (mut mean, mut std) = (vec![0f32; c], vec![0f32; c]);
    for ch in 0..c {
        let (mut s, mut s2, mut n) = (0f64, 0f64, 0f64);
        for i in 0..split.len() {
            for &v in &split.image(i)[ch * plane..(ch + 1) * plane] {
                s += v as f64;
                s2 += (v as f64) * (v as f64);
                n += 1.0;
            }
        }
        let m = s / n.max(1.0);
        mean[ch] = m as f32;
        std[ch] = ((s2 / n.max(1.0) - m * m).max(1e-12)).sqrt() as f32;
    }
    (mean, std)
}

/// Normalises both splits with the given statistics (a checkpoint's, or the train split's).
pub fn normalise_with(ds: &mut Dataset, mean: &[f32], std: &[f32]) {
    map_values(ds, |ch, v| (v - mean[ch]) / std[ch]);
    ds.mean = mean.to_vec();
    ds.std = std.to_vec();
}

#[cfg(test)]
pub(crate) mod testdata {
    //! Small datasets written by the tests themselves.
    use std::io::Write;
    use std::path::{Path, PathBuf};

    pub fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("explore-data-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// IDX files of `n` 28x28 images per split whose pixel values encode the label.
    pub fn write_idx(dir: &Path, n: usize, gz: bool) {
        for (prefix, count) in [("train", n), ("t10k", n / 2)] {
            let mut images = vec![0, 0, 8, 3];
            images.extend((count as u32).to_be_bytes());
            images.extend(28u32.to_be_bytes());
            images.extend(28u32.to_be_bytes());
            let mut labels = vec![0, 0, 8, 1];
            labels.extend((count as u32).to_be_bytes());
            for i in 0..count {
                let label = (i % 10) as u8;
                labels.push(label);
                images.extend((0..784).map(|p| if p % 10 == label as usize { 255 } else { (p % 7) as u8 }));
            }
            for (kind, bytes) in [("images-idx3", images), ("labels-idx1", labels)] {
                let name = format!("{prefix}-{kind}-ubyte");
                if gz {
                    let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
                    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
                    e.write_all(&bytes).unwrap();
                    e.finish().unwrap();
                } else {
                    std::fs::write(dir.join(name), bytes).unwrap();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_plain_and_gzipped_load_the_same_and_normalise() {
        let (a, b) = (testdata::dir("idx-gz"), testdata::dir("idx-plain"));
        testdata::write_idx(&a, 40, true);
        testdata::write_idx(&b, 40, false);
        let da = load(&a, None, &[1, 28, 28]).unwrap();
        let db = load(&b, Some(30), &[1, 28, 28]).unwrap();
        assert_eq!(da.train.len(), 40);
        assert_eq!(da.test.len(), 20);
        assert_eq!(db.train.len(), 30);
        assert_eq!(&da.train.labels[..30], &db.train.labels[..]);
        assert_eq!(da.classes.len(), 10);
        let mean: f32 = da.train.images.iter().sum::<f32>() / da.train.images.len() as f32;
        assert!(mean.abs() < 1e-4, "{mean}");
    }

    #[test]
    fn renormalising_equals_normalising_the_pixels_with_the_other_statistics() {
        let d = testdata::dir("idx-renorm");
        testdata::write_idx(&d, 40, false);
        let own = load(&d, None, &[1, 28, 28]).unwrap();
        let (mean, std) = (vec![own.mean[0] + 0.1], vec![own.std[0] * 2.0]);
        let mut direct = load_raw(&d, None, &[1, 28, 28]).unwrap();
        normalise_with(&mut direct, &mean, &std);
        let converted = renormalised(&own, &mean, &std);
        assert_eq!((&converted.mean, &converted.std), (&mean, &std));
        for (a, b) in [(&converted.train, &direct.train), (&converted.test, &direct.test)] {
            let worst = a.images.iter().zip(&b.images).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "{worst}");
        }
    }

    #[test]
    fn mistakes_name_the_file() {
        let d = testdata::dir("idx-bad");
        testdata::write_idx(&d, 20, false);
        let f = d.join("train-images-idx3-ubyte");
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..1000]).unwrap();
        let e = load(&d, None, &[1, 28, 28]).unwrap_err().to_string();
        assert!(e.contains("train-images-idx3-ubyte") && e.contains("truncated"), "{e}");
        let e = load(&testdata::dir("empty"), None, &[1, 28, 28]).unwrap_err().to_string();
        assert!(e.contains("no dataset recognised"), "{e}");
        testdata::write_idx(&d, 20, false);
        let e = load(&d, None, &[3, 32, 32]).unwrap_err().to_string();
        assert!(e.contains("the network's input is [3, 32, 32]"), "{e}");
    }
}
