//! `explore merge`: unites the stores of a sweep's shards and writes the sweep's
//! results.csv, pareto.csv, skipped.csv and plots as an unsharded run would.

use crate::error::Result;
use crate::report::Format;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The shards' stores (the folders given as --store, or output/<sweep>); one when
    /// they shared it.
    #[arg(required = true)]
    pub stores: Vec<PathBuf>,
    /// The merged sweep's folder: its store (what the stores hold, copied) and outputs.
    /// May be one of the stores.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Write the results of the points found and list the rest in skipped.csv,
    /// instead of stopping when some are missing.
    #[arg(long)]
    pub partial: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// The summary printed at the end (results.csv is written in any case).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn run(args: Args) -> Result<()> {
    let prepared = crate::sweep::merge::prepare(&args.stores, &args.out, args.partial, args.quiet)?;
    let outcome = crate::sweep::run(&prepared.spec, &prepared.options)?;
    let extra = format!(" (merged {} shard records, {} entries copied)", prepared.shards, prepared.copied);
    super::sweep::report(&prepared.spec.name, &outcome, args.format, &extra)
}
