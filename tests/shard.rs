//! End to end: a sweep split into shards run as separate processes (as a Slurm job
//! array runs them), merged back into the results an unsharded run writes; a shard
//! killed mid-point and rerun; bad shard specs and bad stores refused.

mod common;
use common::sweeps::{WARM, assert_same_outputs, files, run_ok, spawn, stages, sweep_args, write_sweep};
use common::{explore, scratch, write_idx};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[test]
fn four_shards_in_four_processes_merge_into_the_unsharded_results() {
    let dir = scratch("shard-four");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, 300, 100);
    let sweep = write_sweep(&dir, "four", WARM);

    // Unsharded: the original, 4 fine-tunes (one after clustering), 5 simulations.
    let plain = dir.join("plain");
    let out = run_ok(&sweep_args(&sweep, &data, &plain, None).iter().map(String::as_str).collect::<Vec<_>>());
    let all = stages(&out);
    assert_eq!(all, (11, 0), "{out}");
    // No two points share protocol randomness: their message digests all differ.
    let mut digests: Vec<String> = files(&plain.join("simulate"))
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap()["transcript"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(digests.len(), 5);
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 5, "two points sent the same messages");

    // Four shards at once into one store, as a job array on a shared folder does.
    let shared = dir.join("shared");
    let children: Vec<_> = (0..4).map(|i| spawn(&sweep_args(&sweep, &data, &shared, Some(&format!("{i}/4"))))).collect();
    let mut computed = 0;
    let mut points = 0;
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        computed += stages(&text).0;
        let n: usize = text.split(" points;").next().unwrap().split_whitespace().last().unwrap().parse().unwrap();
        points += n;
    }
    // Each point in one shard; the original trained once for all of them (a shard that
    // found it claimed waited and reused it), nothing computed twice.
    assert_eq!(points, 5);
    assert_eq!(computed, all.0);
    assert!(!shared.join("results.csv").exists(), "a shard writes no results");
    let trained = files(&shared.join("train")).iter().filter(|p| p.extension().is_some_and(|x| x == "json")).count();
    assert_eq!(trained, 5);
    assert!(files(&shared.join("train")).iter().all(|p| !p.to_string_lossy().ends_with(".lock")));

    let merged = run_ok(&["merge", shared.to_str().unwrap(), "-o", shared.to_str().unwrap(), "-q"]);
    assert_eq!(stages(&merged), (0, all.0), "{merged}");
    assert_same_outputs(&plain, &shared);

    // Four shards each into a store of its own, united by the merge into a new folder.
    let own: Vec<PathBuf> = (0..4).map(|i| dir.join(format!("own{i}"))).collect();
    let children: Vec<_> = own.iter().enumerate().map(|(i, s)| spawn(&sweep_args(&sweep, &data, s, Some(&format!("{i}/4"))))).collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let united = dir.join("united");
    let mut args = vec!["merge"];
    args.extend(own.iter().map(|p| p.to_str().unwrap()));
    args.extend(["-o", united.to_str().unwrap(), "-q"]);
    let merged = run_ok(&args);
    assert!(merged.contains("merged 4 shard records"), "{merged}");
    assert_same_outputs(&plain, &united);
}

#[test]
fn a_shard_killed_mid_point_recomputes_only_its_unfinished_points() {
    let dir = scratch("shard-kill");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, 600, 100);
    // Cold: every point trains on its own, so a shard has several trainings to kill.
    let sweep = write_sweep(&dir, "kill", "");
    let store = dir.join("store");
    let args = |i: usize| sweep_args(&sweep, &data, &store, Some(&format!("{i}/2")));

    let mut child = spawn(&args(0));
    let trained = || files(&store.join("train")).iter().filter(|p| p.extension().is_some_and(|x| x == "json")).count();
    let start = Instant::now();
    while trained() == 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "no point finished in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the shard ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = trained() + files(&store.join("simulate")).iter().filter(|p| p.extension().is_some_and(|x| x == "json")).count();

    // The rerun reuses what was stored and computes the rest; its lock and temporary
    // are no obstacle (their process is gone).
    let out = run_ok(&args(0).iter().map(String::as_str).collect::<Vec<_>>());
    let (computed, reused) = stages(&out);
    assert_eq!(reused, done, "{out}");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join("shards/0-of-2.json")).unwrap()).unwrap();
    let points = record["points"].as_array().unwrap().len();
    assert_eq!(computed + reused, 2 * points, "{out}");
    assert_eq!(record["finished"], true);

    // Merging before the other shard ran names what is missing; --partial writes the rest.
    let o = explore(&["merge", store.to_str().unwrap(), "-o", store.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{} of 5 points are not in the store", 5 - points)), "{err}");
    assert!(!store.join("results.csv").exists());
    run_ok(&["merge", store.to_str().unwrap(), "-o", store.to_str().unwrap(), "--partial", "-q"]);
    let skipped = std::fs::read_to_string(store.join("skipped.csv")).unwrap();
    assert_eq!(skipped.matches("not in the store (merged with --partial)").count(), 5 - points, "{skipped}");

    // The other shard, then a full merge; nothing left behind by the killed run.
    run_ok(&args(1).iter().map(String::as_str).collect::<Vec<_>>());
    let merged = run_ok(&["merge", store.to_str().unwrap(), "-o", store.to_str().unwrap(), "-q"]);
    assert_eq!(stages(&merged), (0, 10), "{merged}");
    let left: Vec<_> = ["train", "simulate"]
        .iter()
        .flat_map(|s| files(&store.join(s)))
        .filter(|p| p.to_string_lossy().contains(".tmp") || p.to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bad_shard_specs_and_bad_stores_exit_2_naming_them() {
    let dir = scratch("shard-bad");
    let sweep = write_sweep(&dir, "bad", "");
    let store = dir.join("store");
    for (spec, says) in [("5/4", "shard 5 of 4 does not exist"), ("0/0", "at least 1 shard"), ("a/b", "expected I/N")] {
        let o = explore(&["sweep", sweep.to_str().unwrap(), "--no-train", "--store", store.to_str().unwrap(), "--shard", spec]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{spec}: {err}");
        assert!(err.contains(says) && err.lines().count() <= 4, "{spec}: {err}");
    }
    let o = explore(&["sweep", sweep.to_str().unwrap(), "--no-train", "--shard", "slurm"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SLURM_ARRAY_TASK_ID is not set"));

    // Two shards of one sweep and one of another: the merge names the stranger.
    let no_train = |sweep: &Path, store: &Path, shard: &str| {
        run_ok(&["sweep", sweep.to_str().unwrap(), "--no-train", "--store", store.to_str().unwrap(), "--shard", shard, "-q"]);
    };
    no_train(&sweep, &store, "0/2");
    no_train(&sweep, &store, "1/2");
    let other = write_sweep(&dir, "other", "");
    let other_store = dir.join("other-store");
    no_train(&other, &other_store, "0/1");
    let out = dir.join("out");
    let o = explore(&["merge", store.to_str().unwrap(), other_store.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&other_store.join("shards/0-of-1.json").display().to_string()) && err.contains("different sweeps"), "{err}");
    assert!(!out.exists(), "nothing written");

    // A store that no shard wrote.
    let o = explore(&["merge", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no shard records"));

    // A truncated entry: named, and neither it nor the merge's folder written.
    let entry = files(&store.join("simulate")).into_iter().find(|p| p.extension().is_some_and(|x| x == "json")).unwrap();
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
    let o = explore(&["merge", store.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&entry.display().to_string()) && err.contains("damaged store entry"), "{err}");
    assert_eq!(std::fs::read(&entry).unwrap(), &bytes[..bytes.len() / 2]);
    assert!(!out.exists(), "nothing written");
    // The shard itself refuses to run over it rather than overwrite it.
    let o = explore(&["sweep", sweep.to_str().unwrap(), "--no-train", "--store", store.to_str().unwrap(), "--shard", "0/2"]);
    let o2 = explore(&["sweep", sweep.to_str().unwrap(), "--no-train", "--store", store.to_str().unwrap(), "--shard", "1/2"]);
    let failed = [&o, &o2].into_iter().filter(|o| o.status.code() == Some(2)).count();
    assert_eq!(failed, 1, "the shard holding the entry stops");
    assert_eq!(std::fs::read(&entry).unwrap(), &bytes[..bytes.len() / 2]);
}
