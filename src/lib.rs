//! `explore`: what ReLU sharing saves in secure inference, and what it costs.
//!
//! Data flows one way: `spec` (TOML files) -> `graph` (layer graph with shapes) ->
//! `sharing` (a plan applied to the graph) -> `cost` (action counts priced by a
//! protocol table) -> `report` (table, CSV, JSON).

pub mod allocator;
pub mod calibrate;
pub mod cluster;
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
/// test images, and runs `simulate` on them (the whole `explore simulate`), counting
/// finished samples on `bar` (`ProgressBar::hidden()` for none).
pub fn simulate_files(
    arch: &Path,
    plan: Option<&Path>,
    weights: Option<&Path>,
    data_dir: Option<&Path>,
    table: &cost::protocol::ProtocolTable,
    opts: &simulate::Options,
    bar: &indicatif::ProgressBar,
) -> error::Result<simulate::SimReport> {
    let (network, plan) = load_network_and_plan(arch, plan)?;
    simulate_planned(&sharing::Planned::new(&network, &plan)?, weights, data_dir, table, opts, bar)
}

/// Secure inference of a planned network. Without weights, seeded random ones;
/// without images, generated inputs.
pub fn simulate_planned(
    planned: &sharing::Planned,
    weights: Option<&Path>,
    data_dir: Option<&Path>,
    table: &cost::protocol::ProtocolTable,
    opts: &simulate::Options,
    bar: &indicatif::ProgressBar,
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
            let ds = load_as_trained(dir, opts.samples, network, meta.as_ref())?;
            let images = (0..ds.test.len()).map(|i| ds.test.image(i).to_vec()).collect();
            simulate::Inputs::Images { images, labels: ds.test.labels.clone(), source: format!("test images of {}", dir.display()) }
        }
    };
    // Inference runs batchnorm folded into the layer before it.
    let params = params.folded(network);
    Ok(simulate::simulate(planned, table, opts, &params, &described, &inputs, bar))
}

/// At most `limit` images per split of the dataset in `dir`, normalised as the
/// checkpoint with metadata `meta` was trained (without one, by the test images).
fn load_as_trained(
    dir: &Path,
    limit: usize,
    network: &graph::Network,
    meta: Option<&std::collections::HashMap<String, String>>,
) -> error::Result<data::Dataset> {
    let shape = network.node(network.input).output.0.clone();
    let mut ds = data::load_raw(dir, Some(limit), &shape)?;
    let parse = |key: &str| -> Option<Vec<f32>> {
        let text = meta?.get(key)?;
        text.trim_matches(|c| c == '[' || c == ']').split(',').map(|v| v.trim().parse().ok()).collect()
    };
    let (mean, std) = match (parse("input_mean"), parse("input_std")) {
        (Some(m), Some(s)) if m.len() == shape[0] && s.len() == shape[0] => (m, s),
        _ => data::channel_stats(&ds.test),
    };
    data::normalise_with(&mut ds, &mean, &std);
    Ok(ds)
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
    let relus: Vec<_> = if layers.is_empty() { sharing::relu_layers(&network).collect() } else { relu_nodes(arch, &network, layers)? };
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

/// The ReLU layers named by `--layers`, or an error naming the first that is not one.
fn relu_nodes(arch: &Path, network: &graph::Network, names: &[String]) -> error::Result<Vec<petgraph::graph::NodeIndex>> {
    names
        .iter()
        .map(|name| match network.find(name) {
            Some(n) if network.node(n).op == Some(spec::Op::Relu) => Ok(n),
            _ => Err(error::Error::invalid(arch, Some(format!("--layers {name}")), "no ReLU layer of that name")),
        })
        .collect()
}

/// What `explore cluster` asks for.
pub struct ClusterRequest<'a> {
    pub arch: &'a Path,
    pub plan: Option<&'a Path>,
    pub weights: &'a Path,
    pub data_dir: Option<&'a Path>,
    /// ReLU layers to cluster (their inputs' decision patterns).
    pub layers: &'a [String],
    pub window: spec::plan::Window,
    pub edge: spec::Edge,
    pub clusters: usize,
    /// Training images to record.
    pub samples: usize,
    /// The assignment file (safetensors); maps go beside it as `<stem>-<layer>.png`.
    pub out: &'a Path,
    /// A plan TOML that uses the assignment, when wanted.
    pub plan_out: Option<&'a Path>,
}

/// Records a trained network's ReLU patterns on training images, clusters each chosen
/// layer, and writes the assignment, a cluster map per layer and optionally a plan.
pub fn cluster_files(req: &ClusterRequest) -> error::Result<cluster::ClusterReport> {
    use spec::plan::Window;
    let (network, plan) = load_network_and_plan(req.arch, req.plan)?;
    let planned = sharing::Planned::new(&network, &plan)?;
    let (params, meta) = train::checkpoint::load(req.weights, &planned)?;
    let dir = locate_data(req.arch, &network, req.data_dir)?;
    let dataset = load_as_trained(&dir, req.samples, &network, Some(&meta))?;
    let nodes = relu_nodes(req.arch, &network, req.layers)?;
    let started = std::time::Instant::now();
    let prepared = train::net::Prepared::new(&planned);
    let (patterns, _) = train::record::record(&prepared, &params, &dataset.train, &nodes, req.samples);
    let record_seconds = started.elapsed().as_secs_f64();
    let mut layers = Vec::new();
    let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    let write_err = |path: &Path, e: String| error::Error::Write { path: path.to_path_buf(), source: std::io::Error::other(e) };
    for p in &patterns {
        let t = std::time::Instant::now();
        let ids = cluster::cluster_layer(p, req.window, req.edge, req.clusters)
            .map_err(|m| error::Error::invalid(req.arch, Some(format!("layer \"{}\"", p.layer)), m))?;
        let seconds = t.elapsed().as_secs_f64();
        let (c, h, w) = (p.shape[0], p.shape[1], p.shape[2]);
        let stem = req.out.with_extension("");
        let map = std::path::PathBuf::from(format!("{}-{}.png", stem.display(), p.layer));
        cluster::map_image(&ids, (c, h, w), if h <= 16 { 6 } else { 3 }).save(&map).map_err(|e| write_err(&map, e.to_string()))?;
        let rects = sharing::window_rects(h, w, req.window, req.edge);
        layers.push(cluster::ClusterLayer {
            layer: p.layer.clone(),
            shape: p.shape.clone(),
            decisions_per_channel: rects.len() * req.clusters,
            largest_cluster_share: cluster::largest_share(&ids, (c, h, w), &rects, req.clusters),
            seconds,
            map: map.display().to_string(),
        });
        tensors.push((p.layer.clone(), ids.iter().flat_map(|v| v.to_le_bytes()).collect(), p.shape.clone()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, bytes, shape)| {
            // Bytes and shape come from the same clustering.
            (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::U32, shape.clone(), bytes).expect("shape matches data"))
        })
        .collect();
    let window_text = match req.window {
        Window::Full => "full".to_string(),
        Window::Size(h, w) => format!("{h}x{w}"),
    };
    let edge_text = if req.edge == spec::Edge::Merge { "merge" } else { "partial" };
    let mut info = std::collections::HashMap::new();
    info.insert("architecture".to_string(), network.name.clone());
    info.insert("weights".to_string(), req.weights.display().to_string());
    info.insert("images".to_string(), patterns.first().map_or(0, |p| p.images).to_string());
    info.insert("window".to_string(), window_text.clone());
    info.insert("edge".to_string(), edge_text.to_string());
    info.insert("clusters".to_string(), req.clusters.to_string());
    info.insert("method".to_string(), "single-linkage agglomerative, Hamming distance of ReLU decisions".to_string());
    let bytes = safetensors::serialize(views, Some(info)).map_err(|e| write_err(req.out, e.to_string()))?;
    sweep::store::write_atomic(req.out, &bytes)?;
    if let Some(plan_out) = req.plan_out {
        // The plan names the assignment by a path relative to itself when they share a folder.
        let same_folder = std::fs::canonicalize(plan_out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
            .ok()
            .zip(std::fs::canonicalize(req.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))).ok())
            .is_some_and(|(a, b)| a == b);
        let assignment = if same_folder {
            req.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        } else {
            std::fs::canonicalize(req.out).unwrap_or(req.out.to_path_buf()).display().to_string()
        };
        let window_toml = match req.window {
            Window::Full => "\"full\"".to_string(),
            Window::Size(h, w) if h == w => h.to_string(),
            Window::Size(h, w) => format!("[{h}, {w}]"),
        };
        let mut text = format!(
            "# Written by explore cluster: {} clusters per {window_text} window of each channel, from the ReLU\n# decisions of {} on {} training images.\nname = \"{}\"\narchitecture = \"{}\"\n",
            req.clusters,
            req.weights.display(),
            patterns.first().map_or(0, |p| p.images),
            plan_out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "clusters".into()),
            network.name
        );
        for l in &layers {
            text += &format!(
                "\n[relu.{}]\ngroup = \"clusters\"\nwindow = {window_toml}\nclusters = {}\nedge = \"{edge_text}\"\ndecision = \"learned\"\nweights = \"public\"\nassignment = \"{assignment}\"\n",
                l.layer, req.clusters
            );
        }
        sweep::store::write_atomic(plan_out, text.as_bytes())?;
    }
    Ok(cluster::ClusterReport {
        architecture: network.name.clone(),
        images: patterns.first().map_or(0, |p| p.images),
        record_seconds,
        threads: rayon::current_num_threads(),
        layers,
        assignment: req.out.display().to_string(),
        plan: req.plan_out.map(|p| p.display().to_string()),
    })
}
