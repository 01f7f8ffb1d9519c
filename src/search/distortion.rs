//! Distortion of each option: how far the network's output moves when one channel of
//! one layer shares its decisions by that option and everything else stays as it
//! was. Measured, not estimated: the changed channel is run through the rest of the
//! network (`train::net::logits_from`) on a sample of training images, and the
//! distortion is the mean KL divergence from the unchanged network's softmax to the
//! changed one's (never negative, 0 for the unchanged option). Block-ReLU measures
//! its per-channel distortion the same way; the knapsack then adds them up.

use super::options::LayerOptions;
use crate::graph::sharing::{Planned, window_rects};
use crate::infer::model::Params;
use crate::spec::plan::{Edge, Window};
use crate::train::net::{Mode, Prepared, forward, logits_from};
use rayon::prelude::*;

/// Images per forward pass: enough to amortise the pass, few enough that every
/// layer's outputs for them stay small (a CIFAR-10 chunk of 32 holds about 60 MB).
const CHUNK: usize = 32;

/// How a shared group's decision is made while measuring: the group's mean (what
/// learned weights start from, and `mean`) or its centre activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    Mean,
    Center,
}

/// `[layer][channel][option]` mean KL divergence over the `n` images (concatenated
/// in `images`), and the options evaluated (channels x non-trivial options).
#[allow(clippy::too_many_arguments)]
pub fn measure(
    planned: &Planned,
    params: &Params,
    images: &[f32],
    n: usize,
    layers: &[LayerOptions],
    edge: Edge,
    score: Score,
    bar: &indicatif::ProgressBar,
) -> Vec<Vec<Vec<f64>>> {
    let net = planned.network;
    let prepared = Prepared::new(planned);
    let image_len = images.len() / n.max(1);
    let mut sums: Vec<Vec<Vec<f64>>> = layers.iter().map(|l| vec![vec![0.0; l.sides.len()]; l.channels]).collect();
    let per_chunk: usize = layers.iter().map(|l| l.channels * l.sides.iter().filter(|&&s| s > 1).count()).sum();
    bar.set_length((per_chunk * n.div_ceil(CHUNK)) as u64);
    for (chunk_index, chunk) in images.chunks(CHUNK * image_len).enumerate() {
        let m = chunk.len() / image_len;
        let seed = chunk_index as u64;
        let base = forward(&prepared, params, chunk, m, Mode::Eval { seed });
        let reference = log_softmax(base.logits(net), m);
        for (l, layer) in layers.iter().enumerate() {
            let x = &base.outputs[net.node(layer.node).inputs[0].index()];
            let y = &base.outputs[layer.node.index()];
            let (h, w) = layer.map;
            let tasks: Vec<(usize, usize)> =
                (0..layer.channels).flat_map(|c| (0..layer.sides.len()).filter(|&k| layer.sides[k] > 1).map(move |k| (c, k))).collect();
            let kl: Vec<f64> = tasks
                .par_iter()
                .map(|&(c, k)| {
                    let side = layer.sides[k];
                    let mut changed = y.clone();
                    let plane = h * w;
                    let per_image = layer.channels * plane;
                    for b in 0..m {
                        let at = b * per_image + c * plane;
                        share_plane(&x[at..at + plane], &mut changed[at..at + plane], (h, w), side, edge, score);
                    }
                    let logits = logits_from(&prepared, params, &base, layer.node, changed, seed);
                    let moved = log_softmax(&logits, m);
                    bar.inc(1);
                    kl_sum(&reference, &moved)
                })
                .collect();
            for (&(c, k), v) in tasks.iter().zip(kl) {
                sums[l][c][k] += v;
            }
        }
    }
    for v in sums.iter_mut().flatten().flatten() {
        *v /= n as f64;
    }
    sums
}

/// One channel's map under square tiles of `side`: each tile's decision from its
/// score, applied to all its activations (`x` the ReLU's input, `y` its output).
fn share_plane(x: &[f32], y: &mut [f32], (h, w): (usize, usize), side: usize, edge: Edge, score: Score) {
    for ((y0, y1), (x0, x1)) in window_rects(h, w, Window::Size(side.min(h), side.min(w)), edge) {
        let at = |r: usize, c: usize| r * w + c;
        let s = match score {
            Score::Mean => (y0..y1).flat_map(|r| (x0..x1).map(move |c| (r, c))).map(|(r, c)| x[at(r, c)]).sum::<f32>(),
            // The middle member in row-major order, as `graph::sharing::group_map` picks it.
            Score::Center => {
                let i = ((y1 - y0) * (x1 - x0) - 1) / 2;
                x[at(y0 + i / (x1 - x0), x0 + i % (x1 - x0))]
            }
        };
        let keep = s >= 0.0;
        for r in y0..y1 {
            for c in x0..x1 {
                y[at(r, c)] = if keep { x[at(r, c)] } else { 0.0 };
            }
        }
    }
}

fn log_softmax(logits: &[f32], m: usize) -> Vec<f64> {
    let k = logits.len() / m.max(1);
    logits
        .chunks(k)
        .flat_map(|row| {
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            row.iter().map(move |&v| v as f64 - lse)
        })
        .collect()
}

/// Sum over images of KL(p || q), both given as log-probabilities row by row.
fn kl_sum(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(&lp, &lq)| lp.exp() * (lp - lq)).sum::<f64>().max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_plane_keeps_or_zeroes_whole_tiles() {
        // 2x3 map, 2x2 tiles with partial edge: tiles {0,1,3,4} and {2,5}.
        let x = [1.0, -3.0, -1.0, 1.0, 0.5, 4.0];
        let mut y = [0.0; 6];
        share_plane(&x, &mut y, (2, 3), 2, Edge::Partial, Score::Mean);
        // Tile 1 sums to -0.5: all zero; tile 2 sums to 3: kept as is (negatives too).
        assert_eq!(y, [0.0, 0.0, -1.0, 0.0, 0.0, 4.0]);
        share_plane(&x, &mut y, (2, 3), 2, Edge::Partial, Score::Center);
        // Centres: member 1 of 4 (-3.0) and member 0 of 2 (-1.0): both tiles off.
        assert_eq!(y, [0.0; 6]);
    }

    #[test]
    fn kl_is_zero_for_equal_outputs_and_positive_otherwise() {
        let a = log_softmax(&[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], 2);
        assert!(kl_sum(&a, &a).abs() < 1e-12);
        let b = log_softmax(&[3.0, 2.0, 1.0, 0.0, 0.0, 0.0], 2);
        assert!(kl_sum(&a, &b) > 0.1);
    }
}
