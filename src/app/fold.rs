//! `explore fold`: a checkpoint of a network with batchnorm, rewritten for the same
//! network without it. Inference folds each batchnorm into the conv or linear layer
//! before it anyway; this writes the checkpoint that the network without batchnorm
//! (`architectures/cifar10.toml` for `cifar10_bn.toml`) loads, so that its plans,
//! sweeps and simulations use the trained weights.

use crate::error::{Error, Result};
use crate::graph::sharing::Planned;
use crate::infer::checkpoint;
use crate::infer::model::Params;
use crate::spec::PlanSpec;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The architecture the checkpoint was trained as (with batchnorm).
    pub arch: PathBuf,
    /// Its checkpoint (from `explore train`, under the original plan).
    #[arg(long)]
    pub weights: PathBuf,
    /// The same network without batchnorm.
    #[arg(long)]
    pub into: PathBuf,
    /// The checkpoint to write.
    #[arg(long, short)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let layers = fold_files(&args.arch, &args.weights, &args.into, &args.out)?;
    super::emit(None, &format!("folded {} batchnorm layers; wrote {}\n", layers, args.out.display()))
}

/// Folds and writes; returns how many batchnorm layers were folded.
pub fn fold_files(arch: &Path, weights: &Path, into: &Path, out: &Path) -> Result<usize> {
    let original = PlanSpec::original();
    let (with_bn, _) = super::load_network_and_plan(arch, None)?;
    let (without, _) = super::load_network_and_plan(into, None)?;
    let (params, mut meta) = checkpoint::load(weights, &Planned::new(&with_bn, &original)?)?;
    let folded = params.folded(&with_bn);
    let target = Planned::new(&without, &original)?;
    // Every parameter of the target, of the same size, and nothing else.
    let template = Params::random(&target, 0);
    for (name, p) in &template.layers {
        match folded.layers.get(name) {
            Some(f) if f.weight.len() == p.weight.len() && f.bias.len() == p.bias.len() => {}
            Some(_) => {
                return Err(Error::invalid(into, Some(format!("layer \"{name}\"")), "its parameters differ in size from the checkpoint's"));
            }
            None => return Err(Error::invalid(into, Some(format!("layer \"{name}\"")), "the checkpoint has no such layer")),
        }
    }
    if let Some(extra) = folded.layers.keys().find(|k| !template.layers.contains_key(*k)) {
        return Err(Error::invalid(
            into,
            Some(format!("layer \"{extra}\"")),
            "the checkpoint has it and this network does not (only batchnorm folds away)",
        ));
    }
    let count = params.layers.len() - folded.layers.len();
    meta.insert("folded_from".into(), serde_json::to_string(&arch.display().to_string()).expect("a string serializes"));
    checkpoint::save(out, &target, &folded, meta)?;
    Ok(count)
}
