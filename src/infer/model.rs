//! Model parameters: the weights and biases of every conv and linear layer, and the
//! decision weights of shared ReLU layers with `learned` decisions. Training writes
//! them; until a checkpoint exists they are drawn at random, seeded, scaled like a
//! trained network so that activations stay of order one.

use crate::graph::Network;
use crate::graph::sharing::{Planned, group_map};
use crate::mpc::prg::Prg;
use crate::spec::Op;
use crate::spec::plan::Decision;
use std::collections::HashMap;

/// One layer's parameters, row-major: conv weights [O, C, kh, kw], linear [out, in].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParams {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    /// State that is not trained by gradients: batchnorm's running mean, then its
    /// running variance. Empty for other layers.
    pub buffers: Vec<f32>,
}

impl LayerParams {
    pub fn new(weight: Vec<f32>, bias: Vec<f32>) -> LayerParams {
        LayerParams { weight, bias, buffers: vec![] }
    }

    /// Zeros of the same sizes (gradients, optimiser state).
    pub fn zeros_like(&self) -> LayerParams {
        LayerParams { weight: vec![0.0; self.weight.len()], bias: vec![0.0; self.bias.len()], buffers: vec![0.0; self.buffers.len()] }
    }
}

/// Batchnorm's epsilon (the format's, `spec::BN_EPS`).
pub use crate::spec::BN_EPS;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Params {
    /// By layer name. Shared ReLU layers with learned decisions hold their decision
    /// weights v here (one per activation, or one per position of a channel when
    /// shared across channels), with no bias.
    pub layers: HashMap<String, LayerParams>,
}

impl Params {
    /// He-normal weights (std sqrt(2 / fan_in)), small biases, and decision weights
    /// that start as the group mean (1 / group size).
    pub fn random(planned: &Planned, seed: u64) -> Params {
        let net: &Network = planned.network;
        let mut rng = Prg::new(seed, "params");
        let mut normal = move || rng.normal();
        let mut layers = HashMap::new();
        for (node, layer) in net.layers() {
            let input = net.input_shape(node);
            let (fan_in, outs) = match layer.op.as_ref() {
                Some(Op::Conv { out_channels, kernel, .. }) => (input.chw().map_or(1, |(c, _, _)| c) * kernel.0 * kernel.1, *out_channels),
                Some(Op::Linear { out_features }) => (input.numel(), *out_features),
                Some(Op::BatchNorm) => {
                    // gamma = 1, beta = 0, running mean 0 and variance 1: the identity.
                    let c = input.chw().map_or(input.numel(), |s| s.0);
                    let mut buffers = vec![0.0; c];
                    buffers.extend(vec![1.0; c]);
                    layers.insert(layer.name.clone(), LayerParams { weight: vec![1.0; c], bias: vec![0.0; c], buffers });
                    continue;
                }
                Some(Op::Relu) => {
                    if let Some(plan) = planned.relu_plan(node)
                        && let Decision::Learned { shared_across_channels, .. } = plan.decision
                    {
                        let groups = group_map(plan, input);
                        let per_activation: Vec<f32> = groups
                            .group_of
                            .iter()
                            .map(|&g| if g == u32::MAX { 0.0 } else { 1.0 / groups.size[g as usize] as f32 })
                            .collect();
                        let weight = if shared_across_channels {
                            let (c, h, w) = input.chw().expect("plan checked: learned sharing needs a map");
                            // One weight per position, the same in every channel: channel 0's.
                            let _ = c;
                            per_activation[..h * w].to_vec()
                        } else {
                            per_activation
                        };
                        layers.insert(layer.name.clone(), LayerParams::new(weight, vec![]));
                    }
                    continue;
                }
                _ => continue,
            };
            let std = (2.0 / fan_in as f64).sqrt();
            let weight = (0..fan_in * outs).map(|_| (normal() * std) as f32).collect();
            let bias = (0..outs).map(|_| (normal() * 0.01) as f32).collect();
            layers.insert(layer.name.clone(), LayerParams::new(weight, bias));
        }
        Params { layers }
    }
}

impl Params {
    /// Folds every batchnorm into the conv or linear layer before it, as inference
    /// (plain and secure) runs it: W' = s W and b' = s (b - mean) + beta per output
    /// channel, with s = gamma / sqrt(var + eps). The batchnorm layers are dropped
    /// (`infer` runs them as identity).
    pub fn folded(&self, net: &Network) -> Params {
        let mut out = self.clone();
        for (node, layer) in net.layers() {
            if layer.op != Some(Op::BatchNorm) {
                continue;
            }
            let Some(bn) = out.layers.remove(&layer.name) else { continue };
            let prev = &net.node(net.node(node).inputs[0]).name;
            let Some(p) = out.layers.get_mut(prev) else { continue };
            let c = bn.weight.len();
            let per_channel = p.weight.len() / c;
            for o in 0..c {
                let s = bn.weight[o] / (bn.buffers[c + o] + BN_EPS).sqrt();
                p.weight[o * per_channel..(o + 1) * per_channel].iter_mut().for_each(|w| *w *= s);
                p.bias[o] = s * (p.bias[o] - bn.buffers[o]) + bn.bias[o];
            }
        }
        out
    }
}
