//! `explore cost`: price a network, optionally under a plan, with the analytic cost
//! model, and report it per layer (table, CSV as in `tests/golden/`, Markdown, JSON).
//! MB means 10^6 bytes, as the paper uses.

use crate::cost::{self, CostReport, Saving};
use crate::error::Result;
use crate::graph::sharing::Planned;
use crate::report::{self, Format};
use crate::spec::PlanSpec;
use crate::spec::profile::{self, Profile};
use crate::spec::protocol::{ConvMasking, ProtocolTable};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Architecture TOML (e.g. architectures/cifar10.toml).
    pub arch: PathBuf,
    /// ReLU-sharing plan TOML (e.g. architectures/plans/cifar10/uniform-32x32.toml);
    /// without one, every ReLU layer keeps regular ReLU. With one, the saving
    /// against the original network is reported too.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Output format: an aligned table for people; the per-layer table as CSV or
    /// Markdown; the whole report as JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Protocol table TOML pricing each action (default: the built-in SecureNN
    /// table; print it with `explore protocol`).
    #[arg(long)]
    pub protocol: Option<PathBuf>,
    /// Override the table's convolution masking: im2col opens the im2col matrix
    /// (SecureNN, the paper), tensor opens the input tensor.
    #[arg(long, value_enum)]
    pub conv_masking: Option<ConvMasking>,
    /// TOML with [profile.NAME] tables (bandwidth_mbps, rtt_ms) that override or
    /// add to the built-in lan (10 Gbit/s, 0.2 ms) and wan (100 Mbit/s, 40 ms).
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Images per inference (SecureNN's batched prediction): the weights are masked
    /// once per batch, everything else is paid per image, rounds once. Figures are
    /// per batch, with the per-image share beside them.
    #[arg(long, default_value_t = 1, value_parser = batch_size)]
    pub batch: u64,
    /// Write the output to this file instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// `--batch`: 1 to `cost::MAX_BATCH`.
pub fn batch_size(s: &str) -> std::result::Result<u64, String> {
    let b: u64 = s.parse().map_err(|_| format!("expected a whole number of images, got \"{s}\""))?;
    if (1..=cost::MAX_BATCH).contains(&b) { Ok(b) } else { Err(format!("must be 1 to {}, got {b}", cost::MAX_BATCH)) }
}

pub fn run(args: Args) -> Result<()> {
    let table = ProtocolTable::load_or_builtin(args.protocol.as_deref())?;
    let profiles = profiles_or_builtin(args.profiles.as_deref())?;
    let (priced, saving) = price_files(&args.arch, args.plan.as_deref(), &table, args.conv_masking, &profiles, args.batch)?;
    let single =
        if args.batch > 1 { Some(price_files(&args.arch, args.plan.as_deref(), &table, args.conv_masking, &profiles, 1)?.0) } else { None };
    let with_saving = WithSaving { report: &priced, saving: saving.as_ref() };
    let text = report::render(args.format, &with_saving, || text(&priced, saving.as_ref(), single.as_ref()), || layer_table(&priced));
    super::emit(args.out.as_deref(), &text)
}

/// `--profiles FILE`, or the built-in lan and wan.
pub fn profiles_or_builtin(path: Option<&Path>) -> Result<Vec<Profile>> {
    match path {
        Some(p) => profile::load(p),
        None => Ok(profile::builtin()),
    }
}

/// Loads an architecture and an optional plan and prices them; with a plan, also
/// prices the network without it and reports the saving.
pub fn price_files(
    arch: &Path,
    plan: Option<&Path>,
    table: &ProtocolTable,
    masking: Option<ConvMasking>,
    profiles: &[Profile],
    batch: u64,
) -> Result<(CostReport, Option<Saving>)> {
    let (network, plan) = super::load_network_and_plan(arch, plan)?;
    let baseline = cost::price_batch(&Planned::new(&network, &PlanSpec::original())?, table, masking, profiles, batch)?;
    if plan.path.is_none() {
        return Ok((baseline, None));
    }
    let priced = cost::price_batch(&Planned::new(&network, &plan)?, table, masking, profiles, batch)?;
    let saving = Saving::between(&priced, &baseline);
    Ok((priced, Some(saving)))
}

fn mb(bits: u64) -> String {
    format!("{:.3}", bits as f64 / 8e6)
}

fn shape(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    parts.join("x")
}

/// The human-readable table; `single` is the same network priced for one image,
/// given for a batch.
fn text(r: &CostReport, saving: Option<&Saving>, single: Option<&CostReport>) -> String {
    let mut out = String::new();
    let plan = match &r.plan_file {
        Some(f) => format!("plan \"{}\" ({f})", r.plan),
        None => "no plan (regular ReLU everywhere)".to_string(),
    };
    let _ = writeln!(out, "{} ({}), {plan}", r.architecture, r.architecture_file);
    let _ = writeln!(
        out,
        "priced by protocol table \"{}\" ({}), conv masking {}; MB = 10^6 bytes\n",
        r.protocol, r.protocol_source, r.conv_masking
    );
    if r.batch > 1 {
        let _ = writeln!(out, "a batch of {} images per inference: every figure below is for the whole batch\n", r.batch);
    }
    let header = ["layer", "op", "output", "ReLUs", "rounds", "MB", "P0 MB", "P1 MB", "P2 MB"];
    let mut rows: Vec<[String; 9]> = r
        .layers
        .iter()
        .map(|l| {
            [
                l.name.clone(),
                l.op.clone(),
                shape(&l.output_shape),
                l.relus.to_string(),
                l.rounds.to_string(),
                mb(l.bits),
                mb(l.bits_by_party[0]),
                mb(l.bits_by_party[1]),
                mb(l.bits_by_party[2]),
            ]
        })
        .collect();
    let t = &r.total;
    rows.push([
        "total".into(),
        String::new(),
        String::new(),
        t.relus.to_string(),
        t.rounds.to_string(),
        mb(t.bits),
        mb(t.bits_by_party[0]),
        mb(t.bits_by_party[1]),
        mb(t.bits_by_party[2]),
    ]);
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    let lines = report::columns(&header.map(String::from), &rows, 3);
    for (i, line) in lines.iter().enumerate() {
        if i == lines.len() - 1 {
            // A rule above the total row, as wide as the header.
            let _ = writeln!(out, "{}", "-".repeat(lines[0].len()));
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "\nrounds by true message dependency (depth): {}", t.rounds_depth);
    let est: Vec<String> = r
        .estimates
        .iter()
        .map(|e| format!("{} {:.3} s ({} Mbit/s, {} ms per round)", e.profile, e.seconds, e.bandwidth_mbps, e.rtt_ms))
        .collect();
    let per = if r.batch > 1 { format!("per batch of {}", r.batch) } else { "per image".into() };
    let _ = writeln!(out, "estimated time {per}: {}", est.join("; "));
    let apart: Vec<String> = r.estimates.iter().map(|e| format!("{} {:.3} s", e.profile, e.seconds_apart)).collect();
    let _ = writeln!(out, "  with the three parties on machines of their own, sending side by side: {}", apart.join("; "));
    if let (Some(p), Some(one)) = (&r.per_image, single) {
        let secs: Vec<String> = p.seconds.iter().map(|(name, s)| format!("{name} {s:.4} s")).collect();
        let _ = writeln!(
            out,
            "per image in the batch: {:.3} MB ({:.1}% of one image alone, {} MB), {}",
            p.bytes / 1e6,
            100.0 * p.bits / one.total.bits.max(1) as f64,
            mb(one.total.bits),
            secs.join("; ")
        );
    }
    if t.compute_seconds > 0.0 {
        let _ = writeln!(out, "  (each includes {:.3} s of local computation from the table's [compute] section)", t.compute_seconds);
    }
    if let Some(s) = saving {
        let _ = writeln!(
            out,
            "against {}: ReLUs {} -> {} ({:.1}% fewer), rounds {} -> {}, {} MB -> {} MB ({:.1}% saved)",
            s.baseline_plan,
            s.baseline_relus,
            t.relus,
            s.relus_saved_percent,
            s.baseline_rounds,
            t.rounds,
            mb(s.baseline_bytes * 8),
            mb(t.bits),
            s.bytes_saved_percent
        );
    }
    out
}

/// Per-layer CSV with a final `total` row; the format of the golden files.
pub fn csv(r: &CostReport) -> String {
    layer_table(r).csv()
}

/// The per-layer table with a final `total` row, in the golden files' columns.
fn layer_table(r: &CostReport) -> report::Table {
    let header = [
        "layer",
        "op",
        "output_shape",
        "relus",
        "rounds",
        "rounds_depth",
        "bits",
        "bytes",
        "bits_p0",
        "bits_p1",
        "bits_p2",
        "bits_linear",
        "bits_drelu",
        "bits_mul",
    ];
    let mut table = report::Table::new(&header, 3);
    let t = &r.total;
    let rows = r
        .layers
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.op.as_str(),
                shape(&l.output_shape),
                l.relus,
                l.rounds,
                l.rounds_depth,
                l.bits,
                l.bits_by_party,
                l.bits_by_protocol,
            )
        })
        .chain(std::iter::once((
            "total",
            "",
            String::new(),
            t.relus,
            t.rounds,
            t.rounds_depth,
            t.bits,
            t.bits_by_party,
            t.bits_by_protocol,
        )));
    for (name, op, shape, relus, rounds, depth, bits, party, proto) in rows {
        let nums = [relus, rounds, depth, bits, bits / 8, party[0], party[1], party[2], proto.linear, proto.drelu, proto.mul];
        let mut rec = vec![name.to_string(), op.to_string(), shape];
        rec.extend(nums.iter().map(u64::to_string));
        table.push(rec);
    }
    table
}

/// The JSON report: the cost report, plus the saving against the original network
/// when there is one.
#[derive(Serialize)]
struct WithSaving<'a> {
    #[serde(flatten)]
    report: &'a CostReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    saving: Option<&'a Saving>,
}
