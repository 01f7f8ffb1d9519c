//! The time model's compute term for SecureNN: nanoseconds of local work per action,
//! measured by running the simulator's protocols on this machine. The simulator runs
//! all three parties in one process, so the figures are the parties' work together on
//! the cores it is given (one by default, as for one image among many).

use crate::cost::protocol::Compute;
use crate::mpc::prg::Prg;
use crate::mpc::protocols::{Ctx, Shares, drelu, mat_mul, mul, truncate_shares};
use std::time::Instant;

/// Operand sizes of the measurements: a conv2 of the CIFAR-10 network as an im2col
/// product (1,024 positions x 576 patch x 64 filters) and one 64x32x32 ReLU layer.
const PRODUCT: (usize, usize, usize) = (1024, 576, 64);
const VALUES: usize = 65_536;

/// Measures each action `repeats` times and keeps the median.
pub fn measure(repeats: usize) -> Compute {
    let mut rng = Prg::new(1, "calibrate");
    let frac = 13;
    // Values of a few units in fixed point, well inside DReLU's range.
    let mut values = |n: usize| {
        let raw: Vec<u64> = rng.ring(n).iter().map(|v| ((*v as i64) >> 48) as u64).collect();
        Shares::share(&raw, &mut rng)
    };
    let (m, n, v) = PRODUCT;
    let (x, w) = (values(m * n), values(n * v));
    let (a, b) = (values(VALUES), values(VALUES));
    let per = |units: usize, f: &mut dyn FnMut(&mut Ctx)| -> f64 {
        median((0..repeats.max(1)).map(|i| {
            let mut ctx = Ctx::new(i as u64, frac);
            let t = Instant::now();
            f(&mut ctx);
            t.elapsed().as_secs_f64() * 1e9 / units as f64
        }))
    };
    Compute {
        ns_per_mac: per(m * n * v, &mut |c| drop(std::hint::black_box(mat_mul(c, &x, &w, m, n, v)))),
        ns_per_drelu: per(VALUES, &mut |c| drop(std::hint::black_box(drelu(c, &a)))),
        ns_per_mul: per(VALUES, &mut |c| drop(std::hint::black_box(mul(c, &a, &b)))),
        ns_per_truncate: per(VALUES, &mut |_| drop(std::hint::black_box(truncate_shares(&a, frac)))),
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `[compute]` section for a protocol table, with where it was measured.
pub fn section(c: &Compute, threads: usize, repeats: usize) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "\n# Local work per action, all three parties together, measured by `explore calibrate`\n\
         # on {cpu}, {threads} thread(s), median of {repeats}: a {}x{}x{} Beaver product, and\n\
         # DReLU, Mul and truncation of {VALUES} values.\n\
         [compute]\nns_per_mac = {:.4}\nns_per_drelu = {:.1}\nns_per_mul = {:.2}\nns_per_truncate = {:.3}\n",
        PRODUCT.0, PRODUCT.1, PRODUCT.2, c.ns_per_mac, c.ns_per_drelu, c.ns_per_mul, c.ns_per_truncate
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::protocol::ProtocolTable;
    use std::path::Path;

    #[test]
    fn measured_section_appends_to_a_table_and_prices_time() {
        let c = measure(1);
        assert!(c.ns_per_mac > 0.0 && c.ns_per_drelu > c.ns_per_mul && c.ns_per_mul > 0.0, "{c:?}");
        let text = format!("{}{}", crate::cost::protocol::SECURENN_TOML, section(&c, 1, 1));
        let t = ProtocolTable::parse(Path::new("t.toml"), &text).unwrap();
        let parsed = t.compute.unwrap();
        assert!((parsed.ns_per_drelu - c.ns_per_drelu).abs() <= 0.05 + 1e-3 * c.ns_per_drelu);
    }
}
