//! Inference over the layer graph, written once for every number system: float,
//! plaintext fixed point, and secret shares under SecureNN. A `Backend` supplies the
//! arithmetic; `run` walks the layers in order and applies each layer's recipe, so
//! the three evaluations share truncation points and decisions by construction.

pub mod checkpoint;
pub mod model;
pub mod plain;
pub mod secure;

use crate::graph::Network;
use crate::graph::sharing::{Planned, group_map};
use crate::infer::model::Params;
use crate::mpc::matmul::Window;
use crate::spec::Op;
use crate::spec::plan::{Decision, NoiseMask, WeightVisibility};
use petgraph::graph::NodeIndex;

/// A linear map with public structure: out[i] = sum of x[j] for j in taps[i].
/// Pooling windows, group sums and gathers are all of this kind (local, free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taps {
    pub offsets: Vec<u32>,
    pub index: Vec<u32>,
}

impl Taps {
    pub fn gather(idx: &[u32]) -> Taps {
        Taps { offsets: (0..=idx.len() as u32).collect(), index: idx.to_vec() }
    }

    pub fn outputs(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The same map applied to each of `images` images laid one after another, the
    /// inputs of image b at `b * stride`, its outputs after those of image b - 1.
    pub fn repeat(self, images: usize, stride: usize) -> Taps {
        if images == 1 {
            return self;
        }
        let mut offsets = Vec::with_capacity(images * self.outputs() + 1);
        offsets.push(0);
        let mut index = Vec::with_capacity(images * self.index.len());
        for b in 0..images {
            let shift = (b * stride) as u32;
            for i in 0..self.outputs() {
                index.extend(self.of(i).iter().map(|&j| j + shift));
                offsets.push(index.len() as u32);
            }
        }
        Taps { offsets, index }
    }

    /// The inputs of output `i`.
    pub fn of(&self, i: usize) -> &[u32] {
        &self.index[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The first value of the window and then the rest, folded with `keep(max, x)`:
    /// true keeps the running maximum.
    pub fn fold_max<T: Copy>(&self, x: &[T], keep: impl Fn(T, T) -> bool) -> Vec<T> {
        (0..self.outputs())
            .map(|i| {
                let (first, rest) = self.of(i).split_first().expect("a pooling window holds at least one value");
                rest.iter().fold(x[*first as usize], |m, &j| if keep(m, x[j as usize]) { m } else { x[j as usize] })
            })
            .collect()
    }

    pub fn apply<T: Copy>(&self, x: &[T], zero: T, add: impl Fn(T, T) -> T) -> Vec<T> {
        (0..self.outputs())
            .map(|i| {
                self.index[self.offsets[i] as usize..self.offsets[i + 1] as usize].iter().fold(zero, |acc, &j| add(acc, x[j as usize]))
            })
            .collect()
    }
}

/// A product of secret (or plaintext) weights with the layer input, for `images`
/// images laid one after another (outputs likewise, image by image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// Kernel [O, C kh kw] times the im2col of each image.
    Conv { window: Window, out_channels: usize, images: usize },
    /// Weights [out, in] times each image's input vector.
    Linear { inputs: usize, outputs: usize, images: usize },
}

/// The arithmetic of one number system.
pub trait Backend {
    /// A vector of values (a layer's activations).
    type V: Clone;
    /// Model parameters as this backend holds them (plain, encoded or shared).
    type W;

    /// Fractional bits of the encoding (0 for float: no truncation).
    fn weights(&mut self, w: &[f32]) -> Self::W;
    fn input(&mut self, x: &[f32]) -> Self::V;
    /// Weights times input, before truncation.
    fn product(&mut self, w: &Self::W, x: &Self::V, p: Product) -> Self::V;
    /// Per group g: sum over its members p of x[p] * w[weight_of[p]], before truncation.
    fn grouped_dot(&mut self, x: &Self::V, w: &Self::W, weight_of: &[u32], group_of: &[u32], groups: usize) -> Self::V;
    /// Drops the extra fractional bits a product of two encoded values carries.
    fn truncate(&mut self, x: Self::V) -> Self::V;
    /// Adds a public per-channel (or per-output) bias, `per` values to each, the
    /// bias starting over for each image.
    fn add_bias(&mut self, x: Self::V, bias: &[f32], per: usize) -> Self::V;
    /// Multiplies each value by a public constant (encoded); truncate afterwards.
    fn scale(&mut self, x: &Self::V, c: &[f64]) -> Self::V;
    fn taps(&mut self, x: &Self::V, t: &Taps) -> Self::V;
    /// The largest value of each window of `t` (all of one size), the first of equal
    /// values, comparing as secure inference does (the sign of the difference).
    fn maxpool(&mut self, x: &Self::V, t: &Taps) -> Self::V;
    fn add(&mut self, a: &Self::V, b: &Self::V) -> Self::V;
    fn negate(&mut self, x: &Self::V) -> Self::V;
    /// 1 where x >= 0, else 0, as integers.
    fn drelu(&mut self, x: &Self::V) -> Self::V;
    /// Flips 0/1 decisions where `flip` is 1 (public flip bits).
    fn flip_public(&mut self, d: &Self::V, flip: &[u8]) -> Self::V;
    /// Flip bits held secret (dealt at setup, like the model).
    fn secret_bits(&mut self, bits: &[u8]) -> Self::V;
    /// Elementwise product; the first factor is a 0/1 integer, so no truncation.
    fn mul(&mut self, a: &Self::V, b: &Self::V) -> Self::V;
    /// Replaces x[idx[i]] by v[i].
    fn scatter(&mut self, x: &Self::V, idx: &[u32], v: &Self::V) -> Self::V;
    /// Sees a shared ReLU layer's group scores and their decisions (0/1), before any
    /// noise: the simulator compares them across backends (`simulate::DecisionCheck`).
    fn decided(&mut self, _node: NodeIndex, _scores: &Self::V, _decisions: &Self::V) {}
    /// Marks the start and end of a layer (the secure backend tallies messages).
    /// `inputs`: the layers it reads, which have ended.
    fn begin_layer(&mut self, _node: NodeIndex, _inputs: &[NodeIndex]) {}
    fn end_layer(&mut self, _node: NodeIndex) {}
}

/// Runs the network on one input and returns every layer's output, in `network.order`.
/// `noise_seed` draws the flip bits of noisy layers, the same for every backend.
pub fn run<B: Backend>(b: &mut B, planned: &Planned, params: &Params, input: &[f32], noise_seed: u64) -> Vec<B::V> {
    run_batch(b, planned, params, input, 1, noise_seed)
}

/// `run` on a batch: `inputs` holds `images` inputs one after another, and every
/// layer's output holds the images' outputs likewise. Secure inference then masks
/// the weights once for the batch and pays every round once (SecureNN's batches).
pub fn run_batch<B: Backend>(b: &mut B, planned: &Planned, params: &Params, input: &[f32], images: usize, noise_seed: u64) -> Vec<B::V> {
    let net: &Network = planned.network;
    let mut outputs: Vec<Option<B::V>> = vec![None; net.graph.node_count()];
    outputs[net.input.index()] = Some(b.input(input));
    let mut ran = Vec::with_capacity(net.order.len());
    for (node, layer) in net.layers() {
        let x = |i: usize| outputs[layer.inputs[i].index()].as_ref().expect("producers run first");
        b.begin_layer(node, &layer.inputs);
        let op = layer.op.as_ref().expect("layers() yields layers");
        let input_shape = net.input_shape(node);
        let out = match op {
            Op::Conv { out_channels, kernel, stride, padding } => {
                let (channels, height, width) = input_shape.chw().expect("graph checked");
                let window = Window { channels, height, width, kernel: *kernel, stride: *stride, padding: *padding };
                let p = &params.layers[&layer.name];
                let w = b.weights(&p.weight);
                let y = b.product(&w, x(0), Product::Conv { window, out_channels: *out_channels, images });
                let y = b.truncate(y);
                let (oh, ow) = window.out_hw();
                b.add_bias(y, &p.bias, oh * ow)
            }
            Op::Linear { out_features } => {
                let p = &params.layers[&layer.name];
                let w = b.weights(&p.weight);
                let y = b.product(&w, x(0), Product::Linear { inputs: input_shape.numel(), outputs: *out_features, images });
                let y = b.truncate(y);
                b.add_bias(y, &p.bias, 1)
            }
            Op::AvgPool { kernel, stride, padding } => {
                let (channels, height, width) = input_shape.chw().expect("graph checked");
                let window = Window { channels, height, width, kernel: *kernel, stride: *stride, padding: *padding };
                let sums = b.taps(x(0), &pool_taps(&window).repeat(images, input_shape.numel()));
                // Divide by the full window area, as average pooling with zero padding does.
                let area = (kernel.0 * kernel.1) as f64;
                let scaled = b.scale(&sums, &vec![1.0 / area; images * sums_len(&window)]);
                b.truncate(scaled)
            }
            Op::MaxPool { kernel, stride } => {
                let (channels, height, width) = input_shape.chw().expect("graph checked");
                let window = Window { channels, height, width, kernel: *kernel, stride: *stride, padding: (0, 0) };
                b.maxpool(x(0), &pool_taps(&window).repeat(images, input_shape.numel()))
            }
            Op::Relu => relu_layer(b, planned, params, node, x(0), images, noise_seed),
            Op::Add => {
                let mut acc = x(0).clone();
                for i in 1..layer.inputs.len() {
                    acc = b.add(&acc, x(i));
                }
                acc
            }
            // Flatten is a reshape, dropout is identity at inference, batchnorm is folded
            // into the preceding conv by training (identity here until checkpoints carry it).
            Op::Flatten | Op::Dropout { .. } | Op::BatchNorm => x(0).clone(),
        };
        b.end_layer(node);
        outputs[node.index()] = Some(out);
        ran.push(node);
    }
    // Moved out at the end rather than copied as they come (a copy of every layer's
    // shares was 0.6% of a CIFAR-10 image's profile).
    ran.iter().map(|node| outputs[node.index()].take().expect("each layer runs once")).collect()
}

fn sums_len(w: &Window) -> usize {
    let (oh, ow) = w.out_hw();
    w.channels * oh * ow
}

/// The window of each pooled output, skipping positions in the padding.
pub fn pool_taps(w: &Window) -> Taps {
    let (oh, ow) = w.out_hw();
    let mut offsets = vec![0u32];
    let mut index = Vec::new();
    for c in 0..w.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..w.kernel.0 {
                    for kx in 0..w.kernel.1 {
                        let iy = (oy * w.stride.0 + ky) as isize - w.padding.0 as isize;
                        let ix = (ox * w.stride.1 + kx) as isize - w.padding.1 as isize;
                        if (0..w.height as isize).contains(&iy) && (0..w.width as isize).contains(&ix) {
                            index.push(((c * w.height + iy as usize) * w.width + ix as usize) as u32);
                        }
                    }
                }
                offsets.push(index.len() as u32);
            }
        }
    }
    Taps { offsets, index }
}

/// A ReLU layer under its plan: regular ReLU, or one decision per group (from the
/// centre, the mean or learned weights), optional noise, then one Mul per activation.
/// `images` images laid one after another: every group map and weight vector of one
/// image repeats for each (groups of image b after those of image b - 1).
fn relu_layer<B: Backend>(
    b: &mut B,
    planned: &Planned,
    params: &Params,
    node: NodeIndex,
    x: &B::V,
    images: usize,
    noise_seed: u64,
) -> B::V {
    let net = planned.network;
    let shape = net.input_shape(node);
    let Some(plan) = planned.relu_plan(node) else {
        let d = b.drelu(x);
        return b.mul(&d, x);
    };
    let g = group_map(plan, shape);
    if g.groups == 0 {
        return x.clone();
    }
    let n = g.group_of.len();
    let repeat = |v: Vec<f64>| -> Vec<f64> { if images == 1 { v } else { v.iter().copied().cycle().take(v.len() * images).collect() } };
    let members: Vec<u32> = (0..n as u32).filter(|&i| g.group_of[i as usize] != u32::MAX).collect();
    if g.groups == members.len() {
        // One activation per group (regular ReLU, or the kept channels of a partial layer).
        let gather = Taps::gather(&members).repeat(images, n);
        let xs = b.taps(x, &gather);
        let d = b.drelu(&xs);
        let y = b.mul(&d, &xs);
        return if members.len() == n { y } else { b.scatter(x, &gather.index, &y) };
    }
    // Shared: every activation belongs to a group here (patch, channel, clusters).
    let score = match plan.decision {
        Decision::Center => b.taps(x, &Taps::gather(&g.center).repeat(images, n)),
        Decision::Mean => {
            let sums = b.taps(x, &group_taps(&g).repeat(images, n));
            let inv: Vec<f64> = g.size.iter().map(|&s| 1.0 / s as f64).collect();
            let scaled = b.scale(&sums, &repeat(inv));
            b.truncate(scaled)
        }
        Decision::Learned { weights, shared_across_channels } => {
            let v = &params.layers[&net.node(node).name].weight;
            let weight_of = weight_of(shape, n, shared_across_channels);
            let s = match weights {
                WeightVisibility::Public => {
                    let per_activation: Vec<f64> = weight_of.iter().map(|&j| v[j as usize] as f64).collect();
                    let weighted = b.scale(x, &repeat(per_activation));
                    b.taps(&weighted, &group_taps(&g).repeat(images, n))
                }
                WeightVisibility::Secret => {
                    // One weight vector for the batch; groups numbered image by image.
                    let w = b.weights(v);
                    let weight_of: Vec<u32> = weight_of.iter().copied().cycle().take(n * images).collect();
                    let group_of: Vec<u32> = (0..images).flat_map(|i| g.group_of.iter().map(move |&k| k + (i * g.groups) as u32)).collect();
                    b.grouped_dot(x, &w, &weight_of, &group_of, g.groups * images)
                }
            };
            b.truncate(s)
        }
    };
    let decisions = b.drelu(&score);
    b.decided(node, &score, &decisions);
    let mut d = b.taps(&decisions, &Taps::gather(&g.group_of).repeat(images, g.groups));
    if plan.noise.at_inference() {
        let mut rng = crate::mpc::prg::Prg::new(noise_seed, &format!("noise/{}", net.node(node).name));
        let flips = rng.bernoulli(n * images, plan.noise.p);
        d = match plan.noise.mask {
            NoiseMask::Public => b.flip_public(&d, &flips),
            NoiseMask::Secret => {
                // d xor f = d + f - 2 d f, one Mul per activation.
                let f = b.secret_bits(&flips);
                let df = b.mul(&d, &f);
                let twice = b.add(&df, &df);
                let sum = b.add(&d, &f);
                let neg = b.negate(&twice);
                b.add(&sum, &neg)
            }
        };
    }
    b.mul(&d, x)
}

/// Which learned decision weight each activation of a layer uses.
fn weight_of(shape: &crate::graph::Shape, activations: usize, shared_across_channels: bool) -> Vec<u32> {
    let per_position = shape.chw().map_or(1, |(_, h, w)| h * w) as u32;
    (0..activations as u32).map(|i| if shared_across_channels { i % per_position } else { i }).collect()
}

/// How much an error of e lsb in a shared layer's input can move each group's score,
/// as a factor of e: 1 for the centre; for the mean, 1 and the rounding of the
/// encoded 1/size; for learned weights, the group's sum of |weight| and their
/// rounding. With one truncation of the score (floor or floor + 1), a secure score
/// lies within `gain * e + 2` lsb of the fixed-point one.
pub fn score_gain(planned: &Planned, params: &Params, node: NodeIndex, frac: u32) -> Vec<f64> {
    let net = planned.network;
    let Some(plan) = planned.relu_plan(node) else { return Vec::new() };
    let shape = net.input_shape(node);
    let g = group_map(plan, shape);
    let lsb = 1.0 / (1u64 << frac) as f64;
    match plan.decision {
        Decision::Center => vec![1.0; g.groups],
        Decision::Mean => g.size.iter().map(|&n| 1.0 + n as f64 * lsb).collect(),
        Decision::Learned { shared_across_channels, .. } => {
            let v = &params.layers[&net.node(node).name].weight;
            let mut gain = vec![0.0; g.groups];
            for (w, &grp) in weight_of(shape, g.group_of.len(), shared_across_channels).iter().zip(&g.group_of) {
                if grp != u32::MAX {
                    gain[grp as usize] += (v[*w as usize] as f64).abs() + lsb;
                }
            }
            gain
        }
    }
}

fn group_taps(g: &crate::graph::sharing::GroupMap) -> Taps {
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); g.groups];
    for (i, &grp) in g.group_of.iter().enumerate() {
        if grp != u32::MAX {
            members[grp as usize].push(i as u32);
        }
    }
    let mut offsets = vec![0u32];
    let mut index = Vec::new();
    for m in members {
        index.extend(m);
        offsets.push(index.len() as u32);
    }
    Taps { offsets, index }
}
