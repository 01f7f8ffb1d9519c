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
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i < 3 {
                let _ = write!(s, "{cell:<w$}  ");
            } else {
                let _ = write!(s, "{cell:>w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&header.map(String::from)));
    for (i, row) in rows.iter().enumerate() {
        if i == rows.len() - 1 {
            let _ = writeln!(out, "{}", "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
        }
        let _ = writeln!(out, "{}", line(row));
    }
    let _ = writeln!(out, "\nrounds by true message dependency (depth): {}", t.rounds_depth);
    let est: Vec<String> = r
        .estimates
        .iter()
        .map(|e| format!("{} {:.3} s ({} Mbit/s, {} ms per round)", e.profile, e.seconds, e.bandwidth_mbps, e.rtt_ms))
        .collect();
    let _ = writeln!(out, "estimated time per image: {}", est.join("; "));
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
