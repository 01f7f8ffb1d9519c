//! `explore calibrate`: measure the simulator's local work per action on this
//! machine and print a protocol table with a `[compute]` section.

use crate::error::{Error, Result};
use crate::simulate::calibrate::{measure, section};
use crate::spec::protocol::{ProtocolTable, SECURENN_TOML};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Table to extend (default: the built-in SecureNN table).
    #[arg(long)]
    pub protocol: Option<PathBuf>,
    /// Threads to measure on (default 1: one image's work among many).
    #[arg(long, default_value_t = 1, value_parser = super::positive)]
    pub threads: usize,
    /// Repetitions per measurement; the median is kept.
    #[arg(long, default_value_t = 3, value_parser = super::positive)]
    pub repeats: usize,
    /// Write the table to this file instead of standard output.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let text = match &args.protocol {
        Some(path) => crate::spec::read_text(path)?,
        None => SECURENN_TOML.to_string(),
    };
    let name = args.protocol.as_deref().unwrap_or(Path::new("protocols/securenn.toml"));
    if ProtocolTable::parse(name, &text)?.compute.is_some() {
        return Err(Error::invalid(name, Some("[compute]".into()), "the table already has one; remove it to measure again"));
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build().map_err(|e| {
        Error::invalid(Path::new("(flags)"), Some(format!("--threads {}", args.threads)), format!("cannot start the threads: {e}"))
    })?;
    let compute = pool.install(|| measure(args.repeats));
    super::emit(args.out.as_deref(), &(text + &section(&compute, args.threads, args.repeats)))
}
