//! Input formats: architecture files and ReLU-sharing plans, read from TOML into
//! checked Rust values. Shape inference and graph checks live in `graph`.

pub mod arch;
pub mod frontier;
pub mod onnx;
pub mod party;
pub mod plan;
pub mod profile;
pub mod protocol;
pub mod sweep;
pub mod train;

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

pub use arch::{ArchSpec, BN_EPS, LayerSpec, Op};
pub use party::PerParty;
pub use plan::{Decision, Edge, Grouping, NoiseMask, PlanSpec, ReluPlan, WeightVisibility};
pub use sweep::SweepSpec;

/// Reads a file, naming it in the error.
/// A path written in a file, resolved against that file's folder, with `a/../`
/// pairs removed so that messages show `models/x`, not `architectures/../models/x`.
pub fn resolve(file: &Path, written: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let joined = file.parent().unwrap_or(Path::new("")).join(written);
    let mut out: Vec<Component> = Vec::new();
    for c in joined.components() {
        match (c, out.last()) {
            (Component::CurDir, _) => {}
            (Component::ParentDir, Some(Component::Normal(_))) => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    if out.is_empty() { ".".into() } else { out.iter().collect() }
}

pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

/// Parses TOML text into `T`, turning toml's multi-line report into one line with the
/// file, line and column.
pub fn parse_toml<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let within = e.span().map(|span| {
            let (line, col) = line_col(text, span.start);
            format!("line {line}, column {col}")
        });
        Error::syntax(path, within, one_line(e.message()))
    })
}

/// Deserializes one sub-table (a layer, a plan entry), so that an error names it.
pub fn from_table<T: for<'de> Deserialize<'de>>(path: &Path, within: &str, table: toml::Table) -> Result<T> {
    // serde_path_to_error names the key whose value is wrong; toml alone would not.
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        let message = one_line(e.inner().message());
        let message = if key == "." || message.starts_with("unknown field") { message } else { format!("key \"{key}\": {message}") };
        Error::syntax(path, Some(within.to_string()), message)
    })
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// A size given as one number (square) or as `[height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pair {
    Square(usize),
    Rect([usize; 2]),
}

impl<'de> Deserialize<'de> for Pair {
    /// By hand rather than `untagged`, so that a bad value is named ("got -3")
    /// instead of "did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Pair, D::Error> {
        struct Visitor;
        const EXPECTED: &str = "a size: a whole number such as 3, or [height, width]";
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Pair;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Pair, E> {
                usize::try_from(v).map(Pair::Square).map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Pair, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("expected {EXPECTED}, got {v}"))),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Pair, A::Error> {
                use serde::de::Error;
                let side = |v: Option<i64>| -> std::result::Result<usize, A::Error> {
                    match v {
                        Some(v) => usize::try_from(v).map_err(|_| A::Error::custom(format!("expected {EXPECTED}, got {v} in the pair"))),
                        None => Err(A::Error::custom(format!("expected {EXPECTED}, got a list of fewer than 2"))),
                    }
                };
                let h = side(seq.next_element()?)?;
                let w = side(seq.next_element()?)?;
                if seq.next_element::<i64>()?.is_some() {
                    return Err(A::Error::custom(format!("expected {EXPECTED}, got a list of more than 2")));
                }
                Ok(Pair::Rect([h, w]))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Pair {
    pub fn hw(self) -> (usize, usize) {
        match self {
            Pair::Square(k) => (k, k),
            Pair::Rect([h, w]) => (h, w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_paths_resolve_against_their_file_without_up_and_down_pairs() {
        let r = |file: &str, w: &str| resolve(Path::new(file), Path::new(w)).display().to_string();
        assert_eq!(r("architectures/cifar10.toml", "../models/a.safetensors"), "models/a.safetensors");
        assert_eq!(r("/x/sweeps/s.toml", "./../../y"), "/y");
        assert_eq!(r("s.toml", "../up"), "../up");
        assert_eq!(r("a/s.toml", ".."), ".");
    }

    #[test]
    fn line_and_column_count_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn toml_errors_are_one_line_with_position() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let e = parse_toml::<T>(Path::new("x.toml"), "a = 1\nb = 2\n").unwrap_err().to_string();
        assert!(e.starts_with("x.toml: line 2, column 1: unknown field `b`"), "{e}");
        assert!(!e.contains('\n'));
    }
}
