//! `explore`: what ReLU sharing saves in secure inference, and what it costs.
//!
//! Data flows one way: `spec` (TOML files) -> `graph` (layer graph with shapes) ->
//! `sharing` (a plan applied to the graph) -> `cost` (action counts priced by a
//! protocol table) -> `report` (table, CSV, JSON).

pub mod cost;
pub mod data;
pub mod error;
pub mod graph;
pub mod infer;
pub mod model;
pub mod mpc;
pub mod report;
pub mod sharing;
pub mod simulate;
pub mod spec;

use std::path::Path;

/// Loads an architecture and an optional plan and prices them; with a plan, also
/// prices the network without it and reports the saving. The whole `explore cost`
/// pipeline, for the CLI and for tests.
pub fn cost_files(
    arch: &Path,
    plan: Option<&Path>,
    table: &cost::protocol::ProtocolTable,
    masking: Option<cost::protocol::ConvMasking>,
    profiles: &[cost::profile::Profile],
) -> error::Result<(cost::CostReport, Option<report::Saving>)> {
    let network = graph::Network::build(&spec::ArchSpec::load(arch)?)?;
    let original = spec::PlanSpec::original();
    let baseline = cost::price(&sharing::Planned::new(&network, &original)?, table, masking, profiles);
    match plan {
        None => Ok((baseline, None)),
        Some(path) => {
            let plan = spec::PlanSpec::load(path)?;
            let priced = cost::price(&sharing::Planned::new(&network, &plan)?, table, masking, profiles);
            let saving = report::Saving::between(&priced, &baseline);
            Ok((priced, Some(saving)))
        }
    }
}

/// Loads an architecture and an optional plan and runs `simulate` on them.
pub fn simulate_files(
    arch: &Path,
    plan: Option<&Path>,
    table: &cost::protocol::ProtocolTable,
    opts: &simulate::Options,
) -> error::Result<simulate::SimReport> {
    let network = graph::Network::build(&spec::ArchSpec::load(arch)?)?;
    let plan = match plan {
        Some(p) => spec::PlanSpec::load(p)?,
        None => spec::PlanSpec::original(),
    };
    let planned = sharing::Planned::new(&network, &plan)?;
    Ok(simulate::simulate(&planned, table, opts))
}
