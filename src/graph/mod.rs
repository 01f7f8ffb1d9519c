//! The layer graph: an architecture's layers as petgraph nodes, edges from each
//! producer to its consumers, and every layer's output shape inferred.

pub mod sharing;

use crate::error::{Error, Result};
use crate::spec::{ArchSpec, Op};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;
use std::path::PathBuf;

/// The most elements a tensor (an activation or a layer's weights) may have: far
/// beyond any network that runs, and low enough that every count the cost model
/// makes of it (bits, multiply-accumulates) fits in a u64.
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// A tensor shape: `[C, H, W]` for maps, `[N]` for flat vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// `(channels, height, width)` for a map.
    pub fn chw(&self) -> Option<(usize, usize, usize)> {
        match self.0[..] {
            [c, h, w] => Some((c, h, w)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|d| d.to_string()).collect();
        write!(f, "[{}]", parts.join(", "))
    }
}

/// Element counts of one layer (`Network::sizes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSizes {
    pub inputs: u64,
    pub outputs: u64,
    /// Parameters (weights and biases; batchnorm's four vectors).
    pub weights: u64,
    /// Elements of the im2col matrix (convolutions) or of the input (linear).
    pub im2col: u64,
}

/// A node of the graph: the network input or one layer.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// `None` for the input node.
    pub op: Option<Op>,
    pub output: Shape,
    /// Producers in the order the layer names them (edges carry no order).
    pub inputs: Vec<NodeIndex>,
}

/// A checked network: acyclic, every input resolved, every shape inferred.
#[derive(Debug, Clone)]
pub struct Network {
    pub path: PathBuf,
    pub name: String,
    pub graph: DiGraph<Node, ()>,
    pub input: NodeIndex,
    /// The network's output: the last layer of the file.
    pub output: NodeIndex,
    /// Layers (not the input) in an order where producers come first; file order
    /// when the file lists producers first, as it usually does.
    pub order: Vec<NodeIndex>,
    /// Trained weights and test images shipped with the network (`[trained]`).
    pub trained: Option<crate::spec::arch::Trained>,
}

impl Network {
    /// The input's dimensions: `[C, H, W]` or `[N]`.
    pub fn input_dims(&self) -> &[usize] {
        &self.node(self.input).output.0
    }

    /// Element counts of a layer, for estimating memory before anything is allocated
    /// (saturating: a file may ask for more than any machine holds).
    pub fn sizes(&self, n: NodeIndex) -> LayerSizes {
        let prod = |dims: &[usize]| dims.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64));
        let node = self.node(n);
        let outputs = prod(&node.output.0);
        let inputs = if n == self.input { 0 } else { prod(&self.input_shape(n).0) };
        let (weights, im2col) = match &node.op {
            Some(Op::Conv { out_channels, kernel, .. }) => {
                let c = self.input_shape(n).chw().map_or(1, |s| s.0) as u64;
                let taps = c.saturating_mul(kernel.0 as u64).saturating_mul(kernel.1 as u64);
                let positions = node.output.chw().map_or(1, |(_, h, w)| (h as u64).saturating_mul(w as u64));
                ((*out_channels as u64).saturating_mul(taps.saturating_add(1)), positions.saturating_mul(taps))
            }
            Some(Op::Linear { out_features }) => ((*out_features as u64).saturating_mul(inputs.saturating_add(1)), inputs),
            Some(Op::BatchNorm) => (outputs.min(4 * self.input_shape(n).chw().map_or(outputs, |s| s.0 as u64)), 0),
            _ => (0, 0),
        };
        LayerSizes { inputs, outputs, weights, im2col }
    }

    /// Builds the graph and infers shapes, failing with an error that names the file,
    /// the layer and the problem.
    pub fn build(spec: &ArchSpec) -> Result<Network> {
        let path = spec.path.as_path();
        let mut graph = DiGraph::new();
        let input = graph.add_node(Node { name: "input".into(), op: None, output: Shape(spec.input_shape.clone()), inputs: vec![] });
        let mut by_name: HashMap<&str, NodeIndex> = HashMap::new();
        by_name.insert("input", input);
        let mut nodes = Vec::with_capacity(spec.layers.len());
        for layer in &spec.layers {
            let node = graph.add_node(Node { name: layer.name.clone(), op: Some(layer.op.clone()), output: Shape(vec![]), inputs: vec![] });
            if by_name.insert(layer.name.as_str(), node).is_some() {
                let why = if layer.name == "input" { "\"input\" names the network input" } else { "another layer has this name" };
                return Err(Error::invalid(path, Some(format!("layer \"{}\"", layer.name)), format!("duplicate name: {why}")));
            }
            nodes.push(node);
        }
        // Resolve inputs: a name, or the previous layer (the network input for the first).
        for (i, layer) in spec.layers.iter().enumerate() {
            let at = || Some(format!("layer \"{}\"", layer.name));
            let producers: Vec<NodeIndex> = match &layer.inputs {
                None => vec![if i == 0 { input } else { nodes[i - 1] }],
                Some(names) => names
                    .iter()
                    .map(|n| {
                        by_name
                            .get(n.as_str())
                            .copied()
                            .ok_or_else(|| Error::invalid(path, at(), format!("key \"inputs\": no layer named \"{n}\"")))
                    })
                    .collect::<Result<_>>()?,
            };
            if producers.contains(&nodes[i]) {
                return Err(Error::invalid(path, at(), "key \"inputs\": a layer cannot take its own output"));
            }
            for &p in &producers {
                graph.add_edge(p, nodes[i], ());
            }
            graph[nodes[i]].inputs = producers;
        }
        let order = match petgraph::algo::toposort(&graph, None) {
            Ok(order) => order.into_iter().filter(|&n| n != input).collect::<Vec<_>>(),
            Err(cycle) => {
                let name = &graph[cycle.node_id()].name;
                return Err(Error::invalid(path, Some(format!("layer \"{name}\"")), "key \"inputs\": the layers form a cycle"));
            }
        };
        let too_big = |shape: &Shape| shape.0.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).is_none_or(|n| n > MAX_ELEMENTS);
        if too_big(&graph[input].output) {
            return Err(Error::invalid(
                path,
                Some("[input] shape".into()),
                format!("{} is over the 2^40 elements a tensor may have", graph[input].output),
            ));
        }
        for &n in &order {
            let shapes: Vec<&Shape> = graph[n].inputs.iter().map(|&p| &graph[p].output).collect();
            let op = graph[n].op.clone().expect("only the input node has no op, and it is not in `order`");
            let out = infer(&op, &shapes).map_err(|m| Error::invalid(path, Some(format!("layer \"{}\"", graph[n].name)), m))?;
            let name = graph[n].name.clone();
            let at = || Some(format!("layer \"{name}\""));
            let weights = match &op {
                Op::Linear { out_features } => {
                    shapes.first().and_then(|s| s.0.iter().try_fold(*out_features as u64, |a, &d| a.checked_mul(d as u64)))
                }
                Op::Conv { out_channels, kernel, .. } => shapes.first().and_then(|s| {
                    [s.0.first().copied().unwrap_or(1), kernel.0, kernel.1]
                        .iter()
                        .try_fold(*out_channels as u64, |a, &d| a.checked_mul(d as u64))
                }),
                _ => Some(0),
            };
            if weights.is_none_or(|w| w > MAX_ELEMENTS) {
                return Err(Error::invalid(path, at(), "its weights are over the 2^40 elements a tensor may have"));
            }
            if too_big(&out) {
                return Err(Error::invalid(path, at(), format!("output {out} is over the 2^40 elements a tensor may have")));
            }
            graph[n].output = out;
        }
        let output = *nodes.last().expect("ArchSpec has at least one layer");
        // Every layer must feed the output, or the file probably has a wiring mistake.
        let feeds_output = {
            let reversed = petgraph::visit::Reversed(&graph);
            let mut seen = vec![false; graph.node_count()];
            let mut dfs = petgraph::visit::Dfs::new(reversed, output);
            while let Some(n) = dfs.next(reversed) {
                seen[n.index()] = true;
            }
            seen
        };
        if let Some(&unused) = nodes.iter().find(|n| !feeds_output[n.index()]) {
            return Err(Error::invalid(
                path,
                Some(format!("layer \"{}\"", graph[unused].name)),
                format!("its output is never used (the network's output is the last layer, \"{}\")", graph[output].name),
            ));
        }
        // Inference folds each batchnorm into the conv or linear layer before it, so
        // that layer must feed nothing else.
        for &n in &nodes {
            if graph[n].op == Some(Op::BatchNorm) {
                let prev = graph[n].inputs[0];
                let foldable = matches!(graph[prev].op, Some(Op::Conv { .. } | Op::Linear { .. }))
                    && graph.neighbors_directed(prev, petgraph::Direction::Outgoing).count() == 1;
                if !foldable {
                    return Err(Error::invalid(
                        path,
                        Some(format!("layer \"{}\"", graph[n].name)),
                        "batchnorm must directly follow a conv or linear layer whose output nothing else uses (it is folded into that layer for inference)",
                    ));
                }
            }
        }
        Ok(Network { path: spec.path.clone(), name: spec.name.clone(), graph, input, output, order, trained: spec.trained.clone() })
    }

    pub fn node(&self, n: NodeIndex) -> &Node {
        &self.graph[n]
    }

    /// The shape flowing into a single-input layer.
    pub fn input_shape(&self, n: NodeIndex) -> &Shape {
        &self.graph[self.graph[n].inputs[0]].output
    }

    /// Layers in execution order, with their index.
    pub fn layers(&self) -> impl Iterator<Item = (NodeIndex, &Node)> + '_ {
        self.order.iter().map(move |&n| (n, &self.graph[n]))
    }

    /// The longest chain of layers with each layer counting `cost(node)`: a layer
    /// starts when all its inputs are done, so the two branches of a residual block
    /// run side by side and only the longer one counts. On a chain, the sum.
    pub fn critical_path(&self, cost: impl Fn(NodeIndex) -> u64) -> u64 {
        let mut end = vec![0u64; self.graph.node_count()];
        for &n in &self.order {
            let start = self.graph[n].inputs.iter().map(|i| end[i.index()]).max().unwrap_or(0);
            end[n.index()] = start + cost(n);
        }
        end.into_iter().max().unwrap_or(0)
    }

    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        self.order.iter().copied().find(|&n| self.graph[n].name == name)
    }
}

/// Output side of a sliding window: floor((side + 2 pad - k) / stride) + 1.
/// `None` also when the padded side overflows.
fn slide(side: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    let padded = pad.checked_mul(2)?.checked_add(side)?;
    (k <= padded).then(|| (padded - k) / stride + 1)
}

fn infer(op: &Op, inputs: &[&Shape]) -> std::result::Result<Shape, String> {
    let kind = op.kind();
    if !matches!(op, Op::Add) && inputs.len() != 1 {
        return Err(format!("{kind} takes one input, got {} in key \"inputs\"", inputs.len()));
    }
    let x = inputs[0];
    let windowed = |k: (usize, usize), s: (usize, usize), p: (usize, usize)| {
        let (c, h, w) = x.chw().ok_or_else(|| format!("{kind} needs a [C, H, W] input, got {x}"))?;
        match (slide(h, k.0, s.0, p.0), slide(w, k.1, s.1, p.1)) {
            (Some(oh), Some(ow)) => Ok((c, oh, ow)),
            _ => Err(format!(
                "kernel {}x{} is larger than its input {}x{} (with padding {}x{})",
                k.0,
                k.1,
                h.saturating_add(p.0.saturating_mul(2)),
                w.saturating_add(p.1.saturating_mul(2)),
                p.0,
                p.1
            )),
        }
    };
    Ok(match op {
        Op::Conv { out_channels, kernel, stride, padding } => {
            let (_, oh, ow) = windowed(*kernel, *stride, *padding)?;
            Shape(vec![*out_channels, oh, ow])
        }
        Op::AvgPool { kernel, stride, padding } => {
            let (c, oh, ow) = windowed(*kernel, *stride, *padding)?;
            Shape(vec![c, oh, ow])
        }
        Op::MaxPool { kernel, stride } => {
            let (c, oh, ow) = windowed(*kernel, *stride, (0, 0))?;
            Shape(vec![c, oh, ow])
        }
        Op::Linear { .. } if x.0.len() != 1 => {
            return Err(format!("linear needs a flat input, got {x}; add a flatten layer"));
        }
        Op::Linear { out_features } => Shape(vec![*out_features]),
        Op::Flatten => Shape(vec![x.numel()]),
        Op::Add => {
            if inputs.len() < 2 {
                return Err(format!("add needs at least two layers in key \"inputs\", got {}", inputs.len()));
            }
            if let Some(other) = inputs.iter().find(|s| **s != x) {
                return Err(format!("add needs inputs of one shape, got {x} and {other}"));
            }
            x.clone()
        }
        Op::Relu | Op::Dropout { .. } | Op::BatchNorm => x.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn build(layers: &str) -> Result<Network> {
        let text = format!("name = \"t\"\n[input]\nshape = [3, 8, 8]\n{layers}");
        Network::build(&ArchSpec::parse(Path::new("n.toml"), &text)?)
    }

    #[test]
    fn infers_conv_pool_flatten_linear_shapes() {
        let n = build("[[layers]]\nop = \"conv\"\nout_channels = 4\nkernel = 3\npadding = 1\n[[layers]]\nop = \"avgpool\"\nkernel = 3\n[[layers]]\nop = \"flatten\"\n[[layers]]\nop = \"linear\"\nout_features = 10\n").unwrap();
        let shapes: Vec<String> = n.layers().map(|(_, l)| l.output.to_string()).collect();
        assert_eq!(shapes, ["[4, 8, 8]", "[4, 2, 2]", "[16]", "[10]"]);
        // Overlapping max pooling: 3x3 windows every 2.
        let n = build("[[layers]]\nop = \"maxpool\"\nkernel = 3\nstride = 2\n").unwrap();
        assert_eq!(n.node(n.output).output, Shape(vec![3, 3, 3]));
    }

    #[test]
    fn strided_conv_floors() {
        let n = build("[[layers]]\nop = \"conv\"\nout_channels = 2\nkernel = 3\nstride = 2\n").unwrap();
        assert_eq!(n.node(n.output).output, Shape(vec![2, 3, 3]));
    }

    #[test]
    fn residual_add_joins_named_inputs() {
        let n = build("[[layers]]\nname = \"a\"\nop = \"conv\"\nout_channels = 3\nkernel = 1\n[[layers]]\nname = \"b\"\nop = \"relu\"\n[[layers]]\nop = \"add\"\ninputs = [\"a\", \"b\"]\n").unwrap();
        let add = n.node(n.output);
        assert_eq!(add.inputs.len(), 2);
        assert_eq!(add.output, Shape(vec![3, 8, 8]));
    }

    fn err(layers: &str) -> String {
        build(layers).unwrap_err().to_string()
    }

    #[test]
    fn graph_mistakes_are_named() {
        assert_eq!(
            err("[[layers]]\nname = \"fc1\"\nop = \"linear\"\nout_features = 3\n"),
            "n.toml: layer \"fc1\": linear needs a flat input, got [3, 8, 8]; add a flatten layer"
        );
        assert!(
            err("[[layers]]\nname = \"x\"\nop = \"relu\"\n[[layers]]\nname = \"x\"\nop = \"relu\"\n")
                .contains("layer \"x\": duplicate name")
        );
        assert!(
            err("[[layers]]\nop = \"relu\"\ninputs = [\"nope\"]\n").contains("layer \"relu1\": key \"inputs\": no layer named \"nope\"")
        );
        assert!(
            err("[[layers]]\nname = \"a\"\nop = \"relu\"\ninputs = [\"b\"]\n[[layers]]\nname = \"b\"\nop = \"relu\"\ninputs = [\"a\"]\n")
                .contains("cycle")
        );
        assert!(err("[[layers]]\nop = \"conv\"\nout_channels = 3\nkernel = 9\n").contains("kernel 9x9 is larger than its input 8x8"));
        assert!(err("[[layers]]\nname = \"a\"\nop = \"relu\"\n[[layers]]\nop = \"flatten\"\n[[layers]]\nop = \"add\"\ninputs = [\"a\", \"flatten1\"]\n").contains("add needs inputs of one shape, got [3, 8, 8] and [192]"));
        assert!(
            err("[[layers]]\nname = \"a\"\nop = \"relu\"\n[[layers]]\nop = \"relu\"\ninputs = [\"input\"]\n")
                .contains("layer \"a\": its output is never used")
        );
    }
}
