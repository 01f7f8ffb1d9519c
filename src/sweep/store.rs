//! The sweep's on-disk store: content keys, atomic writes and claims, so that a sweep
//! killed at any moment leaves only whole results behind and a rerun finds them, and
//! several processes (the shards of a Slurm array, on one machine or many, sharing
//! the folder) can fill one store at once.
//!
//! Correctness rests on atomic renames alone: every result is written under a
//! temporary name unique to its writer and renamed into place, and every stage is
//! deterministic, so two writers of one key write the same result. Claims (lock files
//! with a heartbeat) only keep two processes from spending an hour on the same key.

use crate::error::{Error, Result};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// How often a claim's holder touches its lock file.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// A lock untouched this long belongs to a process that is gone (on any machine).
const STALE: Duration = Duration::from_secs(60);
/// How often a process waiting for another's claim looks again.
const POLL: Duration = Duration::from_millis(500);
/// Temporaries of writers on other machines are removed only when this old: their
/// writer cannot be asked whether it still runs.
const FOREIGN_TEMPORARY: Duration = Duration::from_secs(24 * 3600);

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
    Ok(text_digest(&bytes))
}

/// SHA-256 over a folder's files (their paths below it and their bytes, in name
/// order, recursively): identifies shipped test images wherever the checkout is.
pub fn folder_digest(dir: &Path) -> Result<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { walk(&p, out)? } else { out.push(p) }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        let name = f.strip_prefix(dir).unwrap_or(&f).to_string_lossy().into_owned();
        let bytes = std::fs::read(&f).map_err(|source| Error::Read { path: f.clone(), source })?;
        for part in [name.as_bytes(), &bytes] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// SHA-256 of some bytes (hex).
pub fn text_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
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

/// This machine's name as it goes into file names (letters, digits, `.` and `_`).
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let clean: String = name.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_').collect();
    if clean.is_empty() { "localhost".into() } else { clean }
}

/// Whether a process of this machine still runs. Where that cannot be asked, yes:
/// then only age makes its files stale.
fn alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Where a result is written before it is renamed into place (also used for files
/// another library writes, such as checkpoints): unique to this machine, process and
/// call, so that writers of one key never share a temporary.
pub fn temporary(path: &Path) -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}-{}-{}", host(), std::process::id(), CALLS.fetch_add(1, Ordering::Relaxed)));
    path.with_file_name(name)
}

/// Removes what killed runs left in `dir`: temporaries and claims of processes of
/// this machine that are gone, and other machines' temporaries older than a day.
pub fn remove_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let (me, now) = (host(), SystemTime::now());
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".lock") {
            // A claim of a process of this machine that is gone (killed between
            // storing its result and letting go, or mid-computation).
            let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
            if owner.split_once(' ').is_some_and(|(h, pid)| h == me && pid.parse().is_ok_and(|p| !alive(p))) {
                let _ = std::fs::remove_file(e.path());
            }
            continue;
        }
        let Some((_, writer)) = name.split_once(".tmp") else { continue };
        // `-HOST-PID-N`, or `PID` as written by versions before shards.
        let parts: Vec<&str> = writer.trim_start_matches('-').rsplitn(3, '-').collect();
        let (writer_host, pid) = match parts.as_slice() {
            [_, pid, h] => (h.to_string(), pid.parse::<u32>().ok()),
            [pid] => (me.clone(), pid.parse::<u32>().ok()),
            _ => continue,
        };
        let gone = if writer_host == me {
            pid.is_some_and(|p| !alive(p))
        } else {
            let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|m| now.duration_since(m).ok());
            age.is_some_and(|a| a > FOREIGN_TEMPORARY)
        };
        if gone {
            // Best effort: a file that cannot be removed is ignored later.
            let _ = std::fs::remove_file(e.path());
        }
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    // Our records are plain structs of numbers and strings: serialising cannot fail.
    let text = serde_json::to_string_pretty(value).expect("a record serialises");
    write_atomic(path, text.as_bytes())
}

/// The error for a store entry that exists and is not whole (truncated by a full
/// disk or a bad copy): the run stops rather than overwrite or trust it.
pub fn damaged(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::invalid(path, None, format!("a damaged store entry ({why}); delete it and rerun to recompute it"))
}

/// A stored result, `None` when there is none, an error naming the file when it
/// exists and does not parse.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path: path.to_path_buf(), source }),
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| damaged(path, e)),
    }
}

/// Checks that a stored safetensors file is whole (its header parses and its tensors
/// lie inside the file).
pub fn check_safetensors(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    safetensors::SafeTensors::deserialize(&bytes).map(|_| ()).map_err(|e| damaged(path, e))
}

/// The right to compute one stage's result, held as a lock file beside it while
/// the computation runs; dropping it removes the lock.
pub struct Claim {
    lock: PathBuf,
    stop: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(beat) = self.beat.take() {
            // The heartbeat thread only sleeps and touches a file: it does not panic.
            let _ = beat.join();
        }
        // Best effort: a lock left behind goes stale without its heartbeat.
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// What `claim` found.
pub enum Claimed {
    /// This process computes the result; the lock holds others off until it drops.
    Mine(Claim),
    /// Another thread of this process computes it already: computing it here too
    /// writes the same result (rarely: two points with one plan).
    AlsoMine,
    /// The result is there (another process computed it while this one waited).
    Done,
}

/// Claims the computation of a stage whose lock file is `lock`, waiting while a live
/// process (of this machine or another, judged by its heartbeat) holds it. `done`
/// says whether the result has appeared; `waiting` is told whom this process waits
/// for, once.
pub fn claim(lock: &Path, done: impl Fn() -> Result<bool>, waiting: impl FnOnce(&str)) -> Result<Claimed> {
    let err = |source| Error::Write { path: lock.to_path_buf(), source };
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let me = format!("{} {}", host(), std::process::id());
    let mut waiting = Some(waiting);
    loop {
        if done()? {
            return Ok(Claimed::Done);
        }
        match std::fs::OpenOptions::new().write(true).create_new(true).open(lock) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(me.as_bytes()).map_err(err)?;
                let claim = Claim::hold(lock);
                // Finished between the look and the lock: nothing to do.
                return Ok(if done()? { Claimed::Done } else { Claimed::Mine(claim) });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
        let owner = std::fs::read_to_string(lock).unwrap_or_default();
        if owner == me {
            return Ok(Claimed::AlsoMine);
        }
        let age = std::fs::metadata(lock).and_then(|m| m.modified()).ok().and_then(|m| SystemTime::now().duration_since(m).ok());
        let dead_here = match owner.split_once(' ') {
            Some((h, pid)) => h == host() && pid.parse().is_ok_and(|p| !alive(p)),
            None => false,
        };
        if dead_here || age.is_some_and(|a| a > STALE) {
            // Its holder is gone: take it over. Two processes doing so at once may both
            // compute the result, which the atomic writes make harmless.
            let _ = std::fs::remove_file(lock);
            continue;
        }
        if let Some(tell) = waiting.take() {
            tell(if owner.is_empty() { "another process" } else { &owner });
        }
        std::thread::sleep(POLL);
    }
}

impl Claim {
    /// Holds a lock this process created: a thread touches it every `HEARTBEAT`.
    fn hold(lock: &Path) -> Claim {
        let stop = Arc::new(AtomicBool::new(false));
        let (path, flag) = (lock.to_path_buf(), stop.clone());
        let beat = std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() >= HEARTBEAT {
                    // A failed touch only lets the lock go stale sooner.
                    let _ = std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                    last = std::time::Instant::now();
                }
            }
        });
        Claim { lock: lock.to_path_buf(), stop, beat: Some(beat) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("explore-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn keys_depend_on_every_part_and_its_boundaries() {
        let k = key(&["ab", "c"]);
        assert_eq!(k.len(), 32);
        assert_eq!(k, key(&["ab", "c"]));
        assert_ne!(k, key(&["a", "bc"]));
        assert_ne!(k, key(&["ab", "d"]));
    }

    #[test]
    fn folder_digests_follow_content_not_location() {
        let (a, b) = (scratch("digest-a"), scratch("digest-b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d.join("cat")).unwrap();
            std::fs::write(d.join("cat/1.jpg"), "one").unwrap();
            std::fs::write(d.join("2.jpg"), "two").unwrap();
        }
        assert_eq!(folder_digest(&a).unwrap(), folder_digest(&b).unwrap());
        std::fs::write(b.join("2.jpg"), "tw0").unwrap();
        assert_ne!(folder_digest(&a).unwrap(), folder_digest(&b).unwrap());
        std::fs::rename(a.join("2.jpg"), a.join("3.jpg")).unwrap();
        std::fs::write(b.join("2.jpg"), "two").unwrap();
        assert_ne!(folder_digest(&a).unwrap(), folder_digest(&b).unwrap(), "names count");
        for d in [a, b] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn atomic_writes_leave_no_temporary_and_damaged_entries_are_errors() {
        let dir = scratch("atomic");
        let f = dir.join("sub/x.json");
        assert_eq!(read_json::<Vec<i32>>(&f).unwrap(), None);
        write_json(&f, &vec![1, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&f).unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(std::fs::read_dir(dir.join("sub")).unwrap().count(), 1);
        // Two temporaries of one file, one process: never the same name.
        assert_ne!(temporary(&f), temporary(&f));
        std::fs::write(&f, "[1, 2").unwrap();
        let e = read_json::<Vec<i32>>(&f).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: a damaged store entry", f.display())), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_temporaries_of_writers_that_are_gone_are_removed() {
        let dir = scratch("temporaries");
        let live = dir.join(format!("a.json.tmp-{}-{}-0", host(), std::process::id()));
        // Pid 0 is never a user process: its writer is gone.
        let dead = dir.join(format!("b.json.tmp-{}-0-3", host()));
        let old_style_dead = dir.join("c.json.tmp0");
        let foreign = dir.join("d.json.tmp-elsewhere.cluster-77-0");
        let entry = dir.join("e.json");
        for f in [&live, &dead, &old_style_dead, &foreign, &entry] {
            std::fs::write(f, "x").unwrap();
        }
        let (live_lock, dead_lock, foreign_lock) = (dir.join("f.lock"), dir.join("g.lock"), dir.join("h.lock"));
        std::fs::write(&live_lock, format!("{} {}", host(), std::process::id())).unwrap();
        std::fs::write(&dead_lock, format!("{} 0", host())).unwrap();
        std::fs::write(&foreign_lock, "elsewhere.cluster 0").unwrap();
        remove_temporaries(&dir);
        for (f, kept) in [
            (&live, true),
            (&dead, false),
            (&old_style_dead, false),
            (&foreign, true),
            (&entry, true),
            (&live_lock, true),
            (&dead_lock, false),
            (&foreign_lock, true),
        ] {
            assert_eq!(f.exists(), kept, "{}", f.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_claim_waits_for_a_live_holder_and_takes_over_from_a_dead_one() {
        let dir = scratch("claim");
        let (lock, result) = (dir.join("k.lock"), dir.join("k.json"));
        let done = || Ok(result.exists());

        // Free: claimed, the lock exists while held and goes when dropped.
        match claim(&lock, done, |_| panic!("nothing to wait for")).unwrap() {
            Claimed::Mine(c) => {
                assert!(lock.exists());
                // A second claim from this process does not wait for itself.
                assert!(matches!(claim(&lock, done, |_| panic!("waited for itself")).unwrap(), Claimed::AlsoMine));
                drop(c);
            }
            _ => panic!("not claimed"),
        }
        assert!(!lock.exists());

        // Held by a live process elsewhere: wait until its result appears.
        std::fs::write(&lock, "elsewhere.cluster 42").unwrap();
        let writer = {
            let result = result.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(700));
                std::fs::write(result, "{}").unwrap();
            })
        };
        let mut told = String::new();
        assert!(matches!(claim(&lock, done, |who| told = who.to_string()).unwrap(), Claimed::Done));
        assert_eq!(told, "elsewhere.cluster 42");
        writer.join().unwrap();
        std::fs::remove_file(&result).unwrap();

        // Held by a process of this machine that is gone: taken over at once.
        std::fs::write(&lock, format!("{} 0", host())).unwrap();
        assert!(matches!(claim(&lock, done, |_| panic!("waited for a dead process")).unwrap(), Claimed::Mine(_)));

        // Held elsewhere with no heartbeat for longer than STALE: taken over.
        std::fs::write(&lock, "elsewhere.cluster 42").unwrap();
        let old = SystemTime::now() - STALE - Duration::from_secs(1);
        std::fs::File::options().write(true).open(&lock).unwrap().set_modified(old).unwrap();
        assert!(matches!(claim(&lock, done, |_| panic!("waited for a stale lock")).unwrap(), Claimed::Mine(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
