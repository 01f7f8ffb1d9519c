//! `explore import`: an ONNX model (as `torch.onnx.export` writes it) to our
//! architecture TOML, priced and checked as any other; with `--weights`, its
//! initializers as a checkpoint that `simulate --weights` and `train --init` read.

use crate::error::{Error, Result};
use crate::graph::Network;
use crate::graph::sharing::Planned;
use crate::infer::model::{LayerParams, Params};
use crate::spec::onnx::{Imported, ImportedLayer, Tensor};
use crate::spec::{ArchSpec, Op, PlanSpec};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// ONNX model with a fixed input size and a batch of 1 (or a named batch
    /// dimension). Supported: Conv, Gemm, MatMul (+ bias Add), Relu, MaxPool,
    /// AveragePool, GlobalAveragePool, BatchNormalization, Add, Flatten, Reshape to
    /// [batch, -1], Identity, Dropout. Any other operator is refused, naming the node.
    pub model: PathBuf,
    /// Where to write the architecture TOML.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Also write the model's weights here (safetensors), named as `explore train`
    /// names them; refused for a model exported without its weights.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// The network's name in the TOML and checkpoint (default: the file's stem).
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let imported = crate::spec::onnx::read(&args.model)?;
    if args.weights.is_some() && !imported.has_weights {
        return Err(Error::invalid(
            &args.model,
            None,
            "holds no weights (exported with export_params=False): import the architecture without --weights",
        ));
    }
    let stem = args.model.file_stem().map_or("imported".into(), |s| s.to_string_lossy().into_owned());
    let name = args.name.clone().unwrap_or(stem);
    let text = architecture_toml(&imported, &name, &args.model.display().to_string());
    // What we write must read back as a network: checked before anything is written.
    let network = Network::build(&ArchSpec::parse(&args.out, &text)?)?;
    super::emit(Some(&args.out), &text)?;
    let mut summary = format!("wrote {} ({} layers)", args.out.display(), network.order.len());
    if let Some(path) = &args.weights {
        let plan = PlanSpec::original();
        let planned = Planned::new(&network, &plan)?;
        let params = params(&imported);
        let meta = HashMap::from([
            ("source".to_string(), format!("imported from {}", args.model.display())),
            ("command".to_string(), std::iter::once("explore".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ")),
        ]);
        crate::infer::checkpoint::save(path, &planned, &params, meta)?;
        // Read back with the checks `simulate --weights` makes (names, shapes).
        crate::infer::checkpoint::load(path, &planned)?;
        summary += &format!(" and {}", path.display());
    }
    eprintln!("{summary}");
    Ok(())
}

/// The architecture file as a hand-written one reads: a header comment, then name,
/// input and layers, keys in the usual order (serde keeps a struct's field order).
fn architecture_toml(imported: &Imported, name: &str, source: &str) -> String {
    #[derive(serde::Serialize)]
    struct File<'a> {
        name: &'a str,
        description: String,
        input: Input<'a>,
        layers: Vec<Layer>,
    }
    #[derive(serde::Serialize)]
    struct Input<'a> {
        shape: &'a [usize],
    }
    #[derive(serde::Serialize, Default)]
    struct Layer {
        name: String,
        op: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        out_channels: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        out_features: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        kernel: Option<Pair>,
        #[serde(skip_serializing_if = "Option::is_none")]
        stride: Option<Pair>,
        #[serde(skip_serializing_if = "Option::is_none")]
        padding: Option<Pair>,
        #[serde(skip_serializing_if = "Option::is_none")]
        p: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<String>>,
    }
    /// One number for a square size, [height, width] otherwise.
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Pair {
        Square(usize),
        Sides([usize; 2]),
    }
    let pair = |p: (usize, usize)| Some(if p.0 == p.1 { Pair::Square(p.0) } else { Pair::Sides([p.0, p.1]) });
    let mut previous = "input".to_string();
    let layers = imported
        .layers
        .iter()
        .map(|l| {
            let mut out = Layer { name: l.name.clone(), op: l.op.kind(), ..Layer::default() };
            match &l.op {
                Op::Conv { out_channels, kernel, stride, padding } => {
                    out.out_channels = Some(*out_channels);
                    (out.kernel, out.stride, out.padding) = (pair(*kernel), pair(*stride), pair(*padding));
                }
                Op::AvgPool { kernel, stride, padding } => {
                    (out.kernel, out.stride, out.padding) = (pair(*kernel), pair(*stride), pair(*padding))
                }
                Op::MaxPool { kernel, stride } => (out.kernel, out.stride) = (pair(*kernel), pair(*stride)),
                Op::Linear { out_features } => out.out_features = Some(*out_features),
                Op::Dropout { p } => out.p = Some(*p),
                Op::Relu | Op::Flatten | Op::Add | Op::BatchNorm => {}
            }
            // Inputs are written only where a layer does not read the one before it.
            if l.inputs != [previous.clone()] {
                out.inputs = Some(l.inputs.clone());
            }
            previous = l.name.clone();
            out
        })
        .collect();
    let file = File { name, description: format!("imported from {source}"), input: Input { shape: &imported.input_shape }, layers };
    let body = toml::to_string(&file).expect("strings, numbers and arrays serialise");
    format!("# Imported by `explore import` from {source}.\n{body}")
}

/// The weights as our checkpoints hold them: conv [O, C, kh, kw] and linear
/// [out, in] row-major as ONNX has them; a missing bias is zero; batchnorm's running
/// mean and variance as its buffers.
fn params(imported: &Imported) -> Params {
    let values = |t: &Option<Tensor>| t.as_ref().and_then(|t| t.data.clone());
    let layers = imported
        .layers
        .iter()
        .filter(|l| l.weight.is_some())
        .map(|l: &ImportedLayer| {
            let weight = values(&l.weight).unwrap_or_default();
            let outputs = match l.op {
                Op::Conv { out_channels, .. } => out_channels,
                Op::Linear { out_features } => out_features,
                _ => weight.len(),
            };
            let bias = values(&l.bias).unwrap_or_else(|| vec![0.0; outputs]);
            (l.name.clone(), LayerParams { weight, bias, buffers: values(&l.buffers).unwrap_or_default() })
        })
        .collect();
    Params { layers }
}
