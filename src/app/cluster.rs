//! `explore cluster`: record a trained network's ReLU decisions on training images,
//! cluster each chosen layer (per channel and window), and write the assignment, a
//! map per layer and optionally a plan that uses them.

use crate::error::{Error, Result};
use crate::graph::sharing::{Planned, window_rects};
use crate::infer::checkpoint;
use crate::report::{self, Format, Table};
use crate::spec::Edge;
use crate::spec::plan::Window;
use crate::train::cluster::{ClusterLayer, ClusterReport, cluster_layer, largest_share, map_image};
use crate::train::net::Prepared;
use crate::train::record::record;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub trained: super::record::Trained,
    /// ReLU layers to cluster, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub layers: Vec<String>,
    /// Window to cluster: `full` (the whole map of a channel), `8` or `8x4`.
    #[arg(long, default_value = "full", value_parser = super::window)]
    pub window: Window,
    /// Clusters per window.
    #[arg(long, value_parser = super::positive)]
    pub clusters: usize,
    /// Windows at the map's edge: partial (smaller windows) or merge (joined to
    /// their neighbour).
    #[arg(long, value_enum, default_value_t = Edge::Partial)]
    pub edge: Edge,
    /// Training images whose decisions are clustered.
    #[arg(long, default_value_t = 2000, value_parser = super::positive)]
    pub samples: usize,
    /// The assignment file to write (safetensors, one u32 [C, H, W] tensor per
    /// layer); cluster maps go beside it as <stem>-<layer>.png.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Also write a plan TOML that shares each layer by these clusters.
    #[arg(long)]
    pub plan_out: Option<PathBuf>,
    /// Output format: a summary per layer as text, CSV or Markdown, or JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub limits: super::limits::MemoryArgs,
}

pub fn run(args: Args) -> Result<()> {
    let t = &args.trained;
    let req = ClusterRequest {
        arch: &t.arch,
        plan: t.plan.as_deref(),
        weights: &t.weights,
        data_dir: t.data.as_deref(),
        layers: &args.layers,
        window: args.window,
        edge: args.edge,
        clusters: args.clusters,
        samples: args.samples,
        out: &args.out,
        plan_out: args.plan_out.as_deref(),
    };
    let (network, _) = super::load_network_and_plan(&t.arch, None)?;
    args.limits.settings()?.check_training(&t.arch, &network, Some(args.samples))?;
    let r = cluster_files(&req)?;
    super::emit(None, &report::render(args.format, &r, || text(&r), || layer_table(&r)))
}

fn layer_table(r: &ClusterReport) -> Table {
    let mut t = Table::new(&["layer", "shape", "decisions/channel", "largest cluster", "seconds", "map"], 2);
    for l in &r.layers {
        t.push(vec![
            l.layer.clone(),
            format!("{:?}", l.shape),
            l.decisions_per_channel.to_string(),
            format!("{:.1}%", 100.0 * l.largest_cluster_share),
            format!("{:.2}", l.seconds),
            l.map.clone(),
        ]);
    }
    t
}

fn text(r: &ClusterReport) -> String {
    let mut t = format!(
        "{}: ReLU decisions of {} training images recorded in {:.1} s ({} threads)\n",
        r.architecture, r.images, r.record_seconds, r.threads
    );
    t += &layer_table(r).text();
    t += &format!("wrote {}", r.assignment);
    if let Some(p) = &r.plan {
        t += &format!(" and {p}");
    }
    t + "\n"
}

/// A plan file as `explore cluster --plan-out` writes it.
#[derive(Serialize)]
struct PlanFile {
    name: String,
    architecture: String,
    relu: BTreeMap<String, ReluEntry>,
}

#[derive(Serialize)]
struct ReluEntry {
    group: &'static str,
    window: toml::Value,
    clusters: usize,
    edge: &'static str,
    decision: &'static str,
    weights: &'static str,
    assignment: String,
}

/// What `explore cluster` asks for.
pub struct ClusterRequest<'a> {
    pub arch: &'a Path,
    pub plan: Option<&'a Path>,
    pub weights: &'a Path,
    pub data_dir: Option<&'a Path>,
    /// ReLU layers to cluster (their inputs' decision patterns).
    pub layers: &'a [String],
    pub window: Window,
    pub edge: Edge,
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
pub fn cluster_files(req: &ClusterRequest) -> Result<ClusterReport> {
    let (network, plan) = super::load_network_and_plan(req.arch, req.plan)?;
    let planned = Planned::new(&network, &plan)?;
    let nodes = super::relu_nodes(req.arch, &network, req.layers)?;
    // Checked before anything is loaded: a window must fit every chosen layer's map.
    for &n in &nodes {
        let name = &network.node(n).name;
        let Some((_, h, w)) = network.input_shape(n).chw() else {
            return Err(Error::invalid(
                req.arch,
                Some(format!("--layers {name}")),
                "clustering needs a [C, H, W] map; this layer's input is flat",
            ));
        };
        if let Window::Size(wh, ww) = req.window
            && (wh > h || ww > w)
        {
            return Err(Error::invalid(
                req.arch,
                Some(format!("--window {wh}x{ww}")),
                format!("larger than layer \"{name}\"'s {h}x{w} map"),
            ));
        }
        let (wh, ww) = match req.window {
            Window::Full => (h, w),
            Window::Size(wh, ww) => (wh, ww),
        };
        if wh * ww < req.clusters {
            return Err(Error::invalid(
                req.arch,
                Some(format!("--clusters {}", req.clusters)),
                format!("more clusters than the {wh}x{ww} window of \"{name}\" has activations"),
            ));
        }
    }
    let (params, meta) = checkpoint::load(req.weights, &planned)?;
    let dir = super::locate_data(req.arch, &network, req.data_dir)?;
    let stats = checkpoint::input_stats(&meta, network.input_dims()[0]);
    let dataset = crate::data::load_normalised(&dir, req.samples, network.input_dims(), stats)?;
    let started = std::time::Instant::now();
    let prepared = Prepared::new(&planned);
    let (patterns, _) = record(&prepared, &params, &dataset.train, &nodes, req.samples);
    let record_seconds = started.elapsed().as_secs_f64();
    let mut layers = Vec::new();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u32>)> = Vec::new();
    let write_err = |path: &Path, e: String| Error::Write { path: path.to_path_buf(), source: std::io::Error::other(e) };
    for p in &patterns {
        let t = std::time::Instant::now();
        let ids = cluster_layer(p, req.window, req.edge, req.clusters)
            .map_err(|m| Error::invalid(req.arch, Some(format!("layer \"{}\"", p.layer)), m))?;
        let seconds = t.elapsed().as_secs_f64();
        let (c, h, w) = (p.shape[0], p.shape[1], p.shape[2]);
        let stem = req.out.with_extension("");
        let map = std::path::PathBuf::from(format!("{}-{}.png", stem.display(), p.layer));
        map_image(&ids, (c, h, w), if h <= 16 { 6 } else { 3 }).save(&map).map_err(|e| write_err(&map, e.to_string()))?;
        let rects = window_rects(h, w, req.window, req.edge);
        layers.push(ClusterLayer {
            layer: p.layer.clone(),
            shape: p.shape.clone(),
            decisions_per_channel: rects.len() * req.clusters,
            largest_cluster_share: largest_share(&ids, (c, h, w), &rects, req.clusters),
            seconds,
            map: map.display().to_string(),
        });
        tensors.push((p.layer.clone(), p.shape.clone(), ids));
    }
    let window_text = match req.window {
        Window::Full => "full".to_string(),
        Window::Size(h, w) => format!("{h}x{w}"),
    };
    let edge_text = if req.edge == Edge::Merge { "merge" } else { "partial" };
    let mut info = std::collections::HashMap::new();
    info.insert("architecture".to_string(), network.name.clone());
    info.insert("weights".to_string(), req.weights.display().to_string());
    info.insert("images".to_string(), patterns.first().map_or(0, |p| p.images).to_string());
    info.insert("window".to_string(), window_text.clone());
    info.insert("edge".to_string(), edge_text.to_string());
    info.insert("clusters".to_string(), req.clusters.to_string());
    info.insert("method".to_string(), "single-linkage agglomerative, Hamming distance of ReLU decisions".to_string());
    crate::spec::plan::Assignment::write(req.out, &tensors, info).map_err(|e| write_err(req.out, e.to_string()))?;
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
        let window = match req.window {
            Window::Full => toml::Value::from("full"),
            Window::Size(h, w) if h == w => toml::Value::from(h as i64),
            Window::Size(h, w) => toml::Value::from(vec![h as i64, w as i64]),
        };
        let relu = layers
            .iter()
            .map(|l| {
                let entry = ReluEntry {
                    group: "clusters",
                    window: window.clone(),
                    clusters: req.clusters,
                    edge: edge_text,
                    decision: "learned",
                    weights: "public",
                    assignment: assignment.clone(),
                };
                (l.layer.clone(), entry)
            })
            .collect();
        let file = PlanFile {
            name: plan_out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "clusters".into()),
            architecture: network.name.clone(),
            relu,
        };
        let body = toml::to_string(&file).map_err(|e| write_err(plan_out, e.to_string()))?;
        let header = format!(
            "# Written by explore cluster: {} clusters per {window_text} window of each channel, from the ReLU\n# decisions of {} on {} training images.\n",
            req.clusters,
            req.weights.display(),
            patterns.first().map_or(0, |p| p.images),
        );
        let text = header + &body;
        crate::sweep::store::write_atomic(plan_out, text.as_bytes())?;
    }
    Ok(ClusterReport {
        architecture: network.name.clone(),
        images: patterns.first().map_or(0, |p| p.images),
        record_seconds,
        threads: rayon::current_num_threads(),
        layers,
        assignment: req.out.display().to_string(),
        plan: req.plan_out.map(|p| p.display().to_string()),
    })
}
