//! Which vector instructions this CPU has. The hot loops of the simulator are
//! compiled for AVX-512, for AVX2 and for any x86-64, and each call picks one by
//! `simd()`, so that one binary is fast here, still runs on any x86-64, and gives the
//! same results on each.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    /// AVX-512 F, BW, DQ and VL (every AVX-512 CPU since Skylake-SP has all four).
    Avx512,
    Avx2,
    Baseline,
}

/// The widest of the three the CPU runs, or a narrower one named by `EXPLORE_SIMD`
/// (`avx2` or `baseline`), so that one machine can time the other variants. Read
/// once per process; `check_env` refuses a value this does not know.
pub fn simd() -> Simd {
    static CHOSEN: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let widest = widest();
        match requested(std::env::var("EXPLORE_SIMD").ok().as_deref()) {
            // Never wider than the CPU runs: `avx2` on an AVX2 machine is its widest.
            Ok(Some(Simd::Avx2)) if widest == Simd::Avx512 => Simd::Avx2,
            Ok(Some(Simd::Baseline)) => Simd::Baseline,
            _ => widest,
        }
    })
}

/// The variant an `EXPLORE_SIMD` value asks for: `None` for unset, empty or
/// `native` (the widest), else `avx2` or `baseline`.
fn requested(value: Option<&str>) -> Result<Option<Simd>> {
    match value.map(str::trim) {
        None | Some("" | "native") => Ok(None),
        Some("avx2") => Ok(Some(Simd::Avx2)),
        Some("baseline") => Ok(Some(Simd::Baseline)),
        Some(other) => Err(Error::Environment {
            var: "EXPLORE_SIMD".into(),
            message: format!("\"{other}\" is not a variant: use avx2, baseline or native (unset: the widest this CPU runs)"),
        }),
    }
}

/// Refuses an `EXPLORE_SIMD` value that names no variant, so that a typo does not
/// pass for a timing of the narrower variant (`main` calls it, through `app`, first).
pub fn check_env() -> Result<()> {
    requested(std::env::var("EXPLORE_SIMD").ok().as_deref()).map(|_| ())
}

fn widest() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
            return Simd::Avx512;
        }
        if has!("avx2") {
            return Simd::Avx2;
        }
    }
    Simd::Baseline
}

/// Whether the CPU has VAES with AVX-512 (AES rounds on 512-bit registers) and the
/// AES-NI key schedule: the fast path of the protocol's keystream (not taken when
/// `EXPLORE_SIMD` asks for a narrower variant).
pub fn vaes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        simd() == Simd::Avx512 && has!("vaes") && has!("aes")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the CPU has VAES on 256-bit registers (AVX2) and AES-NI: the keystream's
/// path where AVX-512 is missing.
pub fn vaes256() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        simd() != Simd::Baseline && has!("vaes") && has!("aes")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// For the CPU-variant tests: says on standard error, past the test harness's
/// capture, which variants `test` cannot run on this CPU (`missing` names a
/// variant and whether the CPU has it), so that a green run on a machine without
/// AVX-512 or VAES does not pass for a run of those variants.
#[cfg(test)]
pub fn note_skipped(test: &str, missing: &[(&str, bool)]) {
    use std::io::Write;
    for (variant, available) in missing {
        if !available {
            // Written to the real stderr: `eprintln!` would be captured and hidden.
            let _ = writeln!(std::io::stderr(), "skipped: {test}: the {variant} variant (this CPU lacks its instructions)");
        }
    }
}

/// The variants a CPU-variant test may lack: AVX-512 and AVX2.
#[cfg(test)]
pub fn vector_variants() -> [(&'static str, bool); 2] {
    let s = simd();
    [("AVX-512", s == Simd::Avx512), ("AVX2", s != Simd::Baseline)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known values choose a variant, anything else is refused with the variable named.
    #[test]
    fn explore_simd_values() {
        assert_eq!(requested(None).unwrap(), None);
        assert_eq!(requested(Some("native")).unwrap(), None);
        assert_eq!(requested(Some(" avx2 ")).unwrap(), Some(Simd::Avx2));
        assert_eq!(requested(Some("baseline")).unwrap(), Some(Simd::Baseline));
        let e = requested(Some("avx3")).unwrap_err().to_string();
        assert!(e.starts_with("EXPLORE_SIMD: \"avx3\" is not a variant"), "{e}");
    }
}
