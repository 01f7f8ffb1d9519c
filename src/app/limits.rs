//! What a command may take before it starts: its memory is estimated from the graph
//! and the grid, and work over the limit is refused with one line naming the size,
//! the estimate and the key to change (`--max-memory`, or the input's own key).

use crate::error::{Error, Result};
use crate::graph::Network;
use crate::spec::SweepSpec;
use std::path::Path;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct MemoryArgs {
    /// Refuse work estimated to need more memory than this (e.g. 4G, 512M, 2000000k)
    /// [default: three quarters of this machine's memory].
    #[arg(long, value_parser = bytes)]
    pub max_memory: Option<u64>,
}

impl MemoryArgs {
    pub fn settings(&self) -> Result<Limits> {
        Ok(match self.max_memory {
            Some(max_bytes) => Limits { max_bytes, why: "--max-memory" },
            None => Limits::default(),
        })
    }
}

/// The checked limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    /// Where the limit came from, for the message.
    why: &'static str,
}

impl Default for Limits {
    /// Three quarters of the machine's memory (of 8 GiB where it cannot be read).
    fn default() -> Limits {
        let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
        });
        Limits { max_bytes: total.unwrap_or(8 << 30) / 4 * 3, why: "three quarters of this machine's memory; --max-memory to change" }
    }
}

impl Limits {
    /// Refuses `what` when its estimate is over the limit, naming `file` and `key`.
    pub fn check(&self, file: &Path, key: &str, what: &str, estimate: u64) -> Result<()> {
        if estimate <= self.max_bytes {
            return Ok(());
        }
        Err(Error::invalid(
            file,
            Some(key.to_string()),
            format!("{what} would need {} of memory, over the limit of {} ({})", need(estimate), show(self.max_bytes), self.why),
        ))
    }

    /// A secure simulation of `network`: its parameters, and the samples that run at
    /// once (one per thread), each with every layer's shares and products.
    pub fn check_simulation(&self, arch: &Path, network: &Network, opts: &crate::simulate::Options) -> Result<()> {
        // Batches run one per thread, each holding its images' values side by side.
        let batch = opts.batch.max(1);
        let at_once = (opts.samples / batch).min(rayon::current_num_threads()).max(1) * batch;
        let estimate = crate::simulate::memory_estimate(network, at_once);
        self.check(arch, "the network's sizes", &format!("simulating {at_once} sample(s) at once of \"{}\"", network.name), estimate)
    }

    /// Training (`train`), or a forward pass over training images (`record`,
    /// `cluster`): the model, each thread's chunk of activations and the images
    /// (`limit` per split, else at most 100,000 in all: SVHN's 99,289 are the most a
    /// supported dataset holds).
    pub fn check_training(&self, arch: &Path, network: &Network, limit: Option<usize>) -> Result<()> {
        let images = limit.map_or(100_000, |l| 2 * l as u64);
        let estimate = crate::train::memory_estimate(network, rayon::current_num_threads(), images);
        self.check(arch, "the network's sizes", &format!("training \"{}\" on {images} images at most", network.name), estimate)
    }

    /// A sweep: its points (each a plan, a cost report and a row) before any runs.
    /// Returns the number of points (named and from grids, before any is skipped).
    pub fn check_sweep(&self, spec: &SweepSpec) -> Result<u64> {
        let network = Network::build(&crate::spec::ArchSpec::load(&spec.architecture)?)?;
        let relus: Vec<String> = crate::graph::sharing::relu_layers(&network).map(|n| network.node(n).name.clone()).collect();
        let points = spec.grids.iter().fold(spec.points.len() as u64, |n, g| n.saturating_add(g.point_count(&relus)));
        let estimate = crate::sweep::memory_estimate(&network, points);
        self.check(&spec.path, "[[grid]]", &format!("{points} design points"), estimate)?;
        if points > 0 {
            self.check_simulation(&spec.architecture, &network, &crate::simulate::Options::default())?;
        }
        Ok(points)
    }
}

/// An estimate for people: "about 3.0 GB", or past what a u64 counts (estimates
/// saturate), "more than 18 million TB".
fn need(bytes: u64) -> String {
    if bytes == u64::MAX { "more than 18 million TB".into() } else { format!("about {}", show(bytes)) }
}

/// Bytes for people: 1.5 GB, 300 MB (powers of ten, as the rest of the tool).
fn show(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000_000 => format!("{:.1} TB", b as f64 / 1e12),
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b => format!("{:.0} MB", b as f64 / 1e6),
    }
}

/// `4G`, `512M`, `2000k` or plain bytes (powers of 1024 for the suffixes).
fn bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit() && *c != '.') {
        Some((i, _)) => (&t[..i], t[i..].trim().to_ascii_lowercase()),
        None => (t, String::new()),
    };
    let scale: u64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("expected a size such as 4G, 512M or 2000k, got {s}")),
    };
    let v: f64 = digits.parse().map_err(|_| format!("expected a size such as 4G, 512M or 2000k, got {s}"))?;
    // NaN is refused with the rest.
    if v.is_nan() || v <= 0.0 {
        return Err("must be more than 0".into());
    }
    Ok((v * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(bytes("4G"), Ok(4 << 30));
        assert_eq!(bytes("512m"), Ok(512 << 20));
        assert_eq!(bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(bytes("1000"), Ok(1000));
        assert!(bytes("0").is_err() && bytes("-3G").is_err() && bytes("4Q").is_err());
    }

    #[test]
    fn over_the_limit_names_the_key_and_both_sizes() {
        let l = Limits { max_bytes: 1_000_000_000, why: "--max-memory" };
        assert!(l.check(Path::new("a.toml"), "k", "x", 999_000_000).is_ok());
        let e = l.check(Path::new("a.toml"), "k", "x", 3_000_000_000).unwrap_err().to_string();
        assert_eq!(e, "a.toml: k: x would need about 3.0 GB of memory, over the limit of 1.0 GB (--max-memory)");
    }
}
