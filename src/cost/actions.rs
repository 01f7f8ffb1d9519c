//! Action counts: what secure inference of each layer has to do, independent of
//! what any protocol charges for it. One image per inference.

use crate::graph::Network;
use crate::graph::sharing::{Planned, decisions};
use crate::spec::Op;
use crate::spec::plan::{Decision, NoiseMask};
use crate::spec::protocol::{Compute, ConvMasking};
use petgraph::graph::NodeIndex;
use serde::Serialize;

/// What a product computes, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductKind {
    Linear,
    Conv,
    /// The group scores v^T s of a shared ReLU with secret learned weights.
    Score,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MulPurpose {
    /// Multiply each activation by its group's decision.
    Gate,
    /// Flip decisions with a secret noise mask.
    Noise,
}

/// One step of a layer's secure evaluation. Steps of a layer run one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    /// A Beaver product of X (`x` elements) and Y (`y`) into Z (`z`). For a matrix
    /// product m x n times n x v: x = mn, y = nv, z = mv; `macs` = mnv, the
    /// multiply-accumulates of the plaintext product (for the compute term).
    Product { kind: ProductKind, x: u64, y: u64, z: u64, macs: u64 },
    /// Secure comparison with zero, one per ReLU decision.
    Drelu { count: u64 },
    /// Elementwise products of secret values.
    Mul { purpose: MulPurpose, count: u64 },
    /// Local fixed-point truncations (after products, pooling, public scalings).
    Truncate { count: u64 },
    /// Max pooling: `steps` comparison steps one after another, each over all
    /// `windows` windows at once (a window of n values takes n - 1).
    Maxpool { windows: u64, steps: u64 },
}

/// The actions of one layer, in order. `relus` is the number of ReLU decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerActions {
    pub node: NodeIndex,
    pub relus: u64,
    pub actions: Vec<Action>,
}

/// Counts the actions of every layer of a planned network.
pub fn count(planned: &Planned, masking: ConvMasking) -> Vec<LayerActions> {
    let net: &Network = planned.network;
    net.layers()
        .map(|(node, layer)| {
            let out = &layer.output;
            let op = layer.op.as_ref().expect("layers() yields layers, not the input");
            let input = net.input_shape(node);
            let (relus, actions) = match op {
                Op::Conv { out_channels, kernel, .. } => {
                    let (cin, _, _) = input.chw().expect("graph checked: conv input is a map");
                    let positions = (out.numel() / out_channels) as u64;
                    let patch = (kernel.0 * kernel.1 * cin) as u64;
                    let (o, z) = (*out_channels as u64, out.numel() as u64);
                    let x = match masking {
                        ConvMasking::Im2col => positions * patch,
                        ConvMasking::Tensor => input.numel() as u64,
                    };
                    let product = Action::Product { kind: ProductKind::Conv, x, y: patch * o, z, macs: positions * patch * o };
                    (0, vec![product, Action::Truncate { count: z }])
                }
                Op::Linear { out_features } => {
                    let (n, v) = (input.numel() as u64, *out_features as u64);
                    (
                        0,
                        vec![
                            Action::Product { kind: ProductKind::Linear, x: n, y: n * v, z: v, macs: n * v },
                            Action::Truncate { count: v },
                        ],
                    )
                }
                Op::AvgPool { .. } => (0, vec![Action::Truncate { count: out.numel() as u64 }]),
                Op::MaxPool { kernel, .. } => {
                    let steps = (kernel.0 * kernel.1) as u64 - 1;
                    (0, if steps == 0 { vec![] } else { vec![Action::Maxpool { windows: out.numel() as u64, steps }] })
                }
                Op::Relu => relu_actions(planned, node),
                Op::Flatten | Op::Dropout { .. } | Op::Add | Op::BatchNorm => (0, vec![]),
            };
            LayerActions { node, relus, actions }
        })
        .collect()
}

/// A (shared) ReLU layer: score, decisions, optional secret noise, gating.
fn relu_actions(planned: &Planned, node: NodeIndex) -> (u64, Vec<Action>) {
    let input = planned.network.input_shape(node);
    let n = input.numel() as u64;
    let Some(plan) = planned.relu_plan(node) else {
        return (n, vec![Action::Drelu { count: n }, Action::Mul { purpose: MulPurpose::Gate, count: n }]);
    };
    // `Planned::new` already checked the plan against this shape.
    let d = decisions(plan, input).expect("plan checked against the layer's shape");
    let (groups, gated) = (d.groups as u64, d.gated as u64);
    if groups == 0 {
        return (0, vec![]);
    }
    let mut actions = Vec::new();
    let shared = groups < gated;
    if shared {
        match plan.decision {
            // One activation per group decides: its share is selected locally.
            Decision::Center => {}
            // Public weights: each party scales and sums its own shares, then truncates.
            Decision::Mean | Decision::Learned { weights: crate::spec::WeightVisibility::Public, .. } => {
                actions.push(Action::Truncate { count: groups })
            }
            // Secret weights: one dot product per group, X the activations, Y the weights.
            Decision::Learned { weights: crate::spec::WeightVisibility::Secret, shared_across_channels } => {
                let channels = input.chw().map_or(1, |(c, _, _)| c as u64);
                let y = if shared_across_channels { gated / channels } else { gated };
                // Each activation is multiplied by its weight once.
                actions.push(Action::Product { kind: ProductKind::Score, x: gated, y, z: groups, macs: gated });
                actions.push(Action::Truncate { count: groups });
            }
        }
    }
    actions.push(Action::Drelu { count: groups });
    if plan.noise.at_inference() && plan.noise.mask == NoiseMask::Secret {
        actions.push(Action::Mul { purpose: MulPurpose::Noise, count: gated });
    }
    actions.push(Action::Mul { purpose: MulPurpose::Gate, count: gated });
    (groups, actions)
}

impl Action {
    /// The action for a batch of `b` images run together (SecureNN's batched
    /// inference): every count grows b times except a product's Y, the weights,
    /// masked and opened once per batch. Rounds do not change.
    pub fn batched(self, b: u64) -> Action {
        match self {
            Action::Product { kind, x, y, z, macs } => Action::Product { kind, x: x * b, y, z: z * b, macs: macs * b },
            Action::Drelu { count } => Action::Drelu { count: count * b },
            Action::Mul { purpose, count } => Action::Mul { purpose, count: count * b },
            Action::Truncate { count } => Action::Truncate { count: count * b },
            Action::Maxpool { windows, steps } => Action::Maxpool { windows: windows * b, steps },
        }
    }

    /// Seconds of this action's local work under a table's measured `[compute]` rates.
    pub fn compute_seconds(&self, c: &Compute) -> f64 {
        let ns = match *self {
            Action::Product { x, y, z, macs, .. } => macs as f64 * c.ns_per_mac + (x + y + z) as f64 * c.ns_per_element,
            Action::Drelu { count } => count as f64 * c.ns_per_drelu,
            Action::Mul { count, .. } => count as f64 * c.ns_per_mul,
            Action::Truncate { count } => count as f64 * c.ns_per_truncate,
            // A step is a DReLU and a Mul of two values per window.
            Action::Maxpool { windows, steps } => (windows * steps) as f64 * (c.ns_per_drelu + 2.0 * c.ns_per_mul),
        };
        ns * 1e-9
    }
}
