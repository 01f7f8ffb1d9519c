//! The commands: one module per `explore` subcommand. Each holds its raw arguments
//! (`Args`, parsed by clap in `main.rs`), turns them into checked settings, calls the
//! library layers below, and renders the result. Nothing below `app` imports it.

pub mod calibrate;
pub mod cluster;
pub mod compare;
pub mod cost;
pub mod fold;
pub mod import;
pub mod limits;
pub mod merge;
pub mod party;
pub mod protocol;
pub mod record;
pub mod search;
pub mod simulate;
pub mod sweep;
pub mod train;
pub mod validate;

use crate::error::{Error, Result};
use crate::graph::Network;
use crate::spec::PlanSpec;
use petgraph::graph::NodeIndex;
use std::path::{Path, PathBuf};

/// Settings every command reads from the environment, checked before any work
/// (`EXPLORE_SIMD`: a typo must not pass for a timing of a narrower variant).
pub fn check_env() -> Result<()> {
    crate::mpc::cpu::check_env()
}

/// Reads an architecture into a layer graph and a plan (or none: regular ReLU),
/// the first step of most commands; `Planned::new` then joins them.
pub fn load_network_and_plan(arch: &Path, plan: Option<&Path>) -> Result<(Network, PlanSpec)> {
    let network = Network::build(&crate::spec::ArchSpec::load(arch)?)?;
    let plan = match plan {
        Some(p) => PlanSpec::load(p)?,
        None => PlanSpec::original(),
    };
    Ok((network, plan))
}

/// The dataset directory for a network (`--data`, `EXPLORE_DATA`, or a known place),
/// or an error saying how to give one.
pub fn locate_data(arch: &Path, network: &Network, data_dir: Option<&Path>) -> Result<PathBuf> {
    crate::data::locate(data_dir, network.input_dims()).ok_or_else(|| {
        Error::invalid(
            arch,
            None,
            "no dataset: pass --data DIR or set EXPLORE_DATA (Fashion-MNIST is also found where apt-get install dataset-fashion-mnist puts it)",
        )
    })
}

/// The ReLU layers named by `--layers`, or an error naming the first that is not one.
pub fn relu_nodes(arch: &Path, network: &Network, names: &[String]) -> Result<Vec<NodeIndex>> {
    names
        .iter()
        .map(|name| match network.find(name) {
            Some(n) if network.node(n).op == Some(crate::spec::Op::Relu) => Ok(n),
            _ => Err(Error::invalid(arch, Some(format!("--layers {name}")), "no ReLU layer of that name")),
        })
        .collect()
}

/// Writes a command's output to `out`, or to standard output.
pub fn emit(out: Option<&Path>, text: &str) -> Result<()> {
    match out {
        Some(path) => crate::sweep::store::write_atomic(path, text.as_bytes()),
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`explore ... | head`) is not an error of ours.
            match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(Error::Write { path: PathBuf::from("(standard output)"), source: e })
                }
                _ => Ok(()),
            }
        }
    }
}

/// A count of at least 1 (clap's parser for `--samples`, `--epochs`, ...).
pub fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A clustering window: `full`, a side (`8`) or `HxW` (`8x4`).
pub fn window(s: &str) -> std::result::Result<crate::spec::plan::Window, String> {
    use crate::spec::plan::Window;
    if s == "full" {
        return Ok(Window::Full);
    }
    let side = |t: &str| t.parse::<usize>().ok().filter(|&v| v > 0);
    match s.split_once('x') {
        None => side(s).map(|k| Window::Size(k, k)),
        Some((h, w)) => side(h).zip(side(w)).map(|(h, w)| Window::Size(h, w)),
    }
    .ok_or_else(|| format!("expected full, a side (8) or HxW (8x4), got {s}"))
}
