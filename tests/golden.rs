//! Golden per-layer cost tables: every shipped architecture under every shipped plan.
//! A cost that changes without its file in tests/golden/ changing fails here, naming
//! the layer and the column. To accept a deliberate change, rewrite the files with
//! `EXPLORE_BLESS=1 cargo test --test golden` and commit them with the change.

use explore::spec::{profile, protocol::ProtocolTable};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ARCHS: [&str; 7] = ["cifar10", "svhn", "fashion_mnist", "secureml_mnist", "minionn_mnist", "lenet_mnist", "resnet18_cifar"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn plans(arch: &str) -> Vec<PathBuf> {
    let dir = root().join("architectures/plans").join(arch);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

/// Row-by-row differences, each naming the layer and the column.
fn differences(golden: &str, now: &str) -> Vec<String> {
    row_differences(golden, now, "layer")
}

/// Row-by-row differences, each naming the row (its first cell, a `what`) and the column.
fn row_differences(golden: &str, now: &str, what: &str) -> Vec<String> {
    let rows = |s: &str| -> Vec<Vec<String>> {
        csv::Reader::from_reader(s.as_bytes()).records().map(|r| r.unwrap().iter().map(String::from).collect()).collect()
    };
    let header: Vec<String> = now.lines().next().unwrap().split(',').map(String::from).collect();
    let (g, n) = (rows(golden), rows(now));
    let mut out = Vec::new();
    if golden.lines().next() != now.lines().next() {
        out.push(format!("columns changed: golden `{}`, now `{}`", golden.lines().next().unwrap_or(""), now.lines().next().unwrap()));
        return out;
    }
    for i in 0..g.len().max(n.len()) {
        match (g.get(i), n.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                for (col, (x, y)) in header.iter().zip(a.iter().zip(b)) {
                    if x != y {
                        out.push(format!("{what} {}: {col}: golden {x}, now {y}", b[0]));
                    }
                }
            }
            (Some(a), None) => out.push(format!("{what} {}: in the golden file, gone now", a[0])),
            (None, Some(b)) => out.push(format!("{what} {}: new, not in the golden file", b[0])),
            (None, None) => unreachable!(),
        }
    }
    out
}

#[test]
fn cost_tables_match_golden_files() {
    let bless = std::env::var_os("EXPLORE_BLESS").is_some();
    let table = ProtocolTable::securenn();
    let mut failures = Vec::new();
    for arch in ARCHS {
        let dir = root().join("tests/golden").join(arch);
        std::fs::create_dir_all(&dir).unwrap();
        let mut expected = BTreeSet::new();
        for plan in plans(arch) {
            let (report, _) = explore::app::cost::price_files(
                &root().join(format!("architectures/{arch}.toml")),
                Some(&plan),
                &table,
                None,
                &profile::builtin(),
                1,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let csv = explore::app::cost::csv(&report);
            let file = dir.join(plan.file_name().unwrap()).with_extension("csv");
            expected.insert(file.clone());
            let shown = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
            if bless {
                std::fs::write(&file, &csv).unwrap();
                continue;
            }
            match std::fs::read_to_string(&file) {
                Err(_) => failures.push(format!("{shown}: missing; run EXPLORE_BLESS=1 cargo test --test golden")),
                Ok(golden) if golden != csv => {
                    for d in differences(&golden, &csv) {
                        failures.push(format!("{shown}: {d}"));
                    }
                }
                Ok(_) => {}
            }
        }
        for stale in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            if !expected.contains(&stale) {
                if bless {
                    std::fs::remove_file(&stale).unwrap();
                } else {
                    failures.push(format!("{}: no plan produces it any more; remove it or bless", stale.display()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "cost tables differ from tests/golden (bless with EXPLORE_BLESS=1 if deliberate):\n{}",
        failures.join("\n")
    );
}

#[test]
fn differences_name_the_layer_and_column() {
    let golden = "layer,op,bits\nconv1,conv,10\nrelu1,relu,20\n";
    let now = "layer,op,bits\nconv1,conv,10\nrelu1,relu,21\n";
    assert_eq!(differences(golden, now), ["layer relu1: bits: golden 20, now 21"]);
    let _ = Path::new("");
}

/// A CSV without the columns that measure wall time (they differ run to run).
fn without_timings(text: &str) -> String {
    const TIMED: [&str; 2] = ["secure_seconds_per_image", "train_seconds"];
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let keep: Vec<usize> = (0..header.len()).filter(|&i| !TIMED.contains(&header[i].as_str())).collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(keep.iter().map(|&i| &header[i])).unwrap();
    for rec in r.records() {
        let rec = rec.unwrap();
        w.write_record(keep.iter().map(|&i| &rec[i])).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

/// The shipped sweeps without training (cost and two secure inferences per point):
/// results.csv (wall-time columns aside), pareto.csv and skipped.csv as in
/// tests/golden/sweeps/. Keys in results.csv include the crate version, so a version
/// bump is blessed like any other change.
#[test]
fn shipped_sweeps_match_golden_results() {
    let bless = std::env::var_os("EXPLORE_BLESS").is_some();
    let out = std::env::temp_dir().join(format!("explore-golden-sweeps-{}", std::process::id()));
    let mut failures = Vec::new();
    for sweep in ["cifar", "svhn", "fashion"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_explore"))
            .args(["sweep", &format!("sweeps/{sweep}.toml"), "--no-train", "--quiet", "--out-dir", out.to_str().unwrap()])
            .current_dir(root())
            .env_remove("EXPLORE_DATA")
            .output()
            .unwrap();
        assert!(o.status.success(), "{sweep}: {}", String::from_utf8_lossy(&o.stderr));
        for file in ["results.csv", "pareto.csv", "skipped.csv"] {
            let now = std::fs::read_to_string(out.join(sweep).join(file)).unwrap();
            let now = if file == "results.csv" { without_timings(&now) } else { now };
            let golden_path = root().join("tests/golden/sweeps").join(sweep).join(file);
            if bless {
                std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
                std::fs::write(&golden_path, &now).unwrap();
                continue;
            }
            let golden = std::fs::read_to_string(&golden_path).unwrap_or_else(|e| panic!("{}: {e}", golden_path.display()));
            for d in row_differences(&golden, &now, "point") {
                failures.push(format!("sweeps/{sweep}.toml {file}: {d}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    assert!(failures.is_empty(), "sweep outputs changed (EXPLORE_BLESS=1 to accept):\n{}", failures.join("\n"));
}

#[test]
fn batched_cost_tables_match_golden_files() {
    // SecureNN's batch of 128 on its networks with max pooling: weights once, the rest per image.
    let bless = std::env::var_os("EXPLORE_BLESS").is_some();
    let dir = root().join("tests/golden/batches");
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for arch in ["minionn_mnist", "lenet_mnist"] {
        let (report, _) = explore::app::cost::price_files(
            &root().join(format!("architectures/{arch}.toml")),
            None,
            &ProtocolTable::securenn(),
            None,
            &profile::builtin(),
            128,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let csv = explore::app::cost::csv(&report);
        let file = dir.join(format!("{arch}-128.csv"));
        if bless {
            std::fs::write(&file, &csv).unwrap();
            continue;
        }
        match std::fs::read_to_string(&file) {
            Err(_) => failures.push(format!("{}: missing; run EXPLORE_BLESS=1 cargo test --test golden", file.display())),
            Ok(golden) => failures.extend(differences(&golden, &csv).into_iter().map(|d| format!("{}: {d}", file.display()))),
        }
    }
    assert!(failures.is_empty(), "batched cost tables differ from tests/golden/batches:\n{}", failures.join("\n"));
}
