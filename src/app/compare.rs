//! `explore compare`: one network and plan priced under several protocols (built-in
//! tables or files), each beside the same network without sharing.

use crate::cost::compare::{Row, compare};
use crate::error::{Error, Result};
use crate::graph::sharing::Planned;
use crate::report::{self, Format, Table};
use crate::spec::PlanSpec;
use crate::spec::protocol::{BUILTIN, ProtocolTable};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Architecture TOML.
    pub arch: PathBuf,
    /// ReLU-sharing plan TOML; without one, the network as it is (every saving 0).
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Protocols, comma-separated: built-in names (securenn, falcon, crypten-ttp, delphi)
    /// or paths to protocol tables. Default: all built-in.
    #[arg(long, value_delimiter = ',')]
    pub protocols: Vec<String>,
    /// Network profiles TOML (as for `explore cost`).
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Output format: an aligned table; the per-protocol table as CSV or Markdown; JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Images per inference, as for `explore cost --batch`: figures are per batch.
    #[arg(long, default_value_t = 1, value_parser = super::cost::batch_size)]
    pub batch: u64,
    /// Write the output to this file instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let names: Vec<String> = if args.protocols.is_empty() { BUILTIN.iter().map(|(n, _)| n.to_string()).collect() } else { args.protocols };
    let tables = names
        .iter()
        .map(|n| match ProtocolTable::builtin(n) {
            Some(t) => Ok(t),
            None => ProtocolTable::load(Path::new(n)),
        })
        .collect::<Result<Vec<_>>>()?;
    let profiles = super::cost::profiles_or_builtin(args.profiles.as_deref())?;
    let (network, plan) = super::load_network_and_plan(&args.arch, args.plan.as_deref())?;
    let original = PlanSpec::original();
    let mut rows = Vec::new();
    let mut not_priced = Vec::new();
    for r in compare(&Planned::new(&network, &plan)?, &Planned::new(&network, &original)?, &tables, &profiles, args.batch) {
        match r {
            Ok(row) => rows.push(row),
            Err(e @ Error::NotPriced { .. }) => not_priced.push(e),
            Err(e) => return Err(e),
        }
    }
    // A table that cannot price the network leaves its row out and says why; with
    // no row left there is nothing to compare.
    if rows.is_empty() && !not_priced.is_empty() {
        return Err(not_priced.swap_remove(0));
    }
    for e in &not_priced {
        eprintln!("explore: left out: {e}");
    }
    let text = report::render(args.format, &rows, || text(&network.name, &plan.name, args.batch, &rows), || table(&rows));
    super::emit(args.out.as_deref(), &text)
}

fn text(arch: &str, plan: &str, batch: u64, rows: &[Row]) -> String {
    let mut out = format!("{arch} under plan \"{plan}\", against the same network without sharing; MB = 10^6 bytes\n");
    if batch > 1 {
        out += &format!("a batch of {batch} images per inference: every figure is for the whole batch\n");
    }
    out += "\n";
    out += &table(rows).text();
    out += "\n(rounds and MB total in brackets: the original network; linear: share of online bytes in products; saved: of total bytes, and of total seconds per profile)\n";
    out
}

/// One row per protocol.
fn table(rows: &[Row]) -> Table {
    let mut header = vec![
        "protocol".to_string(),
        "ReLUs".into(),
        "rounds".into(),
        "MB offline".into(),
        "MB online".into(),
        "MB total".into(),
        "linear".into(),
        "saved".into(),
    ];
    if let Some(r) = rows.first() {
        for t in &r.timings {
            header.push(format!("{} s online/total", t.profile));
            header.push(format!("{} saved", t.profile));
        }
    }
    let mb = |b: u64| format!("{:.3}", b as f64 / 1e6);
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut v = vec![
                r.protocol.clone(),
                r.relus.to_string(),
                format!("{} ({})", r.rounds, r.original_rounds),
                mb(r.offline_bytes),
                mb(r.online_bytes),
                format!("{} ({})", mb(r.total_bytes), mb(r.original_total_bytes)),
                format!("{:.0}%", 100.0 * r.linear_share),
                format!("{:.1}%", r.bytes_saved_percent),
            ];
            for t in &r.timings {
                v.push(format!("{:.3}/{:.3}", t.online_seconds, t.total_seconds));
                v.push(format!("{:.1}%", t.saved_percent));
            }
            v
        })
        .collect();
    Table { header, rows: body, left: 1 }
}
