//! Property test: the shipped architecture, plan and sweep files, mutated (a line
//! dropped or doubled, a number replaced by a negative, zero or huge one, a value by
//! a string, the file cut short), never make `explore` panic or hang: it succeeds, or
//! exits 2 with one line that starts with `error:`.
//!
//! Cases are bounded (PROPTEST_CASES, default 100 per file kind) and each run has a
//! deadline, so the test takes seconds in CI.

use proptest::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One change to a TOML text.
#[derive(Debug, Clone)]
enum Mutation {
    DropLine(usize),
    DoubleLine(usize),
    /// Replace the n-th number with this one.
    Number(usize, i128),
    /// Replace the n-th value after `=` with a string.
    Text(usize, String),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let numbers = prop_oneof![
        Just(0i128),
        Just(-1),
        Just(-3),
        Just(1),
        Just(64),
        Just(100_000),
        Just(1_000_000_000),
        Just(1 << 40),
        Just(i64::MAX as i128)
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::DropLine),
        any::<usize>().prop_map(Mutation::DoubleLine),
        (any::<usize>(), numbers).prop_map(|(i, v)| Mutation::Number(i, v)),
        (any::<usize>(), "[a-z]{0,6}").prop_map(|(i, s)| Mutation::Text(i, s)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let lines: Vec<&str> = text.lines().collect();
    match m {
        Mutation::DropLine(i) => {
            let i = i % lines.len();
            lines.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, l)| format!("{l}\n")).collect()
        }
        Mutation::DoubleLine(i) => {
            let i = i % lines.len();
            lines.iter().enumerate().flat_map(|(j, l)| if j == i { vec![*l, *l] } else { vec![*l] }).map(|l| format!("{l}\n")).collect()
        }
        Mutation::Number(i, v) => {
            // Numbers outside comments and strings: runs of digits after `=`, `[` or `,`.
            let spans: Vec<(usize, usize)> = number_spans(text);
            if spans.is_empty() {
                return text.to_string();
            }
            let (a, b) = spans[i % spans.len()];
            format!("{}{v}{}", &text[..a], &text[b..])
        }
        Mutation::Text(i, s) => {
            let values: Vec<usize> = text.match_indices("= ").map(|(at, _)| at + 2).collect();
            if values.is_empty() {
                return text.to_string();
            }
            let at = values[i % values.len()];
            let end = text[at..].find('\n').map_or(text.len(), |e| at + e);
            format!("{}\"{s}\"{}", &text[..at], &text[end..])
        }
        Mutation::Truncate(i) => {
            let mut at = i % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text[..at].to_string()
        }
    }
}

fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    for (start, line) in text.lines().scan(0usize, |pos, l| {
        let s = *pos;
        *pos += l.len() + 1;
        Some((s, l))
    }) {
        if line.trim_start().starts_with('#') || !line.contains('=') {
            continue;
        }
        let bytes = line.as_bytes();
        let mut i = line.find('=').unwrap_or(0);
        while i < bytes.len() {
            if bytes[i] == b'"' || bytes[i] == b'#' {
                break;
            }
            if bytes[i].is_ascii_digit() {
                let j = (i..bytes.len()).find(|&j| !(bytes[j].is_ascii_digit() || bytes[j] == b'.')).unwrap_or(bytes.len());
                spans.push((start + i, start + j));
                i = j;
            } else {
                i += 1;
            }
        }
    }
    spans
}

/// Runs explore with a deadline; returns (exit code, stderr).
fn explore(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_explore"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status.code(), err);
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("explore {} did not finish in 60 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Success, or exit 2 with one `error:` line; never a panic (101) or a signal.
fn check(args: &[&str], input: &str) {
    let (code, err) = explore(args);
    match code {
        Some(0) => {}
        Some(2) => {
            let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
            assert!(
                lines.len() == 1 && lines[0].starts_with("error: "),
                "explore {}: not one error line:\n{err}\ninput:\n{input}",
                args.join(" ")
            );
        }
        other => panic!("explore {} exited {other:?}:\n{err}\ninput:\n{input}", args.join(" ")),
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("explore-fuzz-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config() -> ProptestConfig {
    // Deterministic: the same cases on every run and machine (PROPTEST_CASES for more).
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100),
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_architectures_fail_cleanly(file in 0usize..4, m in mutation()) {
        let name = ["cifar10", "svhn", "fashion_mnist", "cifar10_bn"][file];
        let text = apply(&std::fs::read_to_string(root().join(format!("architectures/{name}.toml"))).unwrap(), &m);
        let arch = write(&scratch("arch"), "arch.toml", &text);
        check(&["cost", &arch], &text);
        check(&["simulate", &arch, "--max-memory", "300M"], &text);
    }

    #[test]
    fn mutated_plans_fail_cleanly(file in 0usize..6, m in mutation()) {
        let plan = ["uniform-3x3", "fc-noise", "clusters-8x8-8", "shafran-partial", "layer1-only", "noise"][file];
        let text = apply(&std::fs::read_to_string(root().join(format!("architectures/plans/cifar10/{plan}.toml"))).unwrap(), &m);
        let dir = scratch("plan");
        // A clusters plan names its assignment relative to itself.
        let _ = std::fs::copy(root().join("architectures/plans/cifar10/clusters-8x8-8.safetensors"), dir.join("clusters-8x8-8.safetensors"));
        let path = write(&dir, "plan.toml", &text);
        check(&["cost", "architectures/cifar10.toml", "--plan", &path], &text);
    }

    #[test]
    fn mutated_sweeps_fail_cleanly(file in 0usize..3, m in mutation()) {
        let name = ["cifar", "svhn", "fashion"][file];
        let text = apply(&std::fs::read_to_string(root().join(format!("sweeps/{name}.toml"))).unwrap(), &m);
        // Paths in the sweep are relative to it: keep it in sweeps/'s place.
        let dir = scratch("sweep");
        let text = text.replace("\"../", &format!("\"{}/", root().display()));
        let path = write(&dir, "sweep.toml", &text);
        let out = dir.join("out");
        check(&["sweep", &path, "--samples", "0", "--no-train", "--quiet", "--max-memory", "2G", "--out-dir", out.to_str().unwrap()], &text);
    }
}
