//! Architecture files: a name, an input shape and an ordered list of layers.
//!
//! ```toml
//! name = "cifar10-minionn"
//! [input]
//! shape = [3, 32, 32]
//! [[layers]]
//! name = "conv1"
//! op = "conv"
//! out_channels = 64
//! kernel = 3
//! padding = 1
//! ```
//! An optional `[trained]` table names trained weights shipped with the network
//! (and a few test images), which `simulate` and `sweep` use when given none:
//! ```toml
//! [trained]
//! weights = "../models/cifar10-original.safetensors"   # relative to this file
//! test_images = "../models/cifar10-test-sample"        # a dataset folder
//! ```
//! Parsing checks each layer on its own (keys, values); how layers connect and
//! what shapes flow between them is `graph`'s job.

use super::{Pair, from_table, parse_toml, read_text};
use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One network as written in its file, with every layer's keys checked.
#[derive(Debug, Clone)]
pub struct ArchSpec {
    pub path: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub input_shape: Vec<usize>,
    pub layers: Vec<LayerSpec>,
    /// `[trained]`, when its weights file is present.
    pub trained: Option<Trained>,
}

/// Trained weights of the original network shipped beside it, and test images to
/// run them on, resolved against the architecture file's folder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trained {
    pub weights: PathBuf,
    pub test_images: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub name: String,
    pub op: Op,
    /// Names of the layers feeding this one; `None` means "the previous layer".
    pub inputs: Option<Vec<String>>,
}

/// The epsilon of every `batchnorm` layer: var + eps under the square root, as
/// PyTorch's default.
pub const BN_EPS: f32 = 1e-5;

/// The layer kinds and their parameters, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Conv {
        out_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    },
    AvgPool {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    },
    /// The largest value of each window (SecureNN Algorithm 9). No padding: a padded
    /// window would hold fewer values and so take fewer comparison steps.
    MaxPool {
        kernel: (usize, usize),
        stride: (usize, usize),
    },
    Relu,
    Linear {
        out_features: usize,
    },
    Flatten,
    Dropout {
        p: f64,
    },
    Add,
    BatchNorm,
}

impl Op {
    /// The name used in files and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "conv",
            Op::AvgPool { .. } => "avgpool",
            Op::MaxPool { .. } => "maxpool",
            Op::Relu => "relu",
            Op::Linear { .. } => "linear",
            Op::Flatten => "flatten",
            Op::Dropout { .. } => "dropout",
            Op::Add => "add",
            Op::BatchNorm => "batchnorm",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArch {
    name: String,
    description: Option<String>,
    input: RawInput,
    #[serde(default)]
    layers: Vec<toml::Table>,
    trained: Option<Trained>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    shape: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OpKind {
    Conv,
    AvgPool,
    MaxPool,
    Relu,
    Linear,
    Flatten,
    Dropout,
    Add,
    BatchNorm,
}

/// Every key any layer may have; which ones apply depends on `op`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    #[allow(dead_code)] // read before this struct, to name the layer in errors
    name: Option<String>,
    op: OpKind,
    inputs: Option<Vec<String>>,
    out_channels: Option<usize>,
    out_features: Option<usize>,
    kernel: Option<Pair>,
    stride: Option<Pair>,
    padding: Option<Pair>,
    p: Option<f64>,
    /// Accepted for readability (`bias = true`); a bias is a local addition and costs
    /// nothing in the protocols modelled here.
    #[allow(dead_code)]
    bias: Option<bool>,
}

impl ArchSpec {
    pub fn load(path: &Path) -> Result<ArchSpec> {
        let text = read_text(path)?;
        Self::parse(path, &text)
    }

    /// Parses `text` as if read from `path` (the path only names errors).
    pub fn parse(path: &Path, text: &str) -> Result<ArchSpec> {
        let raw: RawArch = parse_toml(path, text)?;
        if raw.name.trim().is_empty() {
            return Err(Error::invalid(path, Some("key \"name\"".into()), "must not be empty"));
        }
        let shape = raw.input.shape;
        if !(shape.len() == 3 || shape.len() == 1) || shape.contains(&0) {
            return Err(Error::invalid(
                path,
                Some("[input] shape".into()),
                format!("must be [C, H, W] or [N] with no zero, got {shape:?}"),
            ));
        }
        if raw.layers.is_empty() {
            return Err(Error::invalid(path, None, "no [[layers]]: a network needs at least one layer"));
        }
        let mut counts = std::collections::HashMap::new();
        let mut layers = Vec::with_capacity(raw.layers.len());
        for (index, table) in raw.layers.into_iter().enumerate() {
            layers.push(parse_layer(path, index, table, &mut counts)?);
        }
        // A copied architecture file without the models beside it is still a network:
        // the files are used when present (commands say which weights they ran).
        let trained = raw
            .trained
            .map(|t| Trained {
                weights: super::resolve(path, &t.weights),
                test_images: t.test_images.map(|d| super::resolve(path, &d)).filter(|d| d.is_dir()),
            })
            .filter(|t| t.weights.is_file());
        Ok(ArchSpec { path: path.to_path_buf(), name: raw.name, description: raw.description, input_shape: shape, layers, trained })
    }
}

/// Names the layer for errors before its keys are checked: its `name`, else its
/// default name, else its position.
fn parse_layer(path: &Path, index: usize, table: toml::Table, counts: &mut std::collections::HashMap<String, usize>) -> Result<LayerSpec> {
    let given = match table.get("name") {
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(Error::syntax(
                path,
                Some(format!("layer {}", index + 1)),
                format!("key \"name\" must be a string, got {}", other.type_str()),
            ));
        }
        None => None,
    };
    let op_word = table.get("op").and_then(|v| v.as_str()).map(str::to_string);
    let default_name = op_word.as_ref().map(|op| {
        let n = counts.entry(op.clone()).or_insert(0);
        *n += 1;
        format!("{op}{n}")
    });
    let label = match (&given, &default_name) {
        (Some(n), _) | (None, Some(n)) => format!("layer \"{n}\""),
        (None, None) => format!("layer {}", index + 1),
    };
    if !table.contains_key("op") {
        return Err(Error::syntax(
            path,
            Some(label),
            "missing key \"op\" (conv | avgpool | maxpool | relu | linear | flatten | dropout | add | batchnorm)",
        ));
    }
    let raw: RawLayer = from_table(path, &label, table)?;
    let name = given.or(default_name).expect("op is present, so a default name exists");
    if name.trim().is_empty() {
        return Err(Error::invalid(path, Some(label), "key \"name\" must not be empty"));
    }
    let op = build_op(&raw).map_err(|m| Error::invalid(path, Some(label.clone()), m))?;
    if let Some(inputs) = &raw.inputs
        && inputs.is_empty()
    {
        return Err(Error::invalid(path, Some(label), "key \"inputs\" must name at least one layer"));
    }
    Ok(LayerSpec { name, op, inputs: raw.inputs })
}

/// Checks that only the keys of this op are set and fills in defaults.
fn build_op(raw: &RawLayer) -> std::result::Result<Op, String> {
    let op_name = match raw.op {
        OpKind::Conv => "conv",
        OpKind::AvgPool => "avgpool",
        OpKind::MaxPool => "maxpool",
        OpKind::Relu => "relu",
        OpKind::Linear => "linear",
        OpKind::Flatten => "flatten",
        OpKind::Dropout => "dropout",
        OpKind::Add => "add",
        OpKind::BatchNorm => "batchnorm",
    };
    let allowed: &[&str] = match raw.op {
        OpKind::Conv => &["out_channels", "kernel", "stride", "padding", "bias"],
        OpKind::AvgPool => &["kernel", "stride", "padding"],
        OpKind::MaxPool => &["kernel", "stride", "padding"],
        OpKind::Linear => &["out_features", "bias"],
        OpKind::Dropout => &["p"],
        OpKind::Relu | OpKind::Flatten | OpKind::Add | OpKind::BatchNorm => &[],
    };
    let present = [
        ("out_channels", raw.out_channels.is_some()),
        ("out_features", raw.out_features.is_some()),
        ("kernel", raw.kernel.is_some()),
        ("stride", raw.stride.is_some()),
        ("padding", raw.padding.is_some()),
        ("p", raw.p.is_some()),
        ("bias", raw.bias.is_some()),
    ];
    for (key, set) in present {
        if set && !allowed.contains(&key) {
            return Err(format!("key \"{key}\" does not apply to op \"{op_name}\""));
        }
    }
    let positive = |key: &str, v: Option<usize>| -> std::result::Result<usize, String> {
        match v {
            None => Err(format!("{op_name} needs key \"{key}\"")),
            Some(0) => Err(format!("key \"{key}\" must be at least 1")),
            Some(n) => Ok(n),
        }
    };
    let pair = |key: &str, v: Option<Pair>, default: (usize, usize), zero_ok: bool| {
        let hw = v.map_or(default, Pair::hw);
        if !zero_ok && (hw.0 == 0 || hw.1 == 0) {
            return Err(format!("key \"{key}\" must be at least 1, got {hw:?}"));
        }
        Ok(hw)
    };
    Ok(match raw.op {
        OpKind::Conv => {
            let kernel = pair("kernel", raw.kernel, (0, 0), false)
                .and_then(|k| if raw.kernel.is_none() { Err("conv needs key \"kernel\"".to_string()) } else { Ok(k) })?;
            Op::Conv {
                out_channels: positive("out_channels", raw.out_channels)?,
                kernel,
                stride: pair("stride", raw.stride, (1, 1), false)?,
                padding: pair("padding", raw.padding, (0, 0), true)?,
            }
        }
        OpKind::AvgPool => {
            if raw.kernel.is_none() {
                return Err("avgpool needs key \"kernel\"".into());
            }
            let kernel = pair("kernel", raw.kernel, (0, 0), false)?;
            Op::AvgPool { kernel, stride: pair("stride", raw.stride, kernel, false)?, padding: pair("padding", raw.padding, (0, 0), true)? }
        }
        OpKind::MaxPool => {
            if raw.kernel.is_none() {
                return Err("maxpool needs key \"kernel\"".into());
            }
            let kernel = pair("kernel", raw.kernel, (0, 0), false)?;
            if pair("padding", raw.padding, (0, 0), true)? != (0, 0) {
                return Err("maxpool takes no padding (SecureNN's Maxpool compares whole windows); pad with a conv or crop instead".into());
            }
            Op::MaxPool { kernel, stride: pair("stride", raw.stride, kernel, false)? }
        }
        OpKind::Linear => Op::Linear { out_features: positive("out_features", raw.out_features)? },
        OpKind::Dropout => {
            let p = raw.p.unwrap_or(0.5);
            if !(0.0..1.0).contains(&p) {
                return Err(format!("key \"p\" must be in [0, 1), got {p}"));
            }
            Op::Dropout { p }
        }
        OpKind::Relu => Op::Relu,
        OpKind::Flatten => Op::Flatten,
        OpKind::Add => Op::Add,
        OpKind::BatchNorm => Op::BatchNorm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ArchSpec> {
        ArchSpec::parse(Path::new("a.toml"), text)
    }

    const HEAD: &str = "name = \"t\"\n[input]\nshape = [3, 8, 8]\n";

    #[test]
    fn default_names_count_per_op() {
        let a = parse(&format!("{HEAD}[[layers]]\nop = \"conv\"\nout_channels = 4\nkernel = 3\n[[layers]]\nop = \"relu\"\n[[layers]]\nop = \"conv\"\nout_channels = 4\nkernel = [1, 1]\n")).unwrap();
        let names: Vec<_> = a.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["conv1", "relu1", "conv2"]);
        assert_eq!(a.layers[2].op, Op::Conv { out_channels: 4, kernel: (1, 1), stride: (1, 1), padding: (0, 0) });
    }

    #[test]
    fn pool_stride_defaults_to_kernel() {
        let a = parse(&format!("{HEAD}[[layers]]\nop = \"avgpool\"\nkernel = 2\n[[layers]]\nop = \"maxpool\"\nkernel = 3\npadding = 0\n"))
            .unwrap();
        assert_eq!(a.layers[0].op, Op::AvgPool { kernel: (2, 2), stride: (2, 2), padding: (0, 0) });
        assert_eq!(a.layers[1].op, Op::MaxPool { kernel: (3, 3), stride: (3, 3) });
    }

    #[test]
    fn errors_name_file_layer_and_key() {
        let e = parse(&format!("{HEAD}[[layers]]\nname = \"c\"\nop = \"conv\"\nout_channels = 4\nkernal = 3\n")).unwrap_err().to_string();
        assert!(e.starts_with("a.toml: layer \"c\": unknown field `kernal`"), "{e}");
        let e = parse(&format!("{HEAD}[[layers]]\nop = \"relu\"\nout_channels = 4\n")).unwrap_err().to_string();
        assert_eq!(e, "a.toml: layer \"relu1\": key \"out_channels\" does not apply to op \"relu\"");
        let e = parse(&format!("{HEAD}[[layers]]\nop = \"conv\"\nkernel = 3\n")).unwrap_err().to_string();
        assert_eq!(e, "a.toml: layer \"conv1\": conv needs key \"out_channels\"");
        let e = parse(&format!("{HEAD}[[layers]]\nop = \"lstm\"\n")).unwrap_err().to_string();
        assert!(e.starts_with("a.toml: layer \"lstm1\": key \"op\": unknown variant `lstm`"), "{e}");
        let e = parse(&format!("{HEAD}[[layers]]\nop = \"maxpool\"\nkernel = 2\npadding = 1\n")).unwrap_err().to_string();
        assert!(e.starts_with("a.toml: layer \"maxpool1\": maxpool takes no padding"), "{e}");
        let e = parse(&format!("{HEAD}[[layers]]\nop = \"dropout\"\np = 1.5\n")).unwrap_err().to_string();
        assert!(e.contains("key \"p\" must be in [0, 1)"), "{e}");
    }

    #[test]
    fn input_shape_is_checked() {
        let e = parse("name = \"t\"\n[input]\nshape = [3, 8]\n[[layers]]\nop = \"relu\"\n").unwrap_err().to_string();
        assert!(e.starts_with("a.toml: [input] shape: must be [C, H, W] or [N]"), "{e}");
    }
}
