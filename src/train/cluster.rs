//! Data-driven ReLU groups (the paper's clustering): for each channel, and each window
//! of it, the activations whose ReLU decisions agree most often over the training set
//! are merged, two at a time, until k groups remain.
//!
//! As the paper describes it: every activation is a binary vector (its ReLU decision
//! on each training image); pairs are taken by increasing Hamming distance, and a pair
//! in different sets unites them, until k sets remain. That is single-linkage
//! agglomerative clustering, computed here as Kruskal's algorithm over all pairs of a
//! window, with ties broken by position so the result is the same on every run.

use crate::graph::sharing::window_rects;
use crate::spec::Edge;
use crate::spec::plan::Window;
use crate::train::record::Pattern;
use rayon::prelude::*;

/// What `explore cluster` did, per layer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterReport {
    pub architecture: String,
    pub images: usize,
    /// Seconds to run the network over the images and record the decisions.
    pub record_seconds: f64,
    pub threads: usize,
    pub layers: Vec<ClusterLayer>,
    pub assignment: String,
    pub plan: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterLayer {
    pub layer: String,
    pub shape: Vec<usize>,
    pub decisions_per_channel: usize,
    /// The largest cluster's share of its window, averaged over windows.
    pub largest_cluster_share: f64,
    /// Seconds to cluster the layer (packing and linkage, all channels).
    pub seconds: f64,
    pub map: String,
}

/// Bit vectors of every activation over the images: `words` u64s per activation.
pub struct Packed {
    pub activations: usize,
    pub words: usize,
    pub bits: Vec<u64>,
}

/// Transposes a recording (image-major, one byte per decision) into one packed bit
/// vector per activation.
pub fn pack(p: &Pattern) -> Packed {
    let activations: usize = p.shape.iter().product();
    let words = p.images.div_ceil(64).max(1);
    let mut bits = vec![0u64; activations * words];
    // Each task owns a range of activations, so the result does not depend on threads.
    bits.par_chunks_mut(words * 256).enumerate().for_each(|(chunk, out)| {
        let a0 = chunk * 256;
        for img in 0..p.images {
            let row = &p.bits[img * activations..(img + 1) * activations];
            let (word, bit) = (img / 64, img % 64);
            for (k, a) in (a0..(a0 + out.len() / words)).enumerate() {
                out[k * words + word] |= (row[a] as u64) << bit;
            }
        }
    });
    Packed { activations, words, bits }
}

fn hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Single-linkage clusters of `members` (activation indices) into `k` sets; returns
/// each member's cluster, numbered 0..k by first appearance.
pub fn single_linkage(packed: &Packed, members: &[usize], k: usize) -> Vec<u32> {
    let m = members.len();
    assert!(k >= 1 && k <= m, "k = {k} clusters of {m} activations: checked by the plan");
    let w = packed.words;
    let vec_of = |i: usize| &packed.bits[members[i] * w..(members[i] + 1) * w];
    // All pairs by (distance, i, j): the paper's order, made deterministic.
    let mut pairs: Vec<(u32, u32, u32)> = Vec::with_capacity(m * (m - 1) / 2);
    for i in 0..m {
        let vi = vec_of(i);
        for j in i + 1..m {
            pairs.push((hamming(vi, vec_of(j)), i as u32, j as u32));
        }
    }
    pairs.sort_unstable();
    let mut parent: Vec<u32> = (0..m as u32).collect();
    fn root(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            // Path halving keeps the trees flat.
            parent[x as usize] = parent[parent[x as usize] as usize];
            x = parent[x as usize];
        }
        x
    }
    let mut sets = m;
    for &(_, i, j) in &pairs {
        if sets == k {
            break;
        }
        let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
        if ri != rj {
            // The smaller index becomes the root: labels do not depend on merge order.
            let (lo, hi) = if ri < rj { (ri, rj) } else { (rj, ri) };
            parent[hi as usize] = lo;
            sets -= 1;
        }
    }
    let mut label = vec![u32::MAX; m];
    let mut next = 0;
    (0..m)
        .map(|i| {
            let r = root(&mut parent, i as u32) as usize;
            if label[r] == u32::MAX {
                label[r] = next;
                next += 1;
            }
            label[r]
        })
        .collect()
}

/// Clusters a recorded layer ([C, H, W] patterns) per channel and window into `k`
/// clusters each; returns the cluster of every activation, numbered within its window
/// (the assignment a `clusters` plan reads).
pub fn cluster_layer(p: &Pattern, window: Window, edge: Edge, k: usize) -> Result<Vec<u32>, String> {
    let [c, h, w] = p.shape[..] else {
        return Err(format!("layer {} has input {:?}: clustering needs a [C, H, W] map", p.layer, p.shape));
    };
    if p.images == 0 {
        return Err("no images recorded".into());
    }
    let rects = window_rects(h, w, window, edge);
    if let Some(((y0, y1), (x0, x1))) = rects.iter().find(|((y0, y1), (x0, x1))| (y1 - y0) * (x1 - x0) < k) {
        return Err(format!("a {}x{} window of {} has fewer than {k} activations", y1 - y0, x1 - x0, p.layer));
    }
    let packed = pack(p);
    let jobs: Vec<(usize, usize)> = (0..c).flat_map(|ch| (0..rects.len()).map(move |r| (ch, r))).collect();
    let results: Vec<(Vec<usize>, Vec<u32>)> = jobs
        .par_iter()
        .map(|&(ch, r)| {
            let ((y0, y1), (x0, x1)) = rects[r];
            let members: Vec<usize> = (y0..y1).flat_map(|y| (x0..x1).map(move |x| (ch * h + y) * w + x)).collect();
            let labels = single_linkage(&packed, &members, k);
            (members, labels)
        })
        .collect();
    let mut ids = vec![0u32; c * h * w];
    for (members, labels) in results {
        for (a, l) in members.into_iter().zip(labels) {
            ids[a] = l;
        }
    }
    Ok(ids)
}

/// One layer to cluster: its ReLU node, and the plan's window, edge and clusters per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub node: petgraph::graph::NodeIndex,
    pub window: Window,
    pub edge: Edge,
    pub clusters: usize,
}

/// One clustered layer: its name, `[C, H, W]` shape and the cluster of every activation.
pub type LayerClusters = (String, Vec<usize>, Vec<u32>);

/// Records a trained network's ReLU decisions on the first `samples` images of `split`
/// (in `planned`, normally the original) and clusters each requested layer.
pub fn assignments(
    planned: &crate::graph::sharing::Planned,
    params: &crate::infer::model::Params,
    split: &crate::data::Split,
    requests: &[Request],
    samples: usize,
) -> Result<Vec<LayerClusters>, String> {
    let prepared = crate::train::net::Prepared::new(planned);
    let nodes: Vec<_> = requests.iter().map(|r| r.node).collect();
    let (patterns, _) = crate::train::record::record(&prepared, params, split, &nodes, samples);
    requests
        .iter()
        .zip(&patterns)
        .map(|(r, p)| Ok((p.layer.clone(), p.shape.clone(), cluster_layer(p, r.window, r.edge, r.clusters)?)))
        .collect()
}

/// The largest cluster's share of its window, averaged over all windows of all
/// channels: 1/k when clusters are balanced, near 1 when one (background) cluster
/// takes almost every activation.
pub fn largest_share(ids: &[u32], (c, h, w): (usize, usize, usize), rects: &[crate::graph::sharing::Rect], k: usize) -> f64 {
    let mut share = 0.0;
    let mut count = vec![0usize; k];
    for ch in 0..c {
        for &((y0, y1), (x0, x1)) in rects {
            count.iter_mut().for_each(|n| *n = 0);
            for y in y0..y1 {
                for x in x0..x1 {
                    count[ids[(ch * h + y) * w + x] as usize] += 1;
                }
            }
            share += *count.iter().max().unwrap_or(&0) as f64 / ((y1 - y0) * (x1 - x0)) as f64;
        }
    }
    share / (c * rects.len()).max(1) as f64
}

/// A cluster-map picture (the paper's Figures 2 and 4): one tile per channel, each
/// activation coloured by its cluster, tiles in a near-square grid with white gaps.
pub fn map_image(ids: &[u32], (c, h, w): (usize, usize, usize), scale: usize) -> image::RgbImage {
    let cols = (c as f64).sqrt().ceil() as usize;
    let rows = c.div_ceil(cols);
    let gap = 2;
    let (tw, th) = (w * scale, h * scale);
    let mut img =
        image::RgbImage::from_pixel((cols * (tw + gap) + gap) as u32, (rows * (th + gap) + gap) as u32, image::Rgb([255, 255, 255]));
    for ch in 0..c {
        let (ox, oy) = (gap + (ch % cols) * (tw + gap), gap + (ch / cols) * (th + gap));
        for y in 0..h {
            for x in 0..w {
                let colour = colour(ids[(ch * h + y) * w + x]);
                for dy in 0..scale {
                    for dx in 0..scale {
                        img.put_pixel((ox + x * scale + dx) as u32, (oy + y * scale + dy) as u32, colour);
                    }
                }
            }
        }
    }
    img
}

/// Distinct colours for neighbouring ids: hues stepped by the golden angle.
fn colour(id: u32) -> image::Rgb<u8> {
    let hue = (id as f64 * 137.507_764) % 360.0;
    let (s, v) = (0.65, if id.is_multiple_of(2) { 0.95 } else { 0.75 });
    let c = v * s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    image::Rgb([((r + m) * 255.0) as u8, ((g + m) * 255.0) as u8, ((b + m) * 255.0) as u8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(shape: Vec<usize>, images: usize, f: impl Fn(usize, usize) -> bool) -> Pattern {
        let a: usize = shape.iter().product();
        let bits = (0..images).flat_map(|i| (0..a).map(move |j| (i, j))).map(|(i, j)| f(i, j) as u8).collect();
        Pattern { layer: "r".into(), shape, bits, images }
    }

    #[test]
    fn packing_transposes_images_into_bit_vectors() {
        let p = pattern(vec![1, 1, 3], 70, |i, j| (i + j) % 3 == 0);
        let packed = pack(&p);
        assert_eq!(packed.words, 2);
        for a in 0..3 {
            for i in 0..70 {
                let bit = packed.bits[a * 2 + i / 64] >> (i % 64) & 1;
                assert_eq!(bit == 1, (i + a) % 3 == 0);
            }
        }
    }

    #[test]
    fn correlated_activations_end_in_one_cluster() {
        // Left half of the map follows one random sequence, right half another.
        let seq = |i: usize, salt: usize| (i.wrapping_mul(2654435761) ^ salt).count_ones().is_multiple_of(2);
        let p = pattern(vec![2, 4, 4], 200, |i, j| if j % 4 < 2 { seq(i, 1) } else { seq(i, 77) });
        let ids = cluster_layer(&p, Window::Full, Edge::Partial, 2).unwrap();
        for ch in 0..2 {
            for y in 0..4 {
                for x in 0..4 {
                    assert_eq!(ids[ch * 16 + y * 4 + x], (x >= 2) as u32, "channel {ch} ({y}, {x})");
                }
            }
        }
        // Per 2x2 window the halves split the windows on the seam, not the others.
        let ids = cluster_layer(&p, Window::Size(2, 2), Edge::Partial, 1).unwrap();
        assert!(ids.iter().all(|&i| i == 0));
    }

    #[test]
    fn single_linkage_merges_the_closest_pairs_first() {
        // Distances along a line: 0-1 close, 1-2 close, 3 far.
        let vectors = [0b0000u64, 0b0001, 0b0011, 0b1111_0000];
        let packed = Packed { activations: 4, words: 1, bits: vectors.to_vec() };
        assert_eq!(single_linkage(&packed, &[0, 1, 2, 3], 2), [0, 0, 0, 1]);
        assert_eq!(single_linkage(&packed, &[0, 1, 2, 3], 4), [0, 1, 2, 3]);
        assert_eq!(single_linkage(&packed, &[0, 1, 2, 3], 1), [0, 0, 0, 0]);
    }

    #[test]
    fn windows_too_small_for_k_are_refused() {
        let p = pattern(vec![1, 3, 3], 4, |_, _| true);
        let e = cluster_layer(&p, Window::Size(2, 2), Edge::Partial, 3).unwrap_err();
        assert!(e.contains("1x1 window") || e.contains("fewer than 3"), "{e}");
    }

    #[test]
    fn the_largest_share_is_one_over_k_when_balanced() {
        let rects = window_rects(2, 2, Window::Full, Edge::Partial);
        assert_eq!(largest_share(&[0, 1, 0, 1], (1, 2, 2), &rects, 2), 0.5);
        assert_eq!(largest_share(&[0, 0, 0, 1], (1, 2, 2), &rects, 2), 0.75);
    }

    #[test]
    fn the_map_has_one_tile_per_channel() {
        let img = map_image(&[0, 1, 2, 3, 0, 0, 0, 0], (2, 2, 2), 3);
        assert_eq!((img.width(), img.height()), (2 * (6 + 2) + 2, 6 + 4));
        assert_ne!(img.get_pixel(2, 2), img.get_pixel(5, 2));
    }
}
