//! Forward and backward passes of a planned network over a chunk of images, in f32.
//! A chunk runs on one thread; the training loop runs chunks in parallel and adds
//! their gradients in chunk order, so results do not depend on the thread count.

use crate::graph::Network;
use crate::graph::sharing::{GroupMap, Planned, group_map};
use crate::infer::model::{LayerParams, Params};
use crate::mpc::matmul::{Window, col2im_from, im2col_into};
use crate::mpc::prg::Prg;
use crate::spec::Op;
use crate::spec::plan::Decision;
use crate::train::sgemm::{PackedA, im2col_packed, pack_b, packed_b_len};
use petgraph::graph::NodeIndex;
use rayon::prelude::*;
use std::collections::HashMap;

/// C (m x n, row-major) = A B (+ C when `accumulate`), A and B given by strides.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
    c: &mut [f32],
    accumulate: bool,
) {
    // The last element each operand's strides reach must lie inside it.
    let reach =
        |rows: usize, cols: usize, (rs, cs): (usize, usize)| if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 };
    assert!(a.len() >= reach(m, k, a_strides) && b.len() >= reach(k, n, b_strides) && c.len() >= m * n, "gemm operands too short");
    // Safety: the assertion above keeps every access in bounds.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            a_strides.0 as isize,
            a_strides.1 as isize,
            b.as_ptr(),
            b_strides.0 as isize,
            b_strides.1 as isize,
            if accumulate { 1.0 } else { 0.0 },
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

/// What the passes need about each layer, computed once per run.
pub struct Prepared<'a> {
    pub planned: &'a Planned<'a>,
    windows: HashMap<NodeIndex, Window>,
    groups: HashMap<NodeIndex, GroupMap>,
}

impl<'a> Prepared<'a> {
    pub fn new(planned: &'a Planned<'a>) -> Prepared<'a> {
        let net = planned.network;
        let (mut windows, mut groups) = (HashMap::new(), HashMap::new());
        for (node, layer) in net.layers() {
            let shape = net.input_shape(node);
            match layer.op.as_ref() {
                Some(Op::Conv { kernel, stride, padding, .. }) | Some(Op::AvgPool { kernel, stride, padding }) => {
                    let (channels, height, width) = shape.chw().expect("graph checked");
                    windows.insert(node, Window { channels, height, width, kernel: *kernel, stride: *stride, padding: *padding });
                }
                Some(Op::MaxPool { kernel, stride }) => {
                    let (channels, height, width) = shape.chw().expect("graph checked");
                    windows.insert(node, Window { channels, height, width, kernel: *kernel, stride: *stride, padding: (0, 0) });
                }
                Some(Op::Relu) => {
                    if let Some(plan) = planned.relu_plan(node) {
                        groups.insert(node, group_map(plan, shape));
                    }
                }
                _ => {}
            }
        }
        Prepared { planned, windows, groups }
    }

    fn net(&self) -> &Network {
        self.planned.network
    }
}

/// Training (noise and dropout drawn from `seed`) or evaluation (dropout off; plan
/// noise only where the plan applies it at inference, drawn from `seed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train { seed: u64 },
    Eval { seed: u64 },
}

/// What backward needs beyond the layer outputs.
enum Cache {
    None,
    /// Max pooling: the input position (within the batch) each output came from.
    Argmax(Vec<u32>),
    Dropout(Vec<f32>),
    /// Normalised values and 1 / sqrt(var + eps) per channel (training mode).
    Norm {
        xhat: Vec<f32>,
        inv_std: Vec<f32>,
    },
    /// Gate per activation (the decision after flips, 0 or 1), sign per activation
    /// (-1 where a flip inverted the decision), score per group (per image).
    Shared {
        gate: Vec<f32>,
        sign: Vec<f32>,
        score: Vec<f32>,
    },
}

pub struct Pass {
    pub n: usize,
    /// Batchnorm statistics of this chunk in training mode: layer name -> (mean,
    /// unbiased variance) per channel, for the running averages.
    pub norm_stats: Vec<(String, Vec<f32>, Vec<f32>)>,
    /// Output of every node (input included), indexed by node index.
    pub outputs: Vec<Vec<f32>>,
    cache: Vec<Cache>,
}

impl Pass {
    pub fn logits(&self, net: &Network) -> &[f32] {
        &self.outputs[net.output.index()]
    }
}

/// Runs `n` images (concatenated in `x`) forward.
pub fn forward(p: &Prepared, params: &Params, x: &[f32], n: usize, mode: Mode) -> Pass {
    let net = p.net();
    let mut outputs = vec![Vec::new(); net.graph.node_count()];
    let mut cache: Vec<Cache> = (0..net.graph.node_count()).map(|_| Cache::None).collect();
    let mut norm_stats = Vec::new();
    outputs[net.input.index()] = x.to_vec();
    for (node, layer) in net.layers() {
        let inputs: Vec<&[f32]> = layer.inputs.iter().map(|i| outputs[i.index()].as_slice()).collect();
        let (out, c, stats) = layer_forward(p, params, node, &inputs, n, mode);
        cache[node.index()] = c;
        norm_stats.extend(stats);
        outputs[node.index()] = out;
    }
    Pass { n, norm_stats, outputs, cache }
}

/// The logits of `base`'s images when the output of layer `at` is `replaced` and
/// every layer after it is run again (evaluation mode, no cache kept): what one
/// change to one layer does to the network's output, at the price of the layers
/// after it only.
pub fn logits_from(p: &Prepared, params: &Params, base: &Pass, at: NodeIndex, replaced: Vec<f32>, seed: u64) -> Vec<f32> {
    let net = p.net();
    let mut fresh: Vec<Option<Vec<f32>>> = vec![None; net.graph.node_count()];
    fresh[at.index()] = Some(replaced);
    let after = net.order.iter().position(|&n| n == at).map_or(net.order.len(), |i| i + 1);
    for &node in &net.order[after..] {
        let layer = net.node(node);
        let inputs: Vec<&[f32]> = layer.inputs.iter().map(|i| fresh[i.index()].as_deref().unwrap_or(&base.outputs[i.index()])).collect();
        let (out, _, _) = layer_forward(p, params, node, &inputs, base.n, Mode::Eval { seed });
        fresh[node.index()] = Some(out);
    }
    fresh[net.output.index()].take().unwrap_or_else(|| base.outputs[net.output.index()].clone())
}

/// One layer forward on `n` images: its output, what backward needs, and the
/// batchnorm statistics of this chunk (training mode).
type LayerOut = (Vec<f32>, Cache, Option<(String, Vec<f32>, Vec<f32>)>);

fn layer_forward(p: &Prepared, params: &Params, node: NodeIndex, inputs: &[&[f32]], n: usize, mode: Mode) -> LayerOut {
    let net = p.net();
    let layer = net.node(node);
    let input = inputs[0];
    let in_len = net.input_shape(node).numel();
    let out_len = layer.output.numel();
    let op = layer.op.as_ref().expect("layers() yields layers");
    let mut cache = Cache::None;
    let mut stats = None;
    let out = match op {
        Op::Conv { out_channels, .. } => {
            let w = &p.windows[&node];
            let lp = &params.layers[&layer.name];
            let pos = out_len / out_channels;
            // One product per image, W (O x patch) times the image's im2col matrix
            // (patch x pos), written straight into the image's [O, pos] output: a
            // whole chunk's im2col matrix (tens of MB) would not stay in cache, and
            // packing it for the product cost a fifth of training time. So W is
            // packed once and each image's columns are written in the product's
            // panel layout. Backward rebuilds the columns rather than keeping them.
            let weights = PackedA::new(*out_channels, w.patch(), &lp.weight, (w.patch(), 1));
            let mut cols = vec![0f32; packed_b_len(w.patch(), pos)];
            let mut y = vec![0f32; n * out_len];
            for (xb, yb) in input.chunks_exact(in_len).zip(y.chunks_exact_mut(out_len)) {
                im2col_packed(xb, w, &mut cols);
                weights.times(&cols, pos, yb, pos, false);
                for (row, bias) in yb.chunks_exact_mut(pos).zip(&lp.bias) {
                    row.iter_mut().for_each(|v| *v += bias);
                }
            }
            y
        }
        Op::Linear { out_features } => {
            let lp = &params.layers[&layer.name];
            let mut y: Vec<f32> = (0..n).flat_map(|_| lp.bias.iter().copied()).collect();
            gemm(n, in_len, *out_features, input, (in_len, 1), &lp.weight, (1, in_len), &mut y, true);
            y
        }
        Op::AvgPool { .. } => {
            let mut y = vec![0f32; n * out_len];
            for (xb, yb) in input.chunks_exact(in_len).zip(y.chunks_exact_mut(out_len)) {
                avgpool_forward(&p.windows[&node], xb, yb);
            }
            y
        }
        Op::MaxPool { .. } => {
            let mut y = vec![0f32; n * out_len];
            let mut at = vec![0u32; n * out_len];
            for (b, ((xb, yb), ab)) in
                input.chunks_exact(in_len).zip(y.chunks_exact_mut(out_len)).zip(at.chunks_exact_mut(out_len)).enumerate()
            {
                maxpool_forward(&p.windows[&node], xb, yb, ab, (b * in_len) as u32);
            }
            if matches!(mode, Mode::Train { .. }) {
                cache = Cache::Argmax(at);
            }
            y
        }
        Op::Relu => {
            let (y, c) = relu_forward(p, params, node, input, n, mode);
            cache = c;
            y
        }
        Op::Dropout { p: rate } => match mode {
            Mode::Train { seed } if *rate > 0.0 => {
                let mut rng = Prg::new(seed, &format!("dropout/{}", layer.name));
                let keep = rng.bernoulli(input.len(), 1.0 - rate);
                let scale = 1.0 / (1.0 - *rate as f32);
                let mask: Vec<f32> = keep.iter().map(|&k| k as f32 * scale).collect();
                let y = input.iter().zip(&mask).map(|(x, m)| x * m).collect();
                cache = Cache::Dropout(mask);
                y
            }
            _ => input.to_vec(),
        },
        Op::Add => {
            let mut y = input.to_vec();
            for other in &inputs[1..] {
                for (a, b) in y.iter_mut().zip(other.iter()) {
                    *a += b;
                }
            }
            y
        }
        Op::BatchNorm => {
            let lp = &params.layers[&layer.name];
            let c = lp.weight.len();
            let plane = in_len / c;
            let (mean, var) = match mode {
                Mode::Train { .. } => {
                    let (mean, var) = channel_moments(input, n, c, plane);
                    let m = (n * plane) as f32;
                    stats = Some((layer.name.clone(), mean.clone(), var.iter().map(|v| v * m / (m - 1.0).max(1.0)).collect()));
                    (mean, var)
                }
                Mode::Eval { .. } => (lp.buffers[..c].to_vec(), lp.buffers[c..].to_vec()),
            };
            let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + crate::infer::model::BN_EPS).sqrt()).collect();
            let mut xhat = vec![0f32; input.len()];
            let mut y = vec![0f32; input.len()];
            // One (image, channel) plane per task: no index arithmetic per element.
            xhat.par_chunks_mut(plane).zip(y.par_chunks_mut(plane)).zip(input.par_chunks(plane)).enumerate().for_each(
                |(k, ((xh, yv), xv))| {
                    let ch = k % c;
                    let (mu, s, g, b) = (mean[ch], inv_std[ch], lp.weight[ch], lp.bias[ch]);
                    for ((h, o), &v) in xh.iter_mut().zip(yv.iter_mut()).zip(xv) {
                        *h = (v - mu) * s;
                        *o = g * *h + b;
                    }
                },
            );
            if matches!(mode, Mode::Train { .. }) {
                cache = Cache::Norm { xhat, inv_std };
            }
            y
        }
        Op::Flatten => input.to_vec(),
    };
    (out, cache, stats)
}

/// Average pooling of one [C, H, W] map: each output is the sum of its window's
/// in-bounds inputs (row by row, as `pool_taps` lists them, so sums round alike)
/// over the full window area. Direct loops: gathering through the tap lists took a
/// tenth of a CIFAR-10 training step.
fn avgpool_forward(w: &Window, x: &[f32], y: &mut [f32]) {
    let (oh, ow) = w.out_hw();
    let area = (w.kernel.0 * w.kernel.1) as f32;
    for (xc, yc) in x.chunks_exact(w.height * w.width).zip(y.chunks_exact_mut(oh * ow)) {
        for (o, out) in yc.iter_mut().enumerate() {
            let mut acc = 0f32;
            for_window(w, o / ow, o % ow, |j| acc += xc[j]);
            *out = acc / area;
        }
    }
}

/// The adjoint of `avgpool_forward`: each output's gradient, over the area, added to
/// its window's inputs.
fn avgpool_backward(w: &Window, dy: &[f32], dx: &mut [f32]) {
    let (oh, ow) = w.out_hw();
    let area = (w.kernel.0 * w.kernel.1) as f32;
    for (dyc, dxc) in dy.chunks_exact(oh * ow).zip(dx.chunks_exact_mut(w.height * w.width)) {
        for (o, &d) in dyc.iter().enumerate() {
            let g = d / area;
            for_window(w, o / ow, o % ow, |j| dxc[j] += g);
        }
    }
}

/// Max pooling of one [C, H, W] map: each output is its window's first largest value
/// (as secure inference keeps the running maximum on ties); `at` gets its position
/// in the batch's input, `base` being the image's first.
fn maxpool_forward(w: &Window, x: &[f32], y: &mut [f32], at: &mut [u32], base: u32) {
    let (oh, ow) = w.out_hw();
    let plane = w.height * w.width;
    for (c, (yc, ac)) in y.chunks_exact_mut(oh * ow).zip(at.chunks_exact_mut(oh * ow)).enumerate() {
        let xc = &x[c * plane..(c + 1) * plane];
        for (o, (out, arg)) in yc.iter_mut().zip(ac.iter_mut()).enumerate() {
            let mut best: Option<(usize, f32)> = None;
            for_window(w, o / ow, o % ow, |j| {
                if best.is_none_or(|(_, m)| xc[j] > m) {
                    best = Some((j, xc[j]));
                }
            });
            let (j, m) = best.expect("an unpadded window holds at least one value");
            *out = m;
            *arg = base + (c * plane + j) as u32;
        }
    }
}

/// Calls `f` with the plane index of each in-bounds input of output (oy, ox)'s window.
fn for_window(w: &Window, oy: usize, ox: usize, mut f: impl FnMut(usize)) {
    for ky in 0..w.kernel.0 {
        let Some(iy) = (oy * w.stride.0 + ky).checked_sub(w.padding.0).filter(|&iy| iy < w.height) else { continue };
        for kx in 0..w.kernel.1 {
            if let Some(ix) = (ox * w.stride.1 + kx).checked_sub(w.padding.1).filter(|&ix| ix < w.width) {
                f(iy * w.width + ix);
            }
        }
    }
}

/// ReLU under its plan. Shared groups decide with a hard step (exactly what secure
/// inference computes); flips come from the plan's noise.
fn relu_forward(p: &Prepared, params: &Params, node: NodeIndex, x: &[f32], n: usize, mode: Mode) -> (Vec<f32>, Cache) {
    let net = p.net();
    let len = net.input_shape(node).numel();
    let plain = |x: &[f32]| (x.iter().map(|v| v.max(0.0)).collect(), Cache::None);
    let Some(g) = p.groups.get(&node) else { return plain(x) };
    let plan = p.planned.relu_plan(node).expect("groups exist only for planned layers");
    let members = g.group_of.iter().filter(|&&x| x != u32::MAX).count();
    if g.groups == members {
        // Regular ReLU on the members, identity elsewhere (partial, identity, none).
        let y = x.iter().enumerate().map(|(i, &v)| if g.group_of[i % len] == u32::MAX { v } else { v.max(0.0) }).collect();
        return (y, Cache::None);
    }
    let (noise, seed) = match mode {
        Mode::Train { seed } => (plan.noise.p, seed),
        Mode::Eval { seed } => (if plan.noise.at_inference() { plan.noise.p } else { 0.0 }, seed),
    };
    let mut rng = Prg::new(seed, &format!("relu-noise/{}", net.node(node).name));
    let (mut y, mut gate, mut sign, mut score) = (vec![0f32; n * len], vec![0f32; n * len], vec![1f32; n * len], vec![0f32; n * g.groups]);
    let v = match plan.decision {
        Decision::Learned { .. } => Some(&params.layers[&net.node(node).name].weight),
        _ => None,
    };
    let per_position = net.input_shape(node).chw().map_or(len, |(_, h, w)| h * w);
    let shared = matches!(plan.decision, Decision::Learned { shared_across_channels: true, .. });
    // Weight of each activation in its group's score, laid out like the activations.
    let weights: Vec<f32> = match (plan.decision, v) {
        (Decision::Center, _) => Vec::new(),
        (_, Some(v)) if shared => (0..len).map(|i| v[i % per_position]).collect(),
        (_, Some(v)) => v.clone(),
        (_, None) => g.group_of.iter().map(|&grp| if grp == u32::MAX { 0.0 } else { 1.0 / g.size[grp as usize] as f32 }).collect(),
    };
    for b in 0..n {
        let xb = &x[b * len..(b + 1) * len];
        let sb = &mut score[b * g.groups..(b + 1) * g.groups];
        match plan.decision {
            Decision::Center => sb.iter_mut().zip(&g.center).for_each(|(s, &c)| *s = xb[c as usize]),
            Decision::Mean | Decision::Learned { .. } => {
                for ((&grp, &xi), &w) in g.group_of.iter().zip(xb).zip(&weights) {
                    sb[grp as usize] += w * xi;
                }
            }
        }
        let (yb, gb, signb) = (&mut y[b * len..(b + 1) * len], &mut gate[b * len..(b + 1) * len], &mut sign[b * len..(b + 1) * len]);
        // Without noise no flips are drawn (and the stream is not advanced).
        let flips = if noise > 0.0 { rng.bernoulli(len, noise) } else { Vec::new() };
        for (i, (((o, gt), sg), (&grp, &xi))) in
            yb.iter_mut().zip(gb.iter_mut()).zip(signb.iter_mut()).zip(g.group_of.iter().zip(xb)).enumerate()
        {
            let flip = flips.get(i).copied().unwrap_or(0);
            let d = ((sb[grp as usize] >= 0.0) as u8 ^ flip) as f32;
            *gt = d;
            *sg = if flip == 1 { -1.0 } else { 1.0 };
            *o = d * xi;
        }
    }
    (y, Cache::Shared { gate, sign, score })
}

/// Gradients of the mean loss with respect to every parameter, given the gradient
/// at the logits.
pub fn backward(p: &Prepared, params: &Params, pass: &Pass, dlogits: Vec<f32>) -> Params {
    let net = p.net();
    let n = pass.n;
    let mut grads: HashMap<String, LayerParams> = params.layers.iter().map(|(k, v)| (k.clone(), v.zeros_like())).collect();
    let mut dout: Vec<Option<Vec<f32>>> = vec![None; net.graph.node_count()];
    dout[net.output.index()] = Some(dlogits);
    for &node in net.order.iter().rev() {
        let layer = net.node(node);
        let Some(dy) = dout[node.index()].take() else { continue };
        let x = &pass.outputs[layer.inputs[0].index()];
        let in_len = net.input_shape(node).numel();
        let out_len = layer.output.numel();
        let add_to = |dout: &mut Vec<Option<Vec<f32>>>, producer: NodeIndex, g: Vec<f32>| {
            if producer == net.input {
                return;
            }
            match &mut dout[producer.index()] {
                Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, b)| *a += b),
                slot => *slot = Some(g),
            }
        };
        let dx = match layer.op.as_ref().expect("layers") {
            Op::Conv { out_channels, .. } => {
                let w = &p.windows[&node];
                let lp = &params.layers[&layer.name];
                let gp = grads.get_mut(&layer.name).expect("a gradient per parameter");
                let pos = out_len / out_channels;
                let needs_dx = layer.inputs[0] != net.input;
                let (mut cols, mut dcols) = (vec![0f32; w.patch() * pos], Vec::new());
                // W^T packed once for all images' dcols, dY_b packed per image.
                let weights_t = needs_dx.then(|| PackedA::new(w.patch(), *out_channels, &lp.weight, (1, w.patch())));
                let mut dy_packed = vec![0f32; if needs_dx { packed_b_len(*out_channels, pos) } else { 0 }];
                let mut dx = vec![0f32; n * in_len];
                // Image by image, as forward: dY_b is already an O x pos matrix.
                for ((xb, dyb), dxb) in x.chunks_exact(in_len).zip(dy.chunks_exact(out_len)).zip(dx.chunks_exact_mut(in_len)) {
                    im2col_into(xb, w, &mut cols, pos, 0);
                    // dW += dY_b cols_b^T;  db += row sums of dY_b.
                    gemm(*out_channels, pos, w.patch(), dyb, (pos, 1), &cols, (1, pos), &mut gp.weight, true);
                    for (bias, row) in gp.bias.iter_mut().zip(dyb.chunks_exact(pos)) {
                        *bias += row.iter().sum::<f32>();
                    }
                    if let Some(weights_t) = &weights_t {
                        // dX_b = col2im(W^T dY_b), without the columns matrix where
                        // the sums allow it.
                        pack_b(*out_channels, pos, dyb, (pos, 1), &mut dy_packed);
                        if !weights_t.times_col2im(&dy_packed, w, dxb) {
                            dcols.resize(w.patch() * pos, 0.0);
                            weights_t.times(&dy_packed, pos, &mut dcols, pos, false);
                            col2im_from(&dcols, w, pos, 0, dxb);
                        }
                    }
                }
                dx
            }
            Op::Linear { out_features } => {
                let lp = &params.layers[&layer.name];
                let gp = grads.get_mut(&layer.name).expect("a gradient per parameter");
                // dW += dY^T X;  db += column sums of dY;  dX = dY W.
                gemm(*out_features, n, in_len, &dy, (1, *out_features), x, (in_len, 1), &mut gp.weight, true);
                for row in dy.chunks(*out_features) {
                    gp.bias.iter_mut().zip(row).for_each(|(g, d)| *g += d);
                }
                let mut dx = vec![0f32; n * in_len];
                gemm(n, *out_features, in_len, &dy, (*out_features, 1), &lp.weight, (in_len, 1), &mut dx, false);
                dx
            }
            Op::AvgPool { .. } => {
                let mut dx = vec![0f32; n * in_len];
                for (dyb, dxb) in dy.chunks_exact(out_len).zip(dx.chunks_exact_mut(in_len)) {
                    avgpool_backward(&p.windows[&node], dyb, dxb);
                }
                dx
            }
            // The gradient goes to each window's maximum.
            Op::MaxPool { .. } => {
                let Cache::Argmax(at) = &pass.cache[node.index()] else { unreachable!("backward runs on training passes") };
                let mut dx = vec![0f32; n * in_len];
                for (&j, &d) in at.iter().zip(&dy) {
                    dx[j as usize] += d;
                }
                dx
            }
            Op::Relu => relu_backward(p, params, node, x, &dy, &pass.cache[node.index()], n, grads.get_mut(&layer.name)),
            Op::Dropout { .. } => match &pass.cache[node.index()] {
                Cache::Dropout(mask) => dy.iter().zip(mask).map(|(d, m)| d * m).collect(),
                _ => dy,
            },
            Op::Add => {
                for &other in &layer.inputs[1..] {
                    add_to(&mut dout, other, dy.clone());
                }
                dy
            }
            Op::BatchNorm => {
                let Cache::Norm { xhat, inv_std } = &pass.cache[node.index()] else { unreachable!("backward runs on training passes") };
                let lp = &params.layers[&layer.name];
                let gp = grads.get_mut(&layer.name).expect("a gradient per parameter");
                let c = lp.weight.len();
                let plane = in_len / c;
                let m = (n * plane) as f32;
                // Per channel, summed in a fixed order whatever the thread count.
                let sums: Vec<(f32, f32)> = (0..c)
                    .into_par_iter()
                    .map(|ch| {
                        let (mut sd, mut sdx) = (0f32, 0f32);
                        for b in 0..n {
                            let at = b * in_len + ch * plane;
                            for (d, xh) in dy[at..at + plane].iter().zip(&xhat[at..at + plane]) {
                                sd += d;
                                sdx += d * xh;
                            }
                        }
                        (sd, sdx)
                    })
                    .collect();
                for (ch, &(sd, sdx)) in sums.iter().enumerate() {
                    gp.weight[ch] += sdx;
                    gp.bias[ch] += sd;
                }
                let mut dx = vec![0f32; dy.len()];
                dx.par_chunks_mut(plane).zip(dy.par_chunks(plane)).zip(xhat.par_chunks(plane)).enumerate().for_each(
                    |(k, ((out, d), xh))| {
                        let ch = k % c;
                        let (sd, sdx) = sums[ch];
                        let scale = lp.weight[ch] * inv_std[ch] / m;
                        for ((o, &d), &xh) in out.iter_mut().zip(d).zip(xh) {
                            *o = scale * (m * d - sd - xh * sdx);
                        }
                    },
                );
                dx
            }
            Op::Flatten => dy,
        };
        add_to(&mut dout, layer.inputs[0], dx);
    }
    Params { layers: grads }
}

/// Backward of a (shared) ReLU. The hard step has no useful derivative, so the
/// decision is trained straight-through with a clipped identity (as binarised
/// networks do): d step(s) / ds is taken as 1/2 where |s| <= 1 and 0 elsewhere, so
/// scores near the threshold move and saturated decisions stay put.
#[allow(clippy::too_many_arguments)]
fn relu_backward(
    p: &Prepared,
    params: &Params,
    node: NodeIndex,
    x: &[f32],
    dy: &[f32],
    cache: &Cache,
    n: usize,
    gv: Option<&mut LayerParams>,
) -> Vec<f32> {
    let net = p.net();
    let len = net.input_shape(node).numel();
    let Cache::Shared { gate, sign, score } = cache else {
        let Some(g) = p.groups.get(&node) else {
            // Regular ReLU: one branch-free pass the compiler vectorises (a per-element
            // group lookup here cost 5% of a CIFAR-10 training step).
            return x.iter().zip(dy).map(|(&v, &d)| if v > 0.0 { d } else { 0.0 }).collect();
        };
        let mut dx = vec![0f32; x.len()];
        for ((dxb, xb), dyb) in dx.chunks_exact_mut(len).zip(x.chunks_exact(len)).zip(dy.chunks_exact(len)) {
            for (((o, &v), &d), &grp) in dxb.iter_mut().zip(xb).zip(dyb).zip(&g.group_of) {
                *o = if grp == u32::MAX || v > 0.0 { d } else { 0.0 };
            }
        }
        return dx;
    };
    let g = &p.groups[&node];
    let plan = p.planned.relu_plan(node).expect("shared layers have a plan");
    let per_position = net.input_shape(node).chw().map_or(len, |(_, h, w)| h * w);
    let mut dx: Vec<f32> = dy.iter().zip(gate).map(|(d, g)| d * g).collect();
    let mut gv = gv;
    let mut dd = vec![0f32; g.groups];
    for b in 0..n {
        let at = b * len..(b + 1) * len;
        let (xb, dyb, signb, dxb) = (&x[at.clone()], &dy[at.clone()], &sign[at.clone()], &mut dx[at]);
        // dL/d(decision of group) through every gated activation, sign-flipped where noise flipped it.
        dd.iter_mut().for_each(|d| *d = 0.0);
        for (((&grp, &xi), &d), &sg) in g.group_of.iter().zip(xb).zip(dyb).zip(signb) {
            dd[grp as usize] += d * xi * sg;
        }
        for (d, &s) in dd.iter_mut().zip(&score[b * g.groups..(b + 1) * g.groups]) {
            *d *= if s.abs() <= 1.0 { 0.5 } else { 0.0 };
        }
        match plan.decision {
            Decision::Center => g.center.iter().enumerate().for_each(|(grp, &c)| dxb[c as usize] += dd[grp]),
            Decision::Mean => {
                for (d, &grp) in dxb.iter_mut().zip(&g.group_of) {
                    *d += dd[grp as usize] / g.size[grp as usize] as f32;
                }
            }
            Decision::Learned { shared_across_channels, .. } => {
                let gv = gv.as_deref_mut().expect("learned decisions have weights");
                let v = &params.layers[&net.node(node).name].weight;
                // Shared weights repeat per channel plane; otherwise one per activation.
                let plane = if shared_across_channels { per_position } else { len };
                for ((gplane, xplane), dplane) in g.group_of.chunks(plane).zip(xb.chunks(plane)).zip(dxb.chunks_mut(plane)) {
                    for ((((&grp, &xi), d), gw), &w) in gplane.iter().zip(xplane).zip(dplane).zip(gv.weight.iter_mut()).zip(v) {
                        let ds = dd[grp as usize];
                        *gw += ds * xi;
                        *d += ds * w;
                    }
                }
            }
        }
    }
    dx
}

/// Per-channel mean and (biased) variance of an [n, c, plane] batch, two passes,
/// each channel summed in a fixed order so results do not depend on thread count.
fn channel_moments(x: &[f32], n: usize, c: usize, plane: usize) -> (Vec<f32>, Vec<f32>) {
    let in_len = c * plane;
    let m = (n * plane) as f32;
    let planes = |ch: usize| (0..n).map(move |b| &x[b * in_len + ch * plane..][..plane]);
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mean = planes(ch).map(|p| p.iter().sum::<f32>()).sum::<f32>() / m;
            let var = planes(ch).map(|p| p.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()).sum::<f32>() / m;
            (mean, var)
        })
        .collect();
    stats.into_iter().unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::pool_taps;

    /// The direct pooling loops equal the tap lists of inference bit for bit, with
    /// padding and strides that overlap or skip, forward and backward.
    #[test]
    fn pooling_loops_equal_the_tap_lists() {
        let mut g = Prg::new(7, "pool");
        for (kernel, stride, padding) in
            [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1)), ((3, 2), (2, 3), (1, 0)), ((5, 5), (4, 4), (2, 2))]
        {
            let w = Window { channels: 3, height: 9, width: 11, kernel, stride, padding };
            let (oh, ow) = w.out_hw();
            let x: Vec<f32> = (0..3 * 9 * 11).map(|_| g.below(1 << 20) as f32 / 977.0 - 500.0).collect();
            let dy: Vec<f32> = (0..3 * oh * ow).map(|_| g.below(1 << 20) as f32 / 313.0 - 1000.0).collect();
            let taps = pool_taps(&w);
            let area = (kernel.0 * kernel.1) as f32;
            let want: Vec<f32> = taps.apply(&x, 0f32, |a, v| a + v).into_iter().map(|s| s / area).collect();
            let mut y = vec![0f32; want.len()];
            avgpool_forward(&w, &x, &mut y);
            assert_eq!(y, want, "forward, window {w:?}");
            let mut want_dx = vec![0f32; x.len()];
            for (o, &d) in dy.iter().enumerate() {
                for &j in &taps.index[taps.offsets[o] as usize..taps.offsets[o + 1] as usize] {
                    want_dx[j as usize] += d / area;
                }
            }
            let mut dx = vec![0f32; x.len()];
            avgpool_backward(&w, &dy, &mut dx);
            assert_eq!(dx, want_dx, "backward, window {w:?}");
        }
    }
}
