//! Training speed on the paper's CIFAR-10 network against PyTorch, in the same run.
//!
//!     cargo run --release --example train_bench [-- STEPS REPEATS]
//!
//! Times STEPS training steps of batch 128 (random images, SGD with momentum),
//! REPEATS times, on all cores, and prints the median images per second and peak
//! memory. If `$PYTHON` (default `python3`) can import torch, runs
//! `benches/pytorch_cifar10.py` with the same settings and prints the ratio.

use explore::graph::Network;
use explore::graph::sharing::Planned;
use explore::infer::model::Params;
use explore::mpc::prg::Prg;
use explore::spec::{ArchSpec, PlanSpec};
use explore::train::net::Prepared;
use explore::train::{State, TrainConfig, batch_step};
use std::path::Path;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn peak_rss_mib() -> f64 {
    // VmHWM: the peak resident set of this process.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    explore::allocator::keep_freed_memory();
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("STEPS REPEATS are numbers")).collect();
    let (steps, repeats) = (args.first().copied().unwrap_or(5), args.get(1).copied().unwrap_or(3));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let net = Network::build(&ArchSpec::load(&root.join("architectures/cifar10.toml")).unwrap()).unwrap();
    let plan = PlanSpec::original();
    let planned = Planned::new(&net, &plan).unwrap();
    let prepared = Prepared::new(&planned);
    let mut params = Params::random(&planned, 1);
    let mut state = State::new(&params);
    let cfg = TrainConfig { lr: 0.01, ..TrainConfig::default() };
    let mut g = Prg::new(1, "bench");
    let x: Vec<f32> = (0..128 * 3072).map(|_| (g.below(2000) as f32 - 1000.0) / 500.0).collect();
    let labels: Vec<u8> = (0..128).map(|_| g.below(10) as u8).collect();
    let threads = rayon::current_num_threads();
    batch_step(&prepared, &mut params, &mut state, &cfg, &x, &labels, cfg.lr, 0, None);
    let mut rates: Vec<f64> = (0..repeats)
        .map(|r| {
            let t = Instant::now();
            for s in 0..steps {
                batch_step(&prepared, &mut params, &mut state, &cfg, &x, &labels, cfg.lr, (r * steps + s) as u64, None);
            }
            (steps * 128) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let ours = rates[rates.len() / 2];
    println!(
        "explore: {ours:.0} images/s, peak memory {:.0} MiB ({threads} threads, batch 128, median of {repeats} x {steps} steps)",
        peak_rss_mib()
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .arg(root.join("benches/pytorch_cifar10.py"))
        .args([steps.to_string(), repeats.to_string(), threads.to_string()])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the script prints JSON");
            let theirs = v["images_per_second"].as_f64().unwrap_or(f64::NAN);
            println!(
                "pytorch {}: {theirs:.0} images/s, peak memory {:.0} MiB",
                v["torch"].as_str().unwrap_or("?"),
                v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
            );
            println!("ratio explore / pytorch: {:.2}", ours / theirs);
        }
        _ => println!("pytorch: not run ({python} cannot import torch; set PYTHON to an interpreter that can)"),
    }
}
