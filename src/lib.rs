//! `explore`: what ReLU sharing saves in secure inference, and what it costs.
//!
//! Data flows one way: `spec` (TOML files) -> `graph` (layer graph with shapes) ->
//! `sharing` (a plan applied to the graph) -> `cost` (action counts priced by a
//! protocol table) -> `report` (table, CSV, JSON).

pub mod compare;
pub mod cost;
pub mod data;
pub mod error;
pub mod graph;
pub mod infer;
pub mod model;
pub mod mpc;
pub mod plot;
pub mod report;
pub mod sharing;
pub mod simulate;
pub mod spec;
pub mod sweep;
pub mod train;
pub mod validate;

use std::path::Path;

/// Reads an architecture into a layer graph and a plan (or none: regular ReLU),
/// the first step of every command; `sharing::Planned::new` then joins them.
pub fn load_network_and_plan(arch: &Path, plan: Option<&Path>) -> error::Result<(graph::Network, spec::PlanSpec)> {
    let network = graph::Network::build(&spec::ArchSpec::load(arch)?)?;
    let plan = match plan {
        Some(p) => spec::PlanSpec::load(p)?,
        None => spec::PlanSpec::original(),
    };
    Ok((network, plan))
}

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
    let (network, plan) = load_network_and_plan(arch, plan)?;
    let original = spec::PlanSpec::original();
    let baseline = cost::price(&sharing::Planned::new(&network, &original)?, table, masking, profiles);
    if plan.path.is_none() {
        return Ok((baseline, None));
    }
    let priced = cost::price(&sharing::Planned::new(&network, &plan)?, table, masking, profiles);
    let saving = report::Saving::between(&priced, &baseline);
    Ok((priced, Some(saving)))
}

/// Loads an architecture, an optional plan, optional trained weights and optional
/// test images, and runs `simulate` on them (the whole `explore simulate`).
pub fn simulate_files(
    arch: &Path,
    plan: Option<&Path>,
    weights: Option<&Path>,
    data_dir: Option<&Path>,
    table: &cost::protocol::ProtocolTable,
    opts: &simulate::Options,
) -> error::Result<simulate::SimReport> {
    let (network, plan) = load_network_and_plan(arch, plan)?;
    simulate_planned(&sharing::Planned::new(&network, &plan)?, weights, data_dir, table, opts)
}

/// Secure inference of a planned network. Without weights, seeded random ones;
/// without images, generated inputs.
pub fn simulate_planned(
    planned: &sharing::Planned,
    weights: Option<&Path>,
    data_dir: Option<&Path>,
    table: &cost::protocol::ProtocolTable,
    opts: &simulate::Options,
) -> error::Result<simulate::SimReport> {
    let network = planned.network;
    let (params, meta, described) = match weights {
        Some(ckpt) => {
            let (p, meta) = train::checkpoint::load(ckpt, planned)?;
            (p, Some(meta), format!("checkpoint {}", ckpt.display()))
        }
        None => (model::Params::random(planned, opts.seed), None, format!("random (He-normal, seed {})", opts.seed)),
    };
    let inputs = match data_dir {
        None => simulate::Inputs::Generated,
        Some(dir) => {
            let shape = network.node(network.input).output.0.clone();
            let mut ds = data::load_raw(dir, Some(opts.samples), &shape)?;
            // Normalise as the checkpoint was trained; without one, by these images.
            let parse = |key: &str| -> Option<Vec<f32>> {
                let text = meta.as_ref()?.get(key)?;
                text.trim_matches(|c| c == '[' || c == ']').split(',').map(|v| v.trim().parse().ok()).collect()
            };
            let (mean, std) = match (parse("input_mean"), parse("input_std")) {
                (Some(m), Some(s)) if m.len() == shape[0] && s.len() == shape[0] => (m, s),
                _ => data::channel_stats(&ds.test),
            };
            data::normalise_with(&mut ds, &mean, &std);
            let images = (0..ds.test.len()).map(|i| ds.test.image(i).to_vec()).collect();
            simulate::Inputs::Images { images, labels: ds.test.labels.clone(), source: format!("test images of {}", dir.display()) }
        }
    };
    // Inference runs batchnorm folded into the layer before it.
    let params = params.folded(network);
    Ok(simulate::simulate(planned, table, opts, &params, &described, &inputs))
}

/// The dataset directory for a network (`--data`, `EXPLORE_DATA`, or a known place),
/// or an error saying how to give one.
pub fn locate_data(arch: &Path, network: &graph::Network, data_dir: Option<&Path>) -> error::Result<std::path::PathBuf> {
    let input_shape = &network.node(network.input).output.0;
    data::locate(data_dir, input_shape).ok_or_else(|| {
        error::Error::invalid(arch, None, "no dataset: pass --data DIR or set EXPLORE_DATA (Fashion-MNIST is also found where apt-get install dataset-fashion-mnist puts it)")
    })
}

/// Loads an architecture, plan and dataset and trains (the whole `explore train`):
/// a progress bar per epoch and one log line per epoch on standard error, and the
/// checkpoint written to `out` when given.
pub fn train_files(
    arch: &Path,
    plan: Option<&Path>,
    data_dir: Option<&Path>,
    limit: Option<usize>,
    resume: Option<&Path>,
    out: Option<&Path>,
    cfg: &train::TrainConfig,
) -> error::Result<train::TrainReport> {
    let (network, plan) = load_network_and_plan(arch, plan)?;
    let planned = sharing::Planned::new(&network, &plan)?;
    let dir = locate_data(arch, &network, data_dir)?;
    let dataset = data::load(&dir, limit, &network.node(network.input).output.0)?;
    train_planned(&planned, &dataset, resume, out, cfg, indicatif::ProgressBar::new(0))
}

/// Trains a planned network on a loaded dataset, drawing the epoch's progress on
/// `bar` and logging one line per epoch; writes the checkpoint to `out` when given.
pub fn train_planned(
    planned: &sharing::Planned,
    dataset: &data::Dataset,
    resume: Option<&Path>,
    out: Option<&Path>,
    cfg: &train::TrainConfig,
    bar: indicatif::ProgressBar,
) -> error::Result<train::TrainReport> {
    let mut params = match resume {
        Some(ckpt) => train::checkpoint::load(ckpt, planned)?.0,
        None => model::Params::random(planned, cfg.seed),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} batches, {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let epochs = cfg.epochs;
    let mut epoch = 1;
    bar.set_message(format!("1/{epochs}"));
    let report = train::train(
        planned,
        &mut params,
        dataset,
        cfg,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        |log| {
            bar.suspend(|| {
                eprintln!(
                    "{}epoch {}/{}: loss {:.4}, train {:.2}%, test {:.2}%, lr {:.4}, {:.1} s",
                    if planned.plan.path.is_some() { format!("{}: ", planned.plan.name) } else { String::new() },
                    log.epoch,
                    epochs,
                    log.loss,
                    100.0 * log.train_accuracy,
                    100.0 * log.test_accuracy,
                    log.lr,
                    log.seconds
                )
            });
            epoch += 1;
            bar.set_message(format!("{}/{epochs}", epoch.min(epochs)));
            bar.set_position(0);
        },
    );
    bar.finish_and_clear();
    if let Some(out) = out {
        let mut meta = std::collections::HashMap::new();
        meta.insert("epochs".to_string(), report.epochs.to_string());
        meta.insert("test_accuracy".to_string(), format!("{:.6}", report.test_accuracy));
        meta.insert("seed".to_string(), cfg.seed.to_string());
        meta.insert("input_mean".to_string(), format!("{:?}", dataset.mean));
        meta.insert("input_std".to_string(), format!("{:?}", dataset.std));
        train::checkpoint::save(out, planned, &params, meta)?;
    }
    Ok(report)
}

/// Loads a trained network and records ReLU patterns (written to `out` as
/// safetensors) and total variation over `samples` training images.
pub fn record_files(
    arch: &Path,
    plan: Option<&Path>,
    weights: &Path,
    data_dir: Option<&Path>,
    layers: &[String],
    samples: usize,
    out: Option<&Path>,
) -> error::Result<Vec<train::record::Variation>> {
    let (network, plan) = load_network_and_plan(arch, plan)?;
    let planned = sharing::Planned::new(&network, &plan)?;
    let (params, _) = train::checkpoint::load(weights, &planned)?;
    let shape = network.node(network.input).output.0.clone();
    let dir = data::locate(data_dir, &shape)
        .ok_or_else(|| error::Error::invalid(arch, None, "no dataset: pass --data DIR or set EXPLORE_DATA"))?;
    let dataset = data::load(&dir, Some(samples), &shape)?;
    let relus: Vec<_> = if layers.is_empty() {
        sharing::relu_layers(&network).collect()
    } else {
        layers
            .iter()
            .map(|name| match network.find(name) {
                Some(n) if network.node(n).op == Some(spec::Op::Relu) => Ok(n),
                _ => Err(error::Error::invalid(arch, Some(format!("--layers {name}")), "no ReLU layer of that name")),
            })
            .collect::<error::Result<_>>()?
    };
    let prepared = train::net::Prepared::new(&planned);
    let (patterns, tv) = train::record::record(&prepared, &params, &dataset.train, &relus, samples);
    if let Some(out) = out {
        let views: Vec<(String, safetensors::tensor::TensorView)> = patterns
            .iter()
            .map(|p| {
                let mut shape = vec![p.images];
                shape.extend(&p.shape);
                // Bytes and shape come from the same recording.
                (
                    format!("{}.pattern", p.layer),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::U8, shape, &p.bits).expect("shape matches data"),
                )
            })
            .collect();
        let mut info = std::collections::HashMap::new();
        info.insert("architecture".to_string(), network.name.clone());
        info.insert("plan".to_string(), plan.name.clone());
        info.insert("images".to_string(), samples.min(dataset.train.len()).to_string());
        let bytes =
            safetensors::serialize(views, Some(info)).map_err(|e| error::Error::invalid(out, None, format!("cannot serialise: {e}")))?;
        std::fs::write(out, bytes).map_err(|source| error::Error::Write { path: out.to_path_buf(), source })?;
    }
    Ok(tv)
}
