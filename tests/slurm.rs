//! A sweep through a real Slurm job array: examples/slurm/submit.sh submits 4 shards
//! and the dependent merge; the merged results equal an unsharded run's. Needs a
//! running Slurm (SLURM_CONF set): `.ci/run` starts a single-node one with
//! examples/slurm/start-local-slurm.sh where it can and then runs this with
//! `cargo test --test slurm -- --ignored`.

mod common;
use common::sweeps::{WARM, assert_same_outputs, files, run_ok, sweep_args, write_sweep};
use common::{scratch, write_idx};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
#[ignore = "needs a running Slurm: examples/slurm/start-local-slurm.sh, then --ignored"]
fn a_sweep_as_a_slurm_job_array_merges_into_the_unsharded_results() {
    let dir = scratch("slurm");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, 300, 100);
    let sweep = write_sweep(&dir, "slurm", WARM);
    let plain = dir.join("plain");
    run_ok(&sweep_args(&sweep, &data, &plain, None).iter().map(String::as_str).collect::<Vec<_>>());

    let store = dir.join("store");
    let submit = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/slurm/submit.sh");
    let o = Command::new(submit)
        .args([sweep.to_str().unwrap(), store.to_str().unwrap(), "4", "--data", data.to_str().unwrap()])
        .env("EXPLORE", env!("CARGO_BIN_EXE_explore"))
        .env("CPUS", "1")
        .env_remove("EXPLORE_DATA")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "submit.sh: {}", String::from_utf8_lossy(&o.stderr));
    let ids = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (array, merge) = ids.split_once(' ').unwrap_or_else(|| panic!("submit.sh printed {ids:?}"));

    // Both jobs leave the queue when done (or failed: then results.csv is missing).
    let start = Instant::now();
    loop {
        let q = Command::new("squeue").args(["-h", "-j", &format!("{array},{merge}")]).output().unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "jobs still queued after 10 minutes");
        std::thread::sleep(Duration::from_secs(1));
    }
    let logs: String = files(&dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "out"))
        .map(|p| format!("{}:\n{}", p.display(), std::fs::read_to_string(p).unwrap_or_default()))
        .collect();
    assert!(store.join("results.csv").is_file(), "the merge job wrote no results; job logs:\n{logs}");
    for i in 0..4 {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.join(format!("shards/{i}-of-4.json"))).unwrap()).unwrap();
        assert_eq!(record["finished"], true, "shard {i}");
    }
    assert_same_outputs(&plain, &store);
}
