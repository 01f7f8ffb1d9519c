//! Activation recording for what comes after training: the binary ReLU pattern of
//! chosen layers over a sample of images (the input of data-driven clustering), and
//! the total variation of every layer's output (the paper's Figure 3).

use super::CHUNK;
use super::net::{Mode, Prepared, forward};
use crate::data::Split;
use crate::infer::model::Params;
use crate::spec::Op;
use petgraph::graph::NodeIndex;
use rayon::prelude::*;
use serde::Serialize;

/// Sign patterns of one ReLU layer's input: 1 where the activation is >= 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub layer: String,
    /// [C, H, W] or [N] of one image.
    pub shape: Vec<usize>,
    /// images x activations, one byte (0 or 1) each.
    pub bits: Vec<u8>,
    pub images: usize,
}

/// Total variation of a layer's output: the sum over channels of |horizontal| and
/// |vertical| differences of neighbouring activations, averaged over images; and the
/// same per pair of neighbours, to compare layers of different sizes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variation {
    pub layer: String,
    pub op: String,
    pub total_variation: f64,
    pub per_neighbour_pair: f64,
}

/// Runs the first `n` images of `split` in evaluation mode and records both.
pub fn record(prepared: &Prepared, params: &Params, split: &Split, relu_layers: &[NodeIndex], n: usize) -> (Vec<Pattern>, Vec<Variation>) {
    let net = prepared.planned.network;
    let n = n.min(split.len());
    let len = split.image_len();
    // Per chunk: the patterns of each chosen layer and the TV sums of every layer.
    type ChunkRecord = (Vec<Vec<u8>>, Vec<(f64, f64)>);
    let chunks: Vec<ChunkRecord> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (a, b) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let pass = forward(prepared, params, &split.images[a * len..b * len], b - a, Mode::Eval { seed: c as u64 });
            let patterns = relu_layers
                .iter()
                .map(|&node| pass.outputs[net.node(node).inputs[0].index()].iter().map(|&v| (v >= 0.0) as u8).collect())
                .collect();
            let tv = net
                .order
                .iter()
                .map(|&node| {
                    let Some((ch, h, w)) = net.node(node).output.chw() else { return (0.0, 0.0) };
                    let out = &pass.outputs[node.index()];
                    let (mut sum, mut pairs) = (0f64, 0f64);
                    for img in out.chunks(ch * h * w) {
                        for plane in img.chunks(h * w) {
                            for y in 0..h {
                                for x in 0..w {
                                    let v = plane[y * w + x];
                                    if x + 1 < w {
                                        sum += (plane[y * w + x + 1] - v).abs() as f64;
                                        pairs += 1.0;
                                    }
                                    if y + 1 < h {
                                        sum += (plane[(y + 1) * w + x] - v).abs() as f64;
                                        pairs += 1.0;
                                    }
                                }
                            }
                        }
                    }
                    (sum, pairs)
                })
                .collect();
            (patterns, tv)
        })
        .collect();
    let patterns = relu_layers
        .iter()
        .enumerate()
        .map(|(k, &node)| Pattern {
            layer: net.node(node).name.clone(),
            shape: net.input_shape(node).0.clone(),
            bits: chunks.iter().flat_map(|(p, _)| p[k].iter().copied()).collect(),
            images: n,
        })
        .collect();
    let variations = net
        .order
        .iter()
        .enumerate()
        .filter(|(_, node)| net.node(**node).output.chw().is_some())
        .map(|(k, &node)| {
            let (sum, pairs) = chunks.iter().fold((0.0, 0.0), |acc, (_, tv)| (acc.0 + tv[k].0, acc.1 + tv[k].1));
            Variation {
                layer: net.node(node).name.clone(),
                op: net.node(node).op.as_ref().map_or("input", Op::kind).to_string(),
                total_variation: sum / n.max(1) as f64,
                per_neighbour_pair: sum / pairs.max(1.0),
            }
        })
        .collect();
    (patterns, variations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Network;
    use crate::graph::sharing::Planned;
    use crate::spec::{ArchSpec, PlanSpec};
    use std::path::Path;

    #[test]
    fn patterns_are_signs_and_variation_counts_neighbour_differences() {
        let text = "name = \"t\"\n[input]\nshape = [1, 2, 3]\n[[layers]]\nname = \"r\"\nop = \"relu\"\n";
        let net = Network::build(&ArchSpec::parse(Path::new("t.toml"), text).unwrap()).unwrap();
        let plan = PlanSpec::original();
        let planned = Planned::new(&net, &plan).unwrap();
        let prepared = Prepared::new(&planned);
        let split = Split {
            images: vec![1.0, -1.0, 2.0, 0.0, 3.0, -2.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0],
            labels: vec![0, 0],
            shape: [1, 2, 3],
        };
        let relu = net.find("r").unwrap();
        let (p, v) = record(&prepared, &Params::default(), &split, &[relu], 2);
        assert_eq!(p[0].bits, vec![1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
        // Image 1 after ReLU: [1, 0, 2; 0, 3, 0]: horizontal 1 + 2 + 3 + 3, vertical 1 + 3 + 2 = 15; image 2 is all 0.
        assert_eq!(v[0].total_variation, 15.0 / 2.0);
        assert_eq!(v[0].per_neighbour_pair, 15.0 / 14.0);
    }
}
