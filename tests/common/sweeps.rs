//! Helpers for the sweep, shard and Slurm tests: a small sweep, running the CLI, and
//! comparing a sweep's outputs.
#![allow(dead_code)] // each test file uses some of them

use super::explore;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A small warm-started sweep over the Fashion-MNIST network: the original trained
/// once, three patch points and a cluster point fine-tuned from it, two secure samples
/// each, and one grid point too large for the map (skipped).
pub fn write_sweep(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = format!(
        r#"name = "{name}"
architecture = "{root}/architectures/fashion_mnist.toml"
[train]
epochs = 1
batch_size = 32
lr = 0.05
{extra}
[simulate]
samples = 2
[[point]]
plan = "{root}/architectures/plans/fashion_mnist/original.toml"
[[grid]]
name = "patch"
layers = ["relu1"]
group = "patch"
patch = [4, 7, 14, 56]
decision = "center"
[[grid]]
name = "clusters"
layers = ["relu1"]
group = "clusters"
window = 7
clusters = 4
"#
    );
    let f = dir.join(format!("{name}.toml"));
    std::fs::write(&f, text).unwrap();
    f
}

pub const WARM: &str = "init = \"original\"\nfinetune_epochs = 1";

pub fn sweep_args(sweep: &Path, data: &Path, store: &Path, shard: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = ["sweep", sweep.to_str().unwrap(), "--data", data.to_str().unwrap(), "--store", store.to_str().unwrap(), "-q"]
        .map(String::from)
        .to_vec();
    if let Some(s) = shard {
        a.extend(["--shard".into(), s.into()]);
    }
    a
}

pub fn spawn(args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_explore"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("EXPLORE_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn run_ok(args: &[&str]) -> String {
    let o = explore(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `computed` and `reused` from a sweep's, shard's or merge's closing line.
pub fn stages(stdout: &str) -> (usize, usize) {
    let line = stdout.lines().find(|l| l.contains("stages computed")).unwrap_or_else(|| panic!("{stdout}"));
    let num = |before: &str| -> usize { line[..line.find(before).unwrap()].split_whitespace().last().unwrap().parse().unwrap() };
    (num(" stages computed"), num(" reused"))
}

/// results.csv without the columns that are measured wall time.
pub fn results_without_timings(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let keep: Vec<usize> =
        (0..header.len()).filter(|&i| !["secure_seconds_per_image", "train_seconds"].contains(&header[i].as_str())).collect();
    let mut out = vec![keep.iter().map(|&i| header[i].clone()).collect::<Vec<_>>()];
    for rec in r.records() {
        let rec = rec.unwrap();
        out.push(keep.iter().map(|&i| rec[i].to_string()).collect());
    }
    out
}

pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(_) => vec![],
    };
    out.sort();
    out
}

/// The outputs of two sweep folders are the same: results.csv but for wall times,
/// pareto.csv, skipped.csv and every plot file byte for byte.
pub fn assert_same_outputs(a: &Path, b: &Path) {
    assert_eq!(results_without_timings(&a.join("results.csv")), results_without_timings(&b.join("results.csv")));
    for f in ["pareto.csv", "skipped.csv"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f}");
    }
    let (pa, pb) = (files(&a.join("plots")), files(&b.join("plots")));
    assert!(!pa.is_empty());
    assert_eq!(
        pa.iter().map(|p| p.file_name().unwrap()).collect::<Vec<_>>(),
        pb.iter().map(|p| p.file_name().unwrap()).collect::<Vec<_>>()
    );
    for (x, y) in pa.iter().zip(&pb) {
        assert!(std::fs::read(x).unwrap() == std::fs::read(y).unwrap(), "{} differs", x.display());
    }
}
