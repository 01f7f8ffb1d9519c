//! Speed of secure inference under SecureNN on the paper's CIFAR-10 network, against
//! plaintext fixed-point inference of the same network in the same run.
//!
//!     cargo run --release --example simulate_bench [-- IMAGES REPEATS]
//!
//! For the original network and one decision per channel in relu1 and relu2, on one
//! thread and on all cores (images in parallel), it prints the median over REPEATS
//! of seconds per image for secure inference and for plaintext fixed point.

use explore::graph::Network;
use explore::graph::sharing::Planned;
use explore::infer::model::Params;
use explore::infer::{plain::Fixed, run, secure::Secure};
use explore::simulate::generated_input;
use explore::spec::protocol::ConvMasking;
use explore::spec::{ArchSpec, PlanSpec};
use rayon::prelude::*;
use std::path::Path;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per image over `images` images run in parallel on the current pool.
fn per_image(images: usize, f: &(dyn Fn(usize) + Sync)) -> f64 {
    let t = Instant::now();
    (0..images).into_par_iter().for_each(f);
    t.elapsed().as_secs_f64() / images as f64
}

fn main() {
    explore::allocator::keep_freed_memory();
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("IMAGES REPEATS are numbers")).collect();
    let (images, repeats) = (args.first().copied().unwrap_or(4), args.get(1).copied().unwrap_or(3));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let net = Network::build(&ArchSpec::load(&root.join("architectures/cifar10.toml")).unwrap()).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("CIFAR-10 network, {images} images per measurement, median of {repeats}; seconds per image");
    println!("{:<16} {:>7} {:>10} {:>12} {:>7}", "plan", "threads", "secure", "fixed point", "ratio");
    for plan_file in [None, Some("architectures/plans/cifar10/uniform-32x32.toml")] {
        let plan = plan_file.map_or_else(PlanSpec::original, |p| PlanSpec::load(&root.join(p)).unwrap());
        let planned = Planned::new(&net, &plan).unwrap();
        let params = Params::random(&planned, 1);
        let inputs: Vec<Vec<f32>> = (0..images).map(|i| generated_input(3 * 32 * 32, 1, i)).collect();
        for threads in [1, cores] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (mut secure, mut fixed) = (Vec::new(), Vec::new());
            for _ in 0..repeats {
                pool.install(|| {
                    secure.push(per_image(images, &|i| {
                        let mut b = Secure::new(i as u64, 13, ConvMasking::Im2col);
                        std::hint::black_box(run(&mut b, &planned, &params, &inputs[i], 0));
                    }));
                    fixed.push(per_image(images, &|i| {
                        std::hint::black_box(run(&mut Fixed::new(13), &planned, &params, &inputs[i], 0));
                    }));
                });
            }
            let (s, f) = (median(secure), median(fixed));
            println!("{:<16} {:>7} {:>10.4} {:>12.5} {:>6.1}x", plan.name, threads, s, f, s / f);
        }
    }
}
