//! The layers of `src/lib.rs` hold: every `crate::` (and `super::` reaching the crate
//! root) path in `src/` names a module its own module may import. An upward or
//! sideways edge fails with the file, the line and the edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import (directly; `error` is everyone's).
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("allocator", &[]),
    ("spec", &["error"]),
    ("graph", &["spec", "error"]),
    ("cost", &["graph", "spec", "error"]),
    ("mpc", &["spec", "error"]),
    ("data", &["error"]),
    ("infer", &["mpc", "graph", "spec", "error"]),
    ("train", &["infer", "data", "mpc", "graph", "spec", "error"]),
    ("simulate", &["cost", "infer", "data", "mpc", "graph", "spec", "error"]),
    ("search", &["simulate", "train", "cost", "infer", "data", "mpc", "graph", "spec", "error"]),
    ("sweep", &["search", "simulate", "train", "cost", "infer", "data", "mpc", "graph", "spec", "error"]),
    ("report", &["error"]),
    ("plot", &["error"]),
    ("app", &["report", "plot", "search", "sweep", "simulate", "train", "cost", "infer", "data", "mpc", "graph", "spec", "error"]),
];

/// The module path of a file under `src/`: `src/cost/actions.rs` -> [cost, actions].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The top-level modules a source file refers to, with line numbers: `crate::x`,
/// `use crate::{x, y}`, and `super::` chains that climb to the crate root.
fn references(module: &[String], text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                // `crate::{a, b::c}`: each item's first segment.
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && name != "self" {
                        out.push((i + 1, name));
                    }
                }
            } else {
                let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push((i + 1, name));
                }
            }
            rest = &rest[at + "crate::".len()..];
        }
        // `super::super::x` from [a, b] reaches the root and names x.
        let mut rest = code;
        while let Some(at) = rest.find("super::") {
            let mut tail = &rest[at..];
            let mut ups = 0;
            while let Some(t) = tail.strip_prefix("super::") {
                ups += 1;
                tail = t;
            }
            // Inside `mod tests` the first `super` is the file's own module.
            let depth = module.len() + usize::from(code.contains("use super::") && text.contains("mod tests"));
            if ups >= depth {
                let name: String = tail.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push((i + 1, name));
                }
            }
            rest = &rest[at + "super::".len() * ups..];
        }
    }
    out
}

/// Every edge that `ALLOWED` does not allow: `file:line: from -> to`.
fn violations(files: &[(PathBuf, String)]) -> Vec<String> {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED.iter().map(|(m, deps)| (*m, deps.iter().copied().collect())).collect();
    let mut bad = Vec::new();
    for (rel, text) in files {
        let module = module_path(rel);
        let Some(top) = module.first() else { continue };
        let Some(ok) = allowed.get(top.as_str()) else {
            bad.push(format!("src/{}: module \"{top}\" is not in the layer table", rel.display()));
            continue;
        };
        for (line, to) in references(&module, text) {
            if to != *top && !ok.contains(to.as_str()) {
                bad.push(format!("src/{}:{line}: {top} -> {to}", rel.display()));
            }
        }
    }
    bad
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

fn crate_sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    // lib.rs declares the modules and main.rs is the binary: neither is a layer.
    files.retain(|(rel, _)| rel != Path::new("lib.rs") && rel != Path::new("main.rs"));
    files
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let files = crate_sources();
    assert!(files.len() > 40, "found only {} source files", files.len());
    let bad = violations(&files);
    assert!(bad.is_empty(), "imports against the layers of src/lib.rs:\n{}", bad.join("\n"));
}

#[test]
fn the_table_itself_has_no_cycle() {
    // Each module's allowed imports come earlier in the table.
    for (i, (module, deps)) in ALLOWED.iter().enumerate() {
        for d in *deps {
            let j = ALLOWED.iter().position(|(m, _)| m == d).unwrap_or_else(|| panic!("{module} allows unknown {d}"));
            assert!(j < i, "{module} allows {d}, which comes later");
        }
    }
}

#[test]
fn an_upward_import_is_caught() {
    let mut files = crate_sources();
    // A deliberate upward edge in each form the check reads.
    files.push((PathBuf::from("spec/bad.rs"), "use crate::sweep::results::Row;\n".into()));
    files.push((PathBuf::from("cost/bad.rs"), "use crate::{graph, simulate::Options};\n".into()));
    files.push((PathBuf::from("infer/deep/bad.rs"), "fn f() { super::super::super::cost::price(); }\n".into()));
    files.push((PathBuf::from("mpc/bad.rs"), "let t = crate::graph::Network::build(); // crate::app in a comment\n".into()));
    let bad = violations(&files);
    assert_eq!(
        bad,
        [
            "src/spec/bad.rs:1: spec -> sweep",
            "src/cost/bad.rs:1: cost -> simulate",
            "src/infer/deep/bad.rs:1: infer -> cost",
            "src/mpc/bad.rs:1: mpc -> graph",
        ]
    );
}

#[test]
fn main_calls_only_the_app_layer() {
    let main = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs")).unwrap();
    for line in main.lines().filter(|l| l.contains("explore::")) {
        assert!(line.contains("explore::app") || line.contains("explore::allocator"), "main.rs reaches past app: {line}");
    }
}
