//! Published figures to draw beside a sweep's measured points
//! (`references/frontier.csv`; columns in references/README.md).

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// One published configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quoted {
    pub method: String,
    pub network: String,
    pub dataset: String,
    pub relus: Option<u64>,
    pub accuracy_pct: f64,
    pub megabytes: Option<f64>,
    pub source: String,
    #[serde(default)]
    pub relus_counted_by: Option<String>,
}

/// Every row of the file, or an error naming the file and the row.
pub fn load(path: &Path) -> Result<Vec<Quoted>> {
    let text = super::read_text(path)?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| Error::invalid(path, Some(format!("row {}", i + 2)), e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_frontier_reads_and_a_bad_row_is_named() {
        let rows = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("references/frontier.csv")).unwrap();
        assert!(rows.iter().any(|r| r.dataset == "CIFAR-10" && r.relus == Some(173_056) && r.accuracy_pct == 83.59));
        let dir = std::env::temp_dir().join(format!("explore-frontier-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("f.csv");
        std::fs::write(&bad, "method,network,dataset,relus,accuracy_pct,megabytes,source\nm,n,d,x,1,,s\n").unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("f.csv: row 2"), "{e}");
    }
}
