//! `explore record`: a trained network's binary ReLU patterns on training images
//! (for clustering) and every layer's total variation (the paper's Figure 3).

use crate::error::{Error, Result};
use crate::graph::sharing::{Planned, relu_layers};
use crate::infer::checkpoint;
use crate::plot::{Figure, Mark, Series};
use crate::report::{self, Format, Table};
use crate::train::net::Prepared;
use crate::train::record::{Variation, record};
use std::path::{Path, PathBuf};

/// A trained network and its training images: what `record` and `cluster` read.
#[derive(clap::Args)]
pub struct Trained {
    /// Architecture TOML.
    pub arch: PathBuf,
    /// The plan the weights were trained under (default: regular ReLU).
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Trained weights (checkpoint from `explore train`).
    #[arg(long)]
    pub weights: PathBuf,
    /// Dataset directory (as for `explore train`); its training images are used.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub trained: Trained,
    /// ReLU layers whose patterns to record, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Number of training images.
    #[arg(long, default_value_t = 1000, value_parser = super::positive)]
    pub samples: usize,
    /// Write the patterns here (safetensors, one u8 tensor `<layer>.pattern` of
    /// shape [images, ...layer shape] per layer).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// The total-variation table: aligned text, CSV, Markdown or JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also draw the total variation per layer (the paper's Figure 3) to
    /// FIGURE.png and FIGURE.svg.
    #[arg(long)]
    pub figure: Option<PathBuf>,
    #[command(flatten)]
    pub limits: super::limits::MemoryArgs,
}

pub fn run(args: Args) -> Result<()> {
    let Trained { arch, plan, weights, data } = &args.trained;
    let (network, _) = super::load_network_and_plan(arch, None)?;
    args.limits.settings()?.check_training(arch, &network, Some(args.samples))?;
    let tv = record_files(arch, plan.as_deref(), weights, data.as_deref(), &args.layers, args.samples, args.out.as_deref())?;
    if let Some(stem) = &args.figure {
        let network = crate::spec::ArchSpec::load(arch)?.name;
        let fig = variation_figure(&network, args.samples, &tv);
        crate::plot::write(&fig, stem).map_err(|m| Error::Write { path: stem.clone(), source: std::io::Error::other(m) })?;
    }
    super::emit(None, &report::render(args.format, &tv, || variation_table(&tv, true).text(), || variation_table(&tv, false)))
}

/// One row per layer; `rounded` for people, full precision for CSV.
fn variation_table(tv: &[Variation], rounded: bool) -> Table {
    let header: &[&str] = if rounded {
        &["layer", "op", "total variation", "per neighbour pair"]
    } else {
        &["layer", "op", "total_variation", "per_neighbour_pair"]
    };
    let mut t = Table::new(header, 2);
    for v in tv {
        let (total, pair) = if rounded {
            (format!("{:.2}", v.total_variation), format!("{:.4}", v.per_neighbour_pair))
        } else {
            (v.total_variation.to_string(), v.per_neighbour_pair.to_string())
        };
        t.push(vec![v.layer.clone(), v.op.clone(), total, pair]);
    }
    t
}

/// The paper's Figure 3: total variation of each layer's output, per pair of
/// neighbouring activations, along the network; layer names beside the points.
pub fn variation_figure(network: &str, images: usize, tv: &[Variation]) -> Figure {
    let points: Vec<(f64, f64, String)> = tv.iter().enumerate().map(|(i, v)| (i as f64, v.per_neighbour_pair, v.layer.clone())).collect();
    Figure {
        title: format!("{network}: total variation across layers ({images} training images)"),
        x_label: "layer (order in the network)".into(),
        y_label: "total variation per neighbouring pair".into(),
        x_log: false,
        y_log: false,
        series: vec![
            Series::new("mean |difference| of neighbours", Mark::Line, points.clone()),
            Series::new(String::new(), Mark::Labelled, points),
        ],
    }
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
) -> Result<Vec<Variation>> {
    let (network, plan) = super::load_network_and_plan(arch, plan)?;
    let planned = Planned::new(&network, &plan)?;
    let (params, _) = checkpoint::load(weights, &planned)?;
    let dir = super::locate_data(arch, &network, data_dir)?;
    let dataset = crate::data::load(&dir, Some(samples), network.input_dims())?;
    let relus: Vec<_> = if layers.is_empty() { relu_layers(&network).collect() } else { super::relu_nodes(arch, &network, layers)? };
    let prepared = Prepared::new(&planned);
    let (patterns, tv) = record(&prepared, &params, &dataset.train, &relus, samples);
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
        let bytes = safetensors::serialize(views, Some(info)).map_err(|e| Error::invalid(out, None, format!("cannot serialise: {e}")))?;
        crate::sweep::store::write_atomic(out, &bytes)?;
    }
    Ok(tv)
}
