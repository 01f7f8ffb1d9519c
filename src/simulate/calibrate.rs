//! The time model's compute term for SecureNN: nanoseconds of local work per action,
//! measured by running the simulator's protocols on this machine. The simulator runs
//! all three parties in one process, so the figures are the parties' work together on
//! the cores it is given (one by default, as for one image among many).

use crate::mpc::prg::Prg;
use crate::mpc::protocols::{Ctx, Shares, drelu, mat_mul, mul, truncate_shares};
use crate::spec::protocol::Compute;
use std::time::Instant;

/// Operand sizes of the measurements: a conv2 of the CIFAR-10 network as an im2col
/// product (1,024 positions x 576 patch x 64 filters), the Fashion-MNIST network's
/// fc1 (128 outputs x 3,136 inputs, times one input vector), and one 64x32x32 ReLU
/// layer. The two products tell the per-multiply-accumulate and per-element terms
/// apart: a convolution has 54 multiply-accumulates per element, fc1 one.
const PRODUCT: (usize, usize, usize) = (1024, 576, 64);
const FC: (usize, usize, usize) = (128, 3136, 1);
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
    let (a, b) = (values(VALUES), values(VALUES));
    let per = |units: usize, f: &mut dyn FnMut(&mut Ctx)| -> f64 {
        median((0..repeats.max(1)).map(|i| {
            let mut ctx = Ctx::new(i as u64, frac);
            let t = Instant::now();
            f(&mut ctx);
            t.elapsed().as_secs_f64() * 1e9 / units as f64
        }))
    };
    // Nanoseconds per product of each shape, with its multiply-accumulates and elements.
    let mut product = |(m, n, v): (usize, usize, usize)| {
        let (x, y) = (values(m * n), values(n * v));
        let ns = per(1, &mut |c| drop(std::hint::black_box(mat_mul(c, &x, &y, m, n, v))));
        (ns, (m * n * v) as f64, (m * n + n * v + m * v) as f64)
    };
    let (conv, fc) = (product(PRODUCT), product(FC));
    let (ns_per_mac, ns_per_element) = fit(conv, fc);
    Compute {
        ns_per_mac,
        ns_per_element,
        ns_per_drelu: per(VALUES, &mut |c| drop(std::hint::black_box(drelu(c, &a)))),
        ns_per_mul: per(VALUES, &mut |c| drop(std::hint::black_box(mul(c, &a, &b)))),
        ns_per_truncate: per(VALUES, &mut |_| drop(std::hint::black_box(truncate_shares(&a, frac)))),
    }
}

/// ns = a macs + b elements through two measured (ns, macs, elements): the exact
/// solution, or where timing noise makes a term negative, that term 0 and the other
/// from the measurement it dominates.
fn fit(p: (f64, f64, f64), q: (f64, f64, f64)) -> (f64, f64) {
    let ((t1, m1, e1), (t2, m2, e2)) = (p, q);
    let det = m1 * e2 - m2 * e1;
    let (a, b) = ((t1 * e2 - t2 * e1) / det, (t2 * m1 - t1 * m2) / det);
    match (a >= 0.0, b >= 0.0) {
        (true, true) => (a, b),
        (true, false) => (t1 / m1, 0.0),
        _ => (0.0, t2 / e2),
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `[compute]` section for a protocol table: a comment saying where it was
/// measured, then the section itself through the TOML serializer.
pub fn section(c: &Compute, threads: usize, repeats: usize) -> String {
    #[derive(serde::Serialize)]
    struct Section<'a> {
        compute: &'a Compute,
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    // Five finite numbers: serialization cannot fail.
    let body = toml::to_string(&Section { compute: c }).expect("plain numbers serialize");
    format!(
        "\n# Local work per action, all three parties together, measured by `explore calibrate`\n\
         # on {cpu}, {threads} thread(s), median of {repeats}: {}x{}x{} and {}x{}x{} Beaver\n\
         # products (fitted to ns per multiply-accumulate plus ns per element of X, Y and Z),\n\
         # and DReLU, Mul and truncation of {VALUES} values.\n{body}",
        PRODUCT.0, PRODUCT.1, PRODUCT.2, FC.0, FC.1, FC.2
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::protocol::ProtocolTable;
    use std::path::Path;

    #[test]
    fn measured_section_appends_to_a_table_and_prices_time() {
        let c = measure(1);
        assert!(c.ns_per_mac > 0.0 && c.ns_per_drelu > c.ns_per_mul && c.ns_per_mul > 0.0, "{c:?}");
        let text = format!("{}{}", crate::spec::protocol::SECURENN_TOML, section(&c, 1, 1));
        let t = ProtocolTable::parse(Path::new("t.toml"), &text).unwrap();
        let parsed = t.compute.unwrap();
        assert!((parsed.ns_per_drelu - c.ns_per_drelu).abs() <= 0.05 + 1e-3 * c.ns_per_drelu);
        assert!((parsed.ns_per_element - c.ns_per_element).abs() <= 5e-4 + 1e-3 * c.ns_per_element);
    }

    #[test]
    fn the_fit_recovers_both_terms_and_drops_a_negative_one() {
        let (conv, fc) = ((1000.0, 100.0), (10.0, 10.0)); // (macs, elements)
        let at = |a: f64, b: f64, (m, e): (f64, f64)| (a * m + b * e, m, e);
        let (a, b) = fit(at(0.8, 15.0, conv), at(0.8, 15.0, fc));
        assert!((a - 0.8).abs() < 1e-9 && (b - 15.0).abs() < 1e-9, "{a} {b}");
        // A convolution slower than the fc measurement allows: all of it per mac.
        let (a, b) = fit((5000.0, 1000.0, 100.0), (10.0, 10.0, 10.0));
        assert_eq!((a, b), (5.0, 0.0));
        // The reverse: all of it per element.
        let (a, b) = fit((100.0, 1000.0, 100.0), (500.0, 10.0, 10.0));
        assert_eq!((a, b), (0.0, 50.0));
    }
}
