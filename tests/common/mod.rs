//! Helpers shared by the end-to-end tests: run the binary, write small datasets.
#![allow(dead_code)] // each test file uses some of them

pub mod sweeps;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn explore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_explore"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("EXPLORE_DATA")
        .output()
        .unwrap()
}

/// Runs a command that must succeed and parses its JSON output.
pub fn explore_json(args: &[&str]) -> serde_json::Value {
    let o = explore(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Fashion-MNIST-shaped IDX files (gzipped): class k has a bright vertical band at
/// column block k, plus noise, so a small net learns it in an epoch.
pub fn write_idx(dir: &Path, train: usize, test: usize) {
    let mut seed = 12345u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 60) as u8
    };
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let mut images = vec![0, 0, 8, 3];
        images.extend((n as u32).to_be_bytes());
        images.extend(28u32.to_be_bytes());
        images.extend(28u32.to_be_bytes());
        let mut labels = vec![0, 0, 8, 1];
        labels.extend((n as u32).to_be_bytes());
        for i in 0..n {
            let k = (i % 10) as u8;
            labels.push(k);
            for p in 0..784 {
                let col = p % 28;
                images.push(if col / 3 == k as usize { 180 } else { 0 } + rand());
            }
        }
        for (kind, bytes) in [("images-idx3", images), ("labels-idx1", labels)] {
            let f = std::fs::File::create(dir.join(format!("{prefix}-{kind}-ubyte.gz"))).unwrap();
            let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap();
        }
    }
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("explore-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
