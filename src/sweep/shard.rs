//! Shards: a sweep split into `n` deterministic slices that separate processes (the
//! tasks of a Slurm job array) run into one store, or into several that `merge`
//! unions. Each shard records what it ran in `shards/<i>-of-<n>.json` in its store,
//! so that a merge knows the sweep and its settings and can refuse stores of
//! different sweeps.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Slice `index` (from 0) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// `I/N` (0 <= I < N), or `slurm`: this task's place in its job array, from
    /// `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN` and `SLURM_ARRAY_TASK_COUNT`
    /// (read through `env`), so that `--array=1-4` works as well as `--array=0-3`.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> std::result::Result<Shard, String> {
        if text == "slurm" {
            let var = |name: &str| -> std::result::Result<usize, String> {
                let v = env(name).ok_or_else(|| format!("--shard slurm outside a Slurm job array: {name} is not set"))?;
                v.trim().parse().map_err(|_| format!("{name}={v} is not a count"))
            };
            let (id, count) = (var("SLURM_ARRAY_TASK_ID")?, var("SLURM_ARRAY_TASK_COUNT")?);
            let min = if env("SLURM_ARRAY_TASK_MIN").is_some() { var("SLURM_ARRAY_TASK_MIN")? } else { 0 };
            let index = id.checked_sub(min).ok_or_else(|| format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"))?;
            return Shard::new(index, count)
                .map_err(|e| format!("{e} (from the SLURM_ARRAY_TASK_* variables; an array with steps is not supported)"));
        }
        let (i, n) = text.split_once('/').ok_or_else(|| format!("expected I/N (such as 0/4) or slurm, got \"{text}\""))?;
        let count = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("expected I/N (such as 0/4) or slurm, got \"{text}\""));
        Shard::new(count(i)?, count(n)?)
    }

    pub fn new(index: usize, count: usize) -> std::result::Result<Shard, String> {
        if count == 0 {
            return Err("a sweep splits into at least 1 shard, not 0".into());
        }
        if index >= count {
            return Err(format!("shard {index} of {count} does not exist (shards count from 0 to {})", count - 1));
        }
        Ok(Shard { index, count })
    }

    /// `2-of-4`: how the shard's record file is named.
    pub fn id(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of each point: the heaviest points first, each to the least loaded
/// shard so far (ties to the lowest index, points in sweep order among equals), so
/// that training points spread evenly. Depends only on the weights: every process
/// of a job array computes the same split.
pub fn split(weights: &[u64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(weights[i]), i));
    let mut load = vec![0u64; count];
    let mut shard = vec![0; weights.len()];
    for i in order {
        // `count` >= 1 (checked by `Shard::new`), so there is a least loaded shard.
        let s = (0..count).min_by_key(|&s| (load[s], s)).expect("at least one shard");
        load[s] += weights[i];
        shard[i] = s;
    }
    shard
}

/// What decides a sweep's points and store keys besides its file: the settings a
/// merge must run with to find every shard's stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub no_train: bool,
    pub epochs: Option<usize>,
    /// The dataset folder as found (absolute), or none: nothing trained.
    pub data: Option<PathBuf>,
    pub samples: Option<usize>,
    pub train_images: Option<usize>,
    pub named_only: bool,
    pub only: Vec<String>,
}

/// `shards/<i>-of-<n>.json` in a store: the sweep a shard ran and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The sweep's `name`.
    pub sweep: String,
    /// The sweep file (absolute), as it was given (messages name it so), and the
    /// SHA-256 of its text when the shard ran.
    pub file: PathBuf,
    pub given: PathBuf,
    pub digest: String,
    pub settings: Settings,
    pub shard: Shard,
    /// The shard's points, in sweep order.
    pub points: Vec<String>,
    /// Set when every point of the shard was stored.
    pub finished: bool,
}

impl Record {
    pub fn path(store: &Path, shard: Shard) -> PathBuf {
        store.join("shards").join(format!("{}.json", shard.id()))
    }

    /// Every shard record in a store, by file name; an error naming the store when
    /// it has none.
    pub fn all(store: &Path) -> Result<Vec<(PathBuf, Record)>> {
        let dir = store.join("shards");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json") && !p.to_string_lossy().contains(".tmp"))
                .collect(),
            Err(_) => Vec::new(),
        };
        if files.is_empty() {
            return Err(Error::invalid(store, None, "no shard records (shards/*.json): not a store that `explore sweep --shard` wrote"));
        }
        files.sort();
        files
            .into_iter()
            .map(|f| {
                let r = super::store::read_json::<Record>(&f)?.ok_or_else(|| super::store::damaged(&f, "vanished while read"))?;
                Ok((f, r))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn shard_specs_are_read_and_checked() {
        assert_eq!(Shard::parse("2/4", no_env), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(Shard::parse("0/1", no_env), Ok(Shard { index: 0, count: 1 }));
        for bad in ["5/4", "4/4", "0/0", "a/b", "3", "-1/4", "1/4/2", ""] {
            assert!(Shard::parse(bad, no_env).is_err(), "{bad}");
        }
        assert!(Shard::parse("5/4", no_env).unwrap_err().contains("shard 5 of 4 does not exist"));
        let slurm =
            |vars: &'static [(&'static str, &'static str)]| move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        let env = slurm(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
        assert_eq!(Shard::parse("slurm", env), Ok(Shard { index: 3, count: 4 }));
        // --array=1-4: ids 1..4 are shards 0..3.
        let env = slurm(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
        assert_eq!(Shard::parse("slurm", env), Ok(Shard { index: 3, count: 4 }));
        assert!(Shard::parse("slurm", no_env).unwrap_err().contains("SLURM_ARRAY_TASK_ID is not set"));
        // --array=0-6:2 has ids 0, 2, 4, 6 and a count of 4: refused, not mis-split.
        let env = slurm(&[("SLURM_ARRAY_TASK_ID", "6"), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
        assert!(Shard::parse("slurm", env).unwrap_err().contains("steps"));
    }

    #[test]
    fn the_split_covers_every_point_once_and_balances_the_heavy_ones() {
        // Three training points (weight 100) and five cheap ones over 3 shards.
        let w = [1, 100, 1, 100, 1, 1, 100, 1];
        let s = split(&w, 3);
        let load = |k: usize| (0..w.len()).filter(|&i| s[i] == k).map(|i| w[i]).sum::<u64>();
        assert_eq!([s[1], s[3], s[6]], [0, 1, 2], "one training point per shard");
        let loads = [load(0), load(1), load(2)];
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1, "{loads:?}");
        assert_eq!(split(&w, 3), s, "deterministic");
        assert!(split(&w, 1).iter().all(|&k| k == 0));
        // More shards than points: the extra shards are empty, no point is lost.
        let s = split(&[5, 5], 4);
        assert_eq!(s, [0, 1]);
    }
}
