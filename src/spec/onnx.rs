//! ONNX models (as `torch.onnx.export` writes them) read into our layers and
//! weight tensors. The protobuf wire format is decoded by `prost` (maintained, no
//! build step and no `protoc`) into the part of `onnx.proto` we use, declared below
//! with the field numbers of ONNX's schema; unknown fields are skipped.
//!
//! Supported: Conv (no groups, no dilation, symmetric padding), Gemm, MatMul (with a
//! following bias Add), Relu, MaxPool, AveragePool, GlobalAveragePool,
//! BatchNormalization (after a conv or linear layer), Add, Flatten, Reshape to
//! [batch, -1], Identity and Dropout. Anything else is refused, naming the node.

use crate::error::{Error, Result};
use crate::spec::Op;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The messages of onnx.proto that the importer reads (proto2; field numbers are
/// ONNX's).
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        #[prost(int64, optional, tag = "2")]
        pub version: Option<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, optional, tag = "3")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub op_type: Option<String>,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
        #[prost(string, optional, tag = "7")]
        pub domain: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(float, optional, tag = "2")]
        pub f: Option<f32>,
        #[prost(int64, optional, tag = "3")]
        pub i: Option<i64>,
        #[prost(bytes = "vec", optional, tag = "4")]
        pub s: Option<Vec<u8>>,
        #[prost(message, optional, tag = "5")]
        pub t: Option<TensorProto>,
        #[prost(int64, repeated, tag = "8")]
        pub ints: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, optional, tag = "2")]
        pub data_type: Option<i32>,
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        #[prost(int64, repeated, tag = "7")]
        pub int64_data: Vec<i64>,
        #[prost(string, optional, tag = "8")]
        pub name: Option<String>,
        #[prost(bytes = "vec", optional, tag = "9")]
        pub raw_data: Option<Vec<u8>>,
        /// Set when the data lives in another file (models over 2 GB).
        #[prost(int32, optional, tag = "14")]
        pub data_location: Option<i32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TypeTensor>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeTensor {
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(int64, optional, tag = "1")]
        pub dim_value: Option<i64>,
        #[prost(string, optional, tag = "2")]
        pub dim_param: Option<String>,
    }
}

use proto::{AttributeProto, NodeProto, TensorProto};

/// ONNX's element type codes that we read.
const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// A parameter tensor: its dimensions, and its values when the file holds them
/// (`export_params=False` leaves them out).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dims: Vec<usize>,
    pub data: Option<Vec<f32>>,
}

/// One of our layers made from one or more ONNX nodes, with its parameters
/// (weight, bias and for batchnorm the running mean and variance) as we store them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedLayer {
    pub name: String,
    pub op: Op,
    /// The layers it reads ("input" for the network input).
    pub inputs: Vec<String>,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    pub buffers: Option<Tensor>,
}

/// A network read from an ONNX file.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The input without its batch dimension: [C, H, W] or [N].
    pub input_shape: Vec<usize>,
    pub layers: Vec<ImportedLayer>,
    /// Whether every parameter's values are in the file.
    pub has_weights: bool,
    pub opset: Option<i64>,
}

/// The most elements a weight tensor may claim (the graph's own limit, 2^40).
const MAX_TENSOR_ELEMENTS: u64 = 1 << 40;

/// Refuses files larger than this before reading them: ONNX's protobuf limit (larger
/// models keep their weights in external files, which we do not read).
const MAX_FILE_BYTES: u64 = 2 << 30;

/// Reads `path` into our layers.
pub fn read(path: &Path) -> Result<Imported> {
    let size = std::fs::metadata(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?.len();
    if size > MAX_FILE_BYTES {
        return Err(Error::invalid(path, None, format!("{size} bytes is over ONNX's 2 GiB limit for one file")));
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    decode(path, &bytes)
}

/// `read` on bytes already in memory (`path` names errors).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Imported> {
    use prost::Message;
    let model = proto::ModelProto::decode(bytes).map_err(|e| {
        Error::invalid(path, None, format!("not an ONNX model (the protobuf does not decode: {e}); is the file truncated?"))
    })?;
    let graph = model.graph.ok_or_else(|| Error::invalid(path, None, "not an ONNX model: no graph"))?;
    let opset = model.opset_import.iter().find(|o| o.domain.as_deref().unwrap_or("").is_empty()).and_then(|o| o.version);
    Converter::new(path, &graph)?.run(&graph.node).map(|(layers, has_weights, input_shape)| Imported {
        input_shape,
        layers,
        has_weights,
        opset,
    })
}

/// What a value of the ONNX graph is to us.
#[derive(Debug, Clone)]
struct Value {
    /// The layer that makes it ("input" for the network input).
    layer: String,
    /// Its shape without the batch dimension.
    shape: Vec<usize>,
}

struct Converter<'a> {
    path: &'a Path,
    /// Parameters by name: initializers, and graph inputs other than the image
    /// (weights exported as inputs, without values).
    params: HashMap<String, Tensor>,
    values: HashMap<String, Value>,
    layers: Vec<ImportedLayer>,
    names: HashSet<String>,
    input_shape: Vec<usize>,
    has_weights: bool,
}

impl<'a> Converter<'a> {
    fn new(path: &'a Path, graph: &proto::GraphProto) -> Result<Converter<'a>> {
        let mut params = HashMap::new();
        for t in &graph.initializer {
            let name = t.name.clone().unwrap_or_default();
            params.insert(name.clone(), tensor(path, &name, t)?);
        }
        // The image is the graph input that no node reads as a parameter.
        let param_inputs: HashSet<&str> = graph.node.iter().flat_map(|n| n.input.iter().skip(1).map(String::as_str)).collect();
        let mut image = None;
        for vi in &graph.input {
            let name = vi.name.clone().unwrap_or_default();
            if params.contains_key(&name) {
                continue;
            }
            let dims = dims_of(path, &name, vi)?;
            if param_inputs.contains(name.as_str()) {
                params.insert(name, Tensor { dims: dims.into_iter().map(|d| d.unwrap_or(0)).collect(), data: None });
            } else if image.replace((name.clone(), dims)).is_some() {
                return Err(Error::invalid(
                    path,
                    Some(format!("input \"{name}\"")),
                    "a second network input: only one image input is supported",
                ));
            }
        }
        let (name, dims) = image.ok_or_else(|| Error::invalid(path, None, "the graph has no input that is not a parameter"))?;
        // A leading batch dimension (named or 1) is dropped; every other size must be fixed.
        let at = Some(format!("input \"{name}\""));
        let rest = match dims.split_first() {
            Some((_, rest)) if dims.len() == 4 || dims.len() == 2 => rest,
            _ => return Err(Error::invalid(path, at, format!("{} dimensions: expected [N, C, H, W] or [N, features]", dims.len()))),
        };
        let shape =
            rest.iter().enumerate().map(|(i, d)| d.ok_or(i + 1)).collect::<std::result::Result<Vec<usize>, usize>>().map_err(|i| {
                Error::invalid(
                    path,
                    at.clone(),
                    format!("dimension {i} has no fixed size (a dynamic shape); export with a fixed input size"),
                )
            })?;
        if dims[0].is_some_and(|b| b != 1) {
            return Err(Error::invalid(path, at, format!("batch dimension {}: export with a batch of 1", dims[0].unwrap_or(0))));
        }
        let has_weights = params.values().all(|t| t.data.is_some());
        let mut values = HashMap::new();
        values.insert(name, Value { layer: "input".into(), shape: shape.clone() });
        Ok(Converter {
            path,
            params,
            values,
            layers: Vec::new(),
            names: HashSet::from(["input".to_string()]),
            input_shape: shape,
            has_weights,
        })
    }

    fn run(mut self, nodes: &[NodeProto]) -> Result<(Vec<ImportedLayer>, bool, Vec<usize>)> {
        let mut i = 0;
        while i < nodes.len() {
            let next = nodes.get(i + 1);
            i += 1 + self.node(&nodes[i], next)?;
        }
        if self.layers.is_empty() {
            return Err(Error::invalid(self.path, None, "the graph has no layers we can run"));
        }
        Ok((self.layers, self.has_weights, self.input_shape))
    }

    /// Converts one node (and, for MatMul + Add, the next); returns how many of the
    /// following nodes it used.
    fn node(&mut self, n: &NodeProto, next: Option<&NodeProto>) -> Result<usize> {
        let op = n.op_type.clone().unwrap_or_default();
        let err = |m: String| Error::invalid(self.path, Some(describe(n)), m);
        if n.domain.as_deref().is_some_and(|d| !d.is_empty() && d != "ai.onnx") {
            return Err(err(format!("operator of domain \"{}\" is not supported", n.domain.as_deref().unwrap_or(""))));
        }
        let out = n.output.first().cloned().ok_or_else(|| err("no output".into()))?;
        match op.as_str() {
            "Identity" | "Dropout" => {
                // An alias, of an activation or of a weight.
                match self.params.get(n.input.first().map_or("", String::as_str)).cloned() {
                    Some(t) => {
                        self.params.insert(out, t);
                    }
                    None => {
                        let v = self.activation(n, 0)?;
                        self.values.insert(out, v);
                    }
                }
                Ok(0)
            }
            "Conv" => {
                let x = self.activation(n, 0)?;
                let (c, h, w) = chw(&x.shape).ok_or_else(|| err(format!("needs a [C, H, W] input, got {:?}", x.shape)))?;
                let weight = self.param(n, 1)?;
                if weight.dims.len() != 4 {
                    return Err(err(format!("weight of {} dimensions, expected 4", weight.dims.len())));
                }
                let groups = int(n, "group").unwrap_or(1);
                if groups != 1 {
                    return Err(err(format!("grouped convolution (group = {groups}) is not supported")));
                }
                if ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
                    return Err(err("dilated convolution is not supported".into()));
                }
                self.no_auto_pad(n)?;
                let (o, wc, kh, kw) = (weight.dims[0], weight.dims[1], weight.dims[2], weight.dims[3]);
                if wc != c {
                    return Err(err(format!("weight expects {wc} input channels, the input has {c}")));
                }
                let stride = pair(n, "strides", (1, 1)).map_err(&err)?;
                let padding = self.symmetric_pads(n)?;
                let bias = n.input.get(2).filter(|s| !s.is_empty()).map(|_| self.param(n, 2)).transpose()?;
                let shape = vec![o, slide(h, kh, stride.0, padding.0), slide(w, kw, stride.1, padding.1)];
                let layer_op = Op::Conv { out_channels: o, kernel: (kh, kw), stride, padding };
                self.push(n, "conv", layer_op, vec![x.layer], shape, Some(weight), bias, None, &out)
            }
            "Gemm" => {
                let x = self.activation(n, 0)?;
                if x.shape.len() != 1 {
                    return Err(err(format!("needs a flat input, got {:?}", x.shape)));
                }
                if int(n, "transA").unwrap_or(0) != 0 || float(n, "alpha").unwrap_or(1.0) != 1.0 || float(n, "beta").unwrap_or(1.0) != 1.0 {
                    return Err(err("only Gemm with transA = 0, alpha = 1 and beta = 1 is supported".into()));
                }
                let b = self.param(n, 1)?;
                let weight = if int(n, "transB").unwrap_or(0) == 1 { b } else { transpose(&b) };
                self.linear(n, x, weight, n.input.get(2).filter(|s| !s.is_empty()).map(|_| self.param(n, 2)).transpose()?, &out).map(|()| 0)
            }
            "MatMul" => {
                let x = self.activation(n, 0)?;
                let weight = transpose(&self.param(n, 1)?);
                // A bias added right after (PyTorch's Linear without Gemm).
                let bias_add = next.filter(|a| {
                    a.op_type.as_deref() == Some("Add") && a.input.contains(&out) && a.input.iter().any(|s| self.params.contains_key(s))
                });
                match bias_add {
                    Some(a) => {
                        let b = a.input.iter().find(|s| self.params.contains_key(*s)).expect("checked above");
                        let bias = self.params[b].clone();
                        let a_out = a.output.first().cloned().ok_or_else(|| err("its Add has no output".into()))?;
                        self.linear(n, x, weight, Some(bias), &a_out).map(|()| 1)
                    }
                    None => self.linear(n, x, weight, None, &out).map(|()| 0),
                }
            }
            "Relu" => {
                let x = self.activation(n, 0)?;
                let shape = x.shape.clone();
                self.push(n, "relu", Op::Relu, vec![x.layer], shape, None, None, None, &out)
            }
            "MaxPool" | "AveragePool" => {
                let x = self.activation(n, 0)?;
                let (c, h, w) = chw(&x.shape).ok_or_else(|| err(format!("needs a [C, H, W] input, got {:?}", x.shape)))?;
                if int(n, "ceil_mode").unwrap_or(0) != 0 {
                    return Err(err("ceil_mode = 1 is not supported".into()));
                }
                if ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
                    return Err(err("dilated pooling is not supported".into()));
                }
                self.no_auto_pad(n)?;
                let kernel = pair(n, "kernel_shape", (0, 0)).map_err(&err)?;
                if kernel.0 == 0 || kernel.1 == 0 {
                    return Err(err("no kernel_shape".into()));
                }
                let stride = pair(n, "strides", (1, 1)).map_err(&err)?;
                let padding = self.symmetric_pads(n)?;
                let shape = vec![c, slide(h, kernel.0, stride.0, padding.0), slide(w, kernel.1, stride.1, padding.1)];
                let (word, layer_op) = if op == "MaxPool" {
                    if padding != (0, 0) {
                        return Err(err("padded max pooling is not supported".into()));
                    }
                    ("maxpool", Op::MaxPool { kernel, stride })
                } else {
                    // Ours divides by the whole window, padding included.
                    if padding != (0, 0) && int(n, "count_include_pad").unwrap_or(0) == 0 {
                        return Err(err("padded average pooling with count_include_pad = 0 is not supported".into()));
                    }
                    ("avgpool", Op::AvgPool { kernel, stride, padding })
                };
                self.push(n, word, layer_op, vec![x.layer], shape, None, None, None, &out)
            }
            "GlobalAveragePool" => {
                let x = self.activation(n, 0)?;
                let (c, h, w) = chw(&x.shape).ok_or_else(|| err(format!("needs a [C, H, W] input, got {:?}", x.shape)))?;
                let layer_op = Op::AvgPool { kernel: (h, w), stride: (h, w), padding: (0, 0) };
                self.push(n, "avgpool", layer_op, vec![x.layer], vec![c, 1, 1], None, None, None, &out)
            }
            "BatchNormalization" => {
                let x = self.activation(n, 0)?;
                let eps = float(n, "epsilon").unwrap_or(1e-5);
                if (eps - crate::spec::BN_EPS).abs() > 1e-9 {
                    return Err(err(format!("epsilon {eps}: only {} is supported", crate::spec::BN_EPS)));
                }
                let [scale, shift, mean, var] = [1, 2, 3, 4].map(|i| self.param(n, i));
                let (scale, shift, mean, var) = (scale?, shift?, mean?, var?);
                let buffers = Tensor {
                    dims: vec![mean.dims.iter().product::<usize>() * 2],
                    data: mean.data.zip(var.data).map(|(m, v)| m.into_iter().chain(v).collect()),
                };
                let shape = x.shape.clone();
                self.push(n, "batchnorm", Op::BatchNorm, vec![x.layer], shape, Some(scale), Some(shift), Some(buffers), &out)
            }
            "Add" => {
                let (a, b) = (self.activation(n, 0)?, self.activation(n, 1)?);
                if a.shape != b.shape {
                    return Err(err(format!("adds shapes {:?} and {:?}; only equal shapes are supported", a.shape, b.shape)));
                }
                let shape = a.shape.clone();
                self.push(n, "add", Op::Add, vec![a.layer, b.layer], shape, None, None, None, &out)
            }
            "Flatten" | "Reshape" => {
                let x = self.activation(n, 0)?;
                if op == "Flatten" && int(n, "axis").unwrap_or(1) != 1 {
                    return Err(err("only Flatten with axis = 1 is supported".into()));
                }
                if op == "Reshape" {
                    let target = self.params.get(n.input.get(1).map_or("", String::as_str)).and_then(|t| t.data.clone());
                    let numel: usize = x.shape.iter().product();
                    let flat = target.is_some_and(|t| t.len() == 2 && (t[1] == -1.0 || t[1] as usize == numel));
                    if !flat {
                        return Err(err("only a Reshape to [batch, -1] (a flatten) is supported".into()));
                    }
                }
                if x.shape.len() == 1 {
                    self.values.insert(out, x);
                    return Ok(0);
                }
                let shape = vec![x.shape.iter().product()];
                self.push(n, "flatten", Op::Flatten, vec![x.layer], shape, None, None, None, &out)
            }
            _ => Err(err("this operator is not supported (see `explore import --help` for those that are)".into())),
        }
    }

    fn linear(&mut self, n: &NodeProto, x: Value, weight: Tensor, bias: Option<Tensor>, out: &str) -> Result<()> {
        let err = |m: String| Error::invalid(self.path, Some(describe(n)), m);
        let features = x.shape.iter().product::<usize>();
        if weight.dims.len() != 2 || weight.dims[1] != features {
            return Err(err(format!("weight {:?} does not take {features} input features", weight.dims)));
        }
        let o = weight.dims[0];
        self.push(n, "linear", Op::Linear { out_features: o }, vec![x.layer], vec![o], Some(weight), bias, None, out).map(|_| ())
    }

    #[allow(clippy::too_many_arguments)] // One layer's parts, all needed.
    fn push(
        &mut self,
        n: &NodeProto,
        word: &str,
        op: Op,
        inputs: Vec<String>,
        shape: Vec<usize>,
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        buffers: Option<Tensor>,
        out: &str,
    ) -> Result<usize> {
        if shape.contains(&0) {
            return Err(Error::invalid(self.path, Some(describe(n)), format!("the output would be empty ({shape:?})")));
        }
        let name = self.unique(layer_name(n, word));
        self.values.insert(out.to_string(), Value { layer: name.clone(), shape });
        self.layers.push(ImportedLayer { name, op, inputs, weight, bias, buffers });
        Ok(0)
    }

    fn unique(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut k = 1;
        while !self.names.insert(name.clone()) {
            k += 1;
            name = format!("{base}_{k}");
        }
        name
    }

    /// Input `i` of `n`, an activation made by an earlier node (or the image).
    fn activation(&self, n: &NodeProto, i: usize) -> Result<Value> {
        let name = n.input.get(i).map_or("", String::as_str);
        self.values.get(name).cloned().ok_or_else(|| {
            let what =
                if self.params.contains_key(name) { "a constant where an activation was expected" } else { "made by no node we read" };
            Error::invalid(self.path, Some(describe(n)), format!("input {i} (\"{name}\") is {what}"))
        })
    }

    /// Input `i` of `n`, a parameter (initializer or weight input).
    fn param(&self, n: &NodeProto, i: usize) -> Result<Tensor> {
        let name = n.input.get(i).map_or("", String::as_str);
        self.params
            .get(name)
            .cloned()
            .ok_or_else(|| Error::invalid(self.path, Some(describe(n)), format!("input {i} (\"{name}\") must be a constant weight tensor")))
    }

    fn no_auto_pad(&self, n: &NodeProto) -> Result<()> {
        match string(n, "auto_pad").as_deref() {
            None | Some("NOTSET") | Some("VALID") => Ok(()),
            Some(other) => Err(Error::invalid(self.path, Some(describe(n)), format!("auto_pad = {other} is not supported"))),
        }
    }

    fn symmetric_pads(&self, n: &NodeProto) -> Result<(usize, usize)> {
        match ints(n, "pads") {
            None => Ok((0, 0)),
            Some(p) if p.len() == 4 && p[0] == p[2] && p[1] == p[3] && p.iter().all(|&v| v >= 0) => Ok((p[0] as usize, p[1] as usize)),
            Some(p) => {
                Err(Error::invalid(self.path, Some(describe(n)), format!("pads {p:?}: only equal padding on both sides is supported")))
            }
        }
    }
}

/// How errors name a node: its name, op type and inputs.
fn describe(n: &NodeProto) -> String {
    format!(
        "node \"{}\" ({}, inputs {})",
        n.name.as_deref().unwrap_or(""),
        n.op_type.as_deref().unwrap_or("?"),
        n.input.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
    )
}

/// Our layer name from PyTorch's node name: "/blocks/blocks.0/conv1/Conv" becomes
/// "blocks.0.conv1" (the module), "/blocks/blocks.0/Relu_1" becomes
/// "blocks.0.relu_1"; a node without a module path gets `word`.
fn layer_name(n: &NodeProto, word: &str) -> String {
    let raw = n.name.as_deref().unwrap_or("");
    let mut parts: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
    let last = parts.pop().unwrap_or("");
    // Drop path segments that the next one repeats ("blocks", "blocks.0").
    let path: Vec<&str> = parts
        .iter()
        .enumerate()
        .filter(|(i, p)| parts.get(i + 1).is_none_or(|q| !q.starts_with(&format!("{p}."))))
        .map(|(_, p)| *p)
        .collect();
    let module_ops = ["conv", "linear", "batchnorm"];
    let tail = last.to_ascii_lowercase();
    let suffix = tail.split_once('_').map_or(String::new(), |(_, k)| format!("_{k}"));
    let named = match (path.is_empty(), module_ops.contains(&word)) {
        (false, true) => path.join("."),
        (false, false) => format!("{}.{word}{suffix}", path.join(".")),
        (true, _) => format!("{word}{suffix}"),
    };
    named.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' { c } else { '_' }).collect()
}

fn chw(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match shape {
        [c, h, w] => Some((*c, *h, *w)),
        _ => None,
    }
}

/// Output side of a window (0 when the kernel does not fit).
fn slide(side: usize, k: usize, stride: usize, pad: usize) -> usize {
    (side + 2 * pad).checked_sub(k).map_or(0, |r| r / stride.max(1) + 1)
}

fn attr<'n>(n: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

fn int(n: &NodeProto, name: &str) -> Option<i64> {
    attr(n, name).and_then(|a| a.i)
}

fn float(n: &NodeProto, name: &str) -> Option<f32> {
    attr(n, name).and_then(|a| a.f)
}

fn ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

fn string(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name).and_then(|a| a.s.as_ref()).map(|s| String::from_utf8_lossy(s).into_owned())
}

/// A two-value attribute (height, width), `default` when absent.
fn pair(n: &NodeProto, name: &str, default: (usize, usize)) -> std::result::Result<(usize, usize), String> {
    match ints(n, name) {
        None => Ok(default),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok((v[0] as usize, v[1] as usize)),
        Some(v) => Err(format!("{name} {v:?}: expected two positive values (2-D)")),
    }
}

/// A 2-D tensor with its rows and columns swapped.
fn transpose(t: &Tensor) -> Tensor {
    let (r, c) = match t.dims[..] {
        [r, c] => (r, c),
        _ => return t.clone(),
    };
    let data = t.data.as_ref().map(|d| (0..c).flat_map(|j| (0..r).map(move |i| d[i * c + j])).collect());
    Tensor { dims: vec![c, r], data }
}

/// The dimensions of a graph input: `None` for a named (dynamic) one.
fn dims_of(path: &Path, name: &str, vi: &proto::ValueInfoProto) -> Result<Vec<Option<usize>>> {
    let shape = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).and_then(|t| t.shape.as_ref());
    let shape = shape.ok_or_else(|| Error::invalid(path, Some(format!("input \"{name}\"")), "no tensor shape"))?;
    Ok(shape.dim.iter().map(|d| d.dim_value.filter(|&v| v > 0).map(|v| v as usize)).collect())
}

/// An initializer's values as f32 (float tensors; int64 ones such as Reshape's
/// target shape, converted).
fn tensor(path: &Path, name: &str, t: &TensorProto) -> Result<Tensor> {
    let at = Some(format!("initializer \"{name}\""));
    if t.data_location == Some(1) {
        return Err(Error::invalid(path, at, "its data is in an external file, which is not supported"));
    }
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    // Checked before anything is sized by it: a damaged file may claim any dimensions.
    let numel = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n as u64 <= MAX_TENSOR_ELEMENTS);
    let Some(numel) = numel else {
        return Err(Error::invalid(path, at, format!("dimensions {dims:?} are larger than any tensor we hold (2^40 elements)")));
    };
    let raw = t.raw_data.as_deref().unwrap_or(&[]);
    let data: Vec<f32> = match t.data_type.unwrap_or(0) {
        FLOAT if !raw.is_empty() => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        FLOAT => t.float_data.clone(),
        INT64 if !raw.is_empty() => raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")) as f32).collect(),
        INT64 => t.int64_data.iter().map(|&v| v as f32).collect(),
        other => return Err(Error::invalid(path, at, format!("element type {other} is not supported (float32 weights only)"))),
    };
    if data.len() != numel {
        return Err(Error::invalid(path, at, format!("{} values for dimensions {dims:?} ({numel}); is the file truncated?", data.len())));
    }
    Ok(Tensor { dims, data: Some(data) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, op: &str) -> NodeProto {
        NodeProto { name: Some(name.into()), op_type: Some(op.into()), ..Default::default() }
    }

    #[test]
    fn layer_names_follow_pytorch_modules() {
        assert_eq!(layer_name(&node("/conv1/Conv", "Conv"), "conv"), "conv1");
        assert_eq!(layer_name(&node("/blocks/blocks.0/conv1/Conv", "Conv"), "conv"), "blocks.0.conv1");
        assert_eq!(layer_name(&node("/blocks/blocks.0/Relu_1", "Relu"), "relu"), "blocks.0.relu_1");
        assert_eq!(layer_name(&node("/MaxPool", "MaxPool"), "maxpool"), "maxpool");
        assert_eq!(layer_name(&node("", "Relu"), "relu"), "relu");
    }

    #[test]
    fn a_tensor_claiming_more_than_any_machine_holds_is_refused() {
        let t = TensorProto { dims: vec![1 << 40, 1 << 40], data_type: Some(FLOAT), ..Default::default() };
        let e = tensor(Path::new("m.onnx"), "w", &t).unwrap_err().to_string();
        assert!(e.starts_with("m.onnx: initializer \"w\": dimensions"), "{e}");
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let t = Tensor { dims: vec![2, 3], data: Some(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) };
        assert_eq!(transpose(&t), Tensor { dims: vec![3, 2], data: Some(vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]) });
    }
}
