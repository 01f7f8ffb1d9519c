//! The sweep's on-disk store: content keys and atomic writes, so that a sweep killed
//! at any moment leaves only whole results behind and a rerun finds them.

use crate::error::{Error, Result};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A key for a stage's result: SHA-256 over every input that determines it, each part
/// length-prefixed so that no two lists of parts collide. 32 hex digits (128 bits).
pub fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file's bytes (hex): identifies an input file, such as a shipped
/// checkpoint, by its content rather than its name.
pub fn file_digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place: a
/// reader sees the old file, no file, or the whole new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = temporary(path);
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Where a result is written before it is renamed into place (also used for files
/// another library writes, such as checkpoints).
pub fn temporary(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    // Our records are plain structs of numbers and strings: serialising cannot fail.
    let text = serde_json::to_string_pretty(value).expect("a record serialises");
    write_atomic(path, text.as_bytes())
}

/// A stored result, or `None` when there is none or it does not parse (written by an
/// older version, say): then the stage runs again and replaces it.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_part_and_its_boundaries() {
        let k = key(&["ab", "c"]);
        assert_eq!(k.len(), 32);
        assert_eq!(k, key(&["ab", "c"]));
        assert_ne!(k, key(&["a", "bc"]));
        assert_ne!(k, key(&["ab", "d"]));
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("explore-store-{}", std::process::id()));
        let f = dir.join("sub/x.json");
        write_json(&f, &vec![1, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&f), Some(vec![1, 2, 3]));
        assert!(!temporary(&f).exists());
        std::fs::write(&f, "{not json").unwrap();
        assert_eq!(read_json::<Vec<i32>>(&f), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
