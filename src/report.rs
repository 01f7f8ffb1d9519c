//! Rendering cost reports: an aligned table for people, CSV and JSON for scripts.
//! MB means 10^6 bytes, as the paper uses.

use crate::cost::CostReport;
use serde::Serialize;
use std::fmt::Write as _;

/// How one plan compares with the same network without sharing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Saving {
    pub baseline_plan: String,
    pub baseline_relus: u64,
    pub baseline_rounds: u64,
    pub baseline_bytes: u64,
    /// Percent of the baseline's bytes saved (negative when the plan costs more).
    pub bytes_saved_percent: f64,
    pub relus_saved_percent: f64,
}

impl Saving {
    pub fn between(plan: &CostReport, baseline: &CostReport) -> Saving {
        let pct = |new: u64, old: u64| if old == 0 { 0.0 } else { 100.0 * (old as f64 - new as f64) / old as f64 };
        Saving {
            baseline_plan: baseline.plan.clone(),
            baseline_relus: baseline.total.relus,
            baseline_rounds: baseline.total.rounds,
            baseline_bytes: baseline.total.bytes,
            bytes_saved_percent: pct(plan.total.bytes, baseline.total.bytes),
            relus_saved_percent: pct(plan.total.relus, baseline.total.relus),
        }
    }
}

/// Lines of an aligned table: the header, then one per row; the first `left` columns
/// are left-aligned, the rest right-aligned, two spaces apart.
pub fn columns(header: &[String], rows: &[Vec<String>], left: usize) -> Vec<String> {
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    std::iter::once(header)
        .chain(rows.iter().map(Vec::as_slice))
        .map(|cells| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| if i < left { format!("{c:<w$}") } else { format!("{c:>w$}") })
                .collect();
            padded.join("  ").trim_end().to_string()
        })
        .collect()
}

fn mb(bits: u64) -> String {
    format!("{:.3}", bits as f64 / 8e6)
}

fn shape(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    parts.join("x")
}

/// The human-readable table.
pub fn table(r: &CostReport, saving: Option<&Saving>) -> String {
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
    let lines = columns(&header.map(String::from), &rows, 3);
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
    let _ = writeln!(out, "estimated time per image: {}", est.join("; "));
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
    let mut w = csv::Writer::from_writer(Vec::new());
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
    // Writing to a Vec cannot fail.
    w.write_record(header).expect("in-memory write");
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
        w.write_record(&rec).expect("in-memory write");
    }
    String::from_utf8(w.into_inner().expect("in-memory flush")).expect("CSV of UTF-8 fields is UTF-8")
}

/// JSON: the report, plus the saving against the original network when given.
pub fn json(r: &CostReport, saving: Option<&Saving>) -> String {
    #[derive(Serialize)]
    struct WithSaving<'a> {
        #[serde(flatten)]
        report: &'a CostReport,
        #[serde(skip_serializing_if = "Option::is_none")]
        saving: Option<&'a Saving>,
    }
    // Plain data with string keys: serialization cannot fail.
    serde_json::to_string_pretty(&WithSaving { report: r, saving }).expect("report serializes")
}
