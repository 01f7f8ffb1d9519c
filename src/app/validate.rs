//! `explore validate`: every claim the tool makes, checked in one command. For each
//! shipped network and plan: the analytic model against the simulator (rounds, depth
//! and bits per party and protocol, exactly equal, layer by layer), the simulator
//! against plaintext fixed point; and the model against the paper's Table 8 within
//! the tolerances docs/paper-figures.md explains, with the known differences named.

use crate::error::{Error, Result};
use crate::report::{self, Format, Table};
use crate::simulate::Options;
use crate::spec::protocol::ProtocolTable;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Protocol table to validate (default: the built-in SecureNN table).
    #[arg(long)]
    pub protocol: Option<PathBuf>,
    /// Output format: the checks as aligned text, CSV, Markdown or JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Prints every check; a failed check is an error (`Error::ChecksFailed`, exit 1)
/// after the table is out.
pub fn run(args: Args) -> Result<()> {
    let table = ProtocolTable::load_or_builtin(args.protocol.as_deref())?;
    let checks = validate(Path::new("."), &table)?;
    super::emit(None, &report::render(args.format, &checks, || text(&checks), || check_table(&checks, true)))?;
    let failed = checks.iter().filter(|c| !c.pass).count();
    if failed > 0 {
        return Err(Error::ChecksFailed { failed, total: checks.len() });
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub what: String,
    pub subject: String,
    pub expected: String,
    pub got: String,
    pub pass: bool,
    /// Why a known difference is accepted, where there is one.
    pub note: String,
}

/// One row of the paper's Table 8: network, plan, rounds, MB, tolerance, note.
const TABLE8: [(&str, &str, u64, f64, f64, &str); 7] = [
    ("cifar10", "original", 86, 141.02, 0.005, "paper 0.16 MB below Table 1 arithmetic, unexplained"),
    ("cifar10", "uniform-32x32", 86, 54.18, 0.005, "paper 0.06 MB below Table 1 arithmetic"),
    ("cifar10", "fc-noise", 90, 57.865, 0.005, "decomposition uniform + Linear_{64,1024,1} + 65,536 Mul"),
    ("svhn", "original", 26, 22.1, 0.03, "paper fits 83 l per ReLU and convs on input size"),
    ("svhn", "uniform-32x32", 26, 5.32, 0.10, "paper's 22.1 - 17.87 + 1.09 mixes accountings"),
    ("fashion_mnist", "original", 40, 35.04, 0.03, "paper's 40 rounds fit no layer count; Table 1 gives 38"),
    ("fashion_mnist", "uniform-32x32", 40, 19.04, 0.06, "paper's own arithmetic gives 19.40"),
];

/// SecureNN's networks (its Tables 6 and 7, one image): network, published MB,
/// tolerance, note. The published figures count the input's two shares, which the
/// cost model leaves out (as the ReLU-sharing paper does).
const SECURENN_NETWORKS: [(&str, f64, f64, &str); 3] = [
    ("secureml_mnist", 2.1, 0.01, "Network A; +2 x 784 input elements would give 2.100"),
    ("minionn_mnist", 8.86, 0.01, "Network B, 93 l per Maxpool step; with input shares 8.862"),
    ("lenet_mnist", 18.94, 0.01, "Network C, 93 l per Maxpool step; with input shares 18.942"),
];

/// Every network with a folder of plans, every plan checked.
const NETWORKS: [&str; 7] = ["cifar10", "svhn", "fashion_mnist", "secureml_mnist", "minionn_mnist", "lenet_mnist", "resnet18_cifar"];

/// Runs every check from the repository root `root`.
pub fn validate(root: &Path, table: &ProtocolTable) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    let profiles = crate::spec::profile::builtin();
    for arch in NETWORKS {
        let arch_file = root.join(format!("architectures/{arch}.toml"));
        let plan_dir = root.join("architectures/plans").join(arch);
        let mut plans: Vec<_> = std::fs::read_dir(&plan_dir)
            .map_err(|source| Error::Read { path: plan_dir.clone(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        plans.sort();
        for plan in plans {
            let stem = plan.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let name = format!("{arch}/{stem}");
            let sim = super::simulate::simulate_files(
                &arch_file,
                Some(&plan),
                crate::simulate::Weights::Random,
                None,
                table,
                &Options { fit_frac: true, ..Options::default() },
                &super::limits::Limits::default(),
                &indicatif::ProgressBar::hidden(),
            )?;
            let mismatched: Vec<String> = sim.layers.iter().filter(|l| l.measured != l.predicted).map(|l| l.name.clone()).collect();
            checks.push(Check {
                what: "model = simulator".into(),
                subject: name.clone(),
                expected: format!("{} rounds, {} bits", sim.total.predicted.rounds, sim.total.predicted.bits),
                got: format!("{} rounds, {} bits", sim.total.measured.rounds, sim.total.measured.bits),
                pass: mismatched.is_empty(),
                note: if mismatched.is_empty() { String::new() } else { format!("layers differ: {}", mismatched.join(", ")) },
            });
            // The first layer runs on fresh shares: one truncation, at most 1 lsb.
            let first = &sim.layers[0];
            checks.push(Check {
                what: "simulator ~ fixed point".into(),
                subject: format!("{name} {}", first.name),
                expected: "<= 1 lsb".into(),
                got: format!("{} lsb", first.max_error_lsb),
                pass: first.max_error_lsb <= 1,
                note: String::new(),
            });
            if stem == "original"
                && let Some(&(_, mb, tol, note)) = SECURENN_NETWORKS.iter().find(|r| r.0 == arch)
            {
                let got = sim.total.predicted.bits as f64 / 8e6;
                let rel = (got - mb) / mb;
                checks.push(Check {
                    what: "model ~ SecureNN Tables 6-7".into(),
                    subject: name.clone(),
                    expected: format!("{mb} MB +-{:.0}%", 100.0 * tol),
                    got: format!("{got:.3} MB ({:+.2}%)", 100.0 * rel),
                    pass: rel.abs() <= tol,
                    note: note.into(),
                });
            }
            if let Some(&(_, _, rounds, mb, tol, note)) = TABLE8.iter().find(|r| r.0 == arch && r.1 == stem) {
                let (cost, _) = super::cost::price_files(&arch_file, Some(&plan), table, None, &profiles, 1)?;
                let got = cost.total.bytes as f64 / 1e6;
                let rel = (got - mb) / mb;
                checks.push(Check {
                    what: "model ~ paper Table 8".into(),
                    subject: name.clone(),
                    expected: format!("{rounds} rounds, {mb} MB +-{:.1}%", 100.0 * tol),
                    got: format!("{} rounds, {got:.3} MB ({:+.2}%)", cost.total.rounds, 100.0 * rel),
                    // Rounds must match except where the paper's own count is known to be off.
                    pass: rel.abs() <= tol && (cost.total.rounds == rounds || arch == "fashion_mnist"),
                    note: note.into(),
                });
            }
        }
    }
    Ok(checks)
}

/// Every check, one line each, and the count of failures.
fn text(checks: &[Check]) -> String {
    // Columns as wide as their cells: the header is not shown.
    let mut out = check_table(checks, false).lines()[1..].iter().map(|l| format!("{l}\n")).collect::<String>();
    let failed = checks.iter().filter(|c| !c.pass).count();
    out += &format!("\n{} checks, {} passed, {} failed\n", checks.len(), checks.len() - failed, failed);
    out
}

fn check_table(checks: &[Check], header: bool) -> Table {
    let names = ["result", "check", "subject", "expected", "got", "note"];
    let mut t = Table::new(&if header { names } else { [""; 6] }, 6);
    for c in checks {
        let result = if c.pass { "ok" } else { "FAIL" };
        t.push(vec![result.into(), c.what.clone(), c.subject.clone(), c.expected.clone(), c.got.clone(), c.note.clone()]);
    }
    t
}
