//! `explore merge`: the stores of a sweep's shards united into one, from which the
//! sweep's results.csv, pareto.csv and plots are written exactly as an unsharded run
//! writes them (every stage read from the store, none computed).

use super::shard::Record;
use super::{Options, store};
use crate::error::{Error, Result};
use crate::spec::SweepSpec;
use std::path::{Path, PathBuf};

/// The stage folders of a store.
const STAGES: [&str; 3] = ["train", "simulate", "clusters"];

/// What `prepare` did: the sweep and the settings to run it with over `out`.
pub struct Prepared {
    pub spec: SweepSpec,
    pub options: Options,
    /// Shard records found, and store entries copied into `out`.
    pub shards: usize,
    pub copied: usize,
}

/// Checks that `stores` hold shards of one sweep run with one set of settings and
/// that every entry in them is whole, then copies into `out` what it lacks (nothing
/// is overwritten; `out` may be one of the stores). Errors name the store or entry.
pub fn prepare(stores: &[PathBuf], out: &Path, partial: bool, quiet: bool) -> Result<Prepared> {
    let mut records: Vec<(PathBuf, Record)> = Vec::new();
    for s in stores {
        records.extend(Record::all(s)?);
    }
    let (first_file, first) = records[0].clone();
    for (file, r) in &records[1..] {
        if r.sweep != first.sweep || r.digest != first.digest {
            return Err(Error::invalid(
                file,
                None,
                format!(
                    "shard {} of sweep \"{}\" (file digest {}), but {} is of sweep \"{}\" (file digest {}): shards of different sweeps (or of a changed sweep file) do not merge",
                    r.shard,
                    r.sweep,
                    &r.digest[..12],
                    first_file.display(),
                    first.sweep,
                    &first.digest[..12]
                ),
            ));
        }
        if r.settings != first.settings {
            return Err(Error::invalid(
                file,
                None,
                format!(
                    "shard {} ran with {:?}, but {} with {:?}: run every shard with the same options",
                    r.shard,
                    r.settings,
                    first_file.display(),
                    first.settings
                ),
            ));
        }
    }
    let text = crate::spec::read_text(&first.file)?;
    if store::text_digest(text.as_bytes()) != first.digest {
        return Err(Error::invalid(
            &first.file,
            None,
            format!("changed since its shards ran (they record digest {}): merge needs the file they ran", &first.digest[..12]),
        ));
    }
    // Read as the shards named it when that is the same file from here, so that
    // messages in skipped.csv spell its path as theirs did.
    let same = |a: &Path, b: &Path| std::fs::canonicalize(a).ok().zip(std::fs::canonicalize(b).ok()).is_some_and(|(a, b)| a == b);
    let spec = SweepSpec::load(if same(&first.given, &first.file) { &first.given } else { &first.file })?;

    // Every entry checked before anything is copied: a damaged one stops the merge
    // with nothing written.
    let mut copies: Vec<(PathBuf, PathBuf)> = Vec::new();
    for s in stores {
        for folder in STAGES.iter().chain(&["shards"]) {
            for entry in entries(&s.join(folder))? {
                match entry.extension().and_then(|x| x.to_str()) {
                    Some("json") => {
                        store::read_json::<serde_json::Value>(&entry)?;
                    }
                    Some("safetensors") => store::check_safetensors(&entry)?,
                    _ => continue,
                }
                let target = out.join(folder).join(entry.file_name().expect("a directory entry has a name"));
                if !same(s, out) && !target.exists() && !copies.iter().any(|(_, t)| *t == target) {
                    copies.push((entry, target));
                }
            }
        }
    }
    for (from, to) in &copies {
        let bytes = std::fs::read(from).map_err(|source| Error::Read { path: from.clone(), source })?;
        store::write_atomic(to, &bytes)?;
    }

    let s = first.settings;
    let options = Options {
        // Without a dataset recorded the shards trained nothing; no dataset is looked
        // for now either (EXPLORE_DATA could name one and change the keys).
        no_train: s.no_train || s.data.is_none(),
        epochs: s.epochs,
        data: s.data,
        samples: s.samples,
        train_images: s.train_images,
        out_root: PathBuf::new(),
        quiet,
        named_only: s.named_only,
        only: s.only,
        shard: None,
        store: Some(out.to_path_buf()),
        store_only: true,
        partial,
    };
    Ok(Prepared { spec, options, shards: records.len(), copied: copies.len() })
}

/// The finished entries of a stage folder (no temporaries, no locks), sorted.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).filter(|p| p.is_file() && !p.to_string_lossy().contains(".tmp")).collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(Error::Read { path: dir.to_path_buf(), source }),
    };
    files.sort();
    Ok(files)
}
