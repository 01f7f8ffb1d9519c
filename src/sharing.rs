//! A plan applied to a network: which ReLU layers share decisions, checked against
//! the layers' real shapes, and how many decisions each layer makes.

use crate::error::{Error, Result};
use crate::graph::{Network, Shape};
use crate::spec::plan::{Grouping, Window};
use crate::spec::{Op, PlanSpec, ReluPlan};
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

/// A network together with the sharing of each of its ReLU layers.
#[derive(Debug, Clone)]
pub struct Planned<'a> {
    pub network: &'a Network,
    pub plan: &'a PlanSpec,
    by_node: HashMap<NodeIndex, &'a ReluPlan>,
}

impl<'a> Planned<'a> {
    /// Checks that every layer the plan names is a ReLU layer of this network whose
    /// shape admits the grouping.
    pub fn new(network: &'a Network, plan: &'a PlanSpec) -> Result<Planned<'a>> {
        let at = |layer: &str| Some(format!("[relu.{layer}]"));
        if let Some(arch) = &plan.architecture {
            if *arch != network.name {
                return Err(Error::invalid(
                    plan.file(),
                    Some("key \"architecture\"".into()),
                    format!("plan is for \"{arch}\", but {} is \"{}\"", network.path.display(), network.name),
                ));
            }
        }
        let mut by_node = HashMap::new();
        for (layer, relu) in &plan.relu {
            let Some(node) = network.find(layer) else {
                let relus: Vec<&str> = relu_layers(network).map(|n| network.node(n).name.as_str()).collect();
                return Err(Error::invalid(
                    plan.file(),
                    at(layer),
                    format!("{} has no layer named \"{layer}\" (its ReLU layers: {})", network.path.display(), relus.join(", ")),
                ));
            };
            if network.node(node).op != Some(Op::Relu) {
                return Err(Error::invalid(
                    plan.file(),
                    at(layer),
                    format!("layer \"{layer}\" is a {} layer, not relu", network.node(node).op.as_ref().map_or("input", Op::kind)),
                ));
            }
            decisions(relu, network.input_shape(node)).map_err(|m| Error::invalid(plan.file(), at(layer), m))?;
            by_node.insert(node, relu);
        }
        Ok(Planned { network, plan, by_node })
    }

    /// The plan of a ReLU layer, `None` for regular ReLU.
    pub fn relu_plan(&self, node: NodeIndex) -> Option<&'a ReluPlan> {
        self.by_node.get(&node).copied()
    }
}

pub fn relu_layers(network: &Network) -> impl Iterator<Item = NodeIndex> + '_ {
    network.layers().filter(|(_, l)| l.op == Some(Op::Relu)).map(|(n, _)| n)
}

/// The number of ReLU decisions (DReLU evaluations) a layer of this shape makes
/// under this plan, and the number of activations that keep a ReLU gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decisions {
    /// Groups, each with one decision.
    pub groups: usize,
    /// Activations multiplied by a decision (0 for identity).
    pub gated: usize,
}

/// Counts a plan's decisions on an input of `shape`, or says why the plan cannot
/// apply to it (a patch larger than the map, a channel grouping on a flat vector).
pub fn decisions(relu: &ReluPlan, shape: &Shape) -> std::result::Result<Decisions, String> {
    let n = shape.numel();
    let map = || shape.chw().ok_or_else(|| format!("this grouping needs a [C, H, W] input, got {shape}"));
    let tiles = |(h, w): (usize, usize), (th, tw): (usize, usize), edge: crate::spec::Edge, what: &str| {
        if th > h || tw > w {
            return Err(format!(
                "{what} {th}x{tw} is larger than the {h}x{w} map; use group = \"channel\" for one decision per channel"
            ));
        }
        Ok(edge.tiles(h, th) * edge.tiles(w, tw))
    };
    Ok(match relu.grouping {
        Grouping::None => Decisions { groups: n, gated: n },
        Grouping::Identity => Decisions { groups: 0, gated: 0 },
        Grouping::Channel => Decisions { groups: map()?.0, gated: n },
        Grouping::Patch { size, edge } => {
            let (c, h, w) = map()?;
            Decisions { groups: c * tiles((h, w), size, edge, "patch")?, gated: n }
        }
        Grouping::Clusters { window, clusters, edge } => {
            let (c, h, w) = map()?;
            let (windows, area) = match window {
                Window::Full => (1, h * w),
                Window::Size(wh, ww) => (tiles((h, w), (wh, ww), edge, "window")?, wh * ww),
            };
            if clusters > area {
                return Err(format!("{clusters} clusters per window is more than the window's {area} activations"));
            }
            Decisions { groups: c * windows * clusters, gated: n }
        }
        Grouping::Partial { fraction } => {
            let (channels, per_channel) = shape.chw().map_or((n, 1), |(c, h, w)| (c, h * w));
            let kept = (fraction * channels as f64).round() as usize * per_channel;
            Decisions { groups: kept, gated: kept }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::plan::{Decision, Edge, Noise};

    fn plan(grouping: Grouping) -> ReluPlan {
        ReluPlan { grouping, decision: Decision::Center, noise: Noise::NONE }
    }

    #[test]
    fn paper_table5_and_6_counts_per_channel() {
        let map = Shape(vec![1, 32, 32]);
        let per_channel = |g| decisions(&plan(g), &map).unwrap().groups;
        assert_eq!(per_channel(Grouping::None), 1024);
        assert_eq!(per_channel(Grouping::Patch { size: (3, 3), edge: Edge::Partial }), 121);
        assert_eq!(per_channel(Grouping::Patch { size: (4, 4), edge: Edge::Partial }), 64);
        assert_eq!(per_channel(Grouping::Patch { size: (32, 32), edge: Edge::Partial }), 1);
        assert_eq!(per_channel(Grouping::Channel), 1);
        let svhn = decisions(&plan(Grouping::Patch { size: (3, 3), edge: Edge::Merge }), &Shape(vec![1, 29, 29])).unwrap();
        assert_eq!(svhn.groups, 81);
        // Table 7: (8x8, 8) is 128 per channel, (32x32, 256) is 256.
        let w8 = Grouping::Clusters { window: Window::Size(8, 8), clusters: 8, edge: Edge::Partial };
        assert_eq!(per_channel(w8), 128);
        assert_eq!(per_channel(Grouping::Clusters { window: Window::Full, clusters: 256, edge: Edge::Partial }), 256);
    }

    #[test]
    fn partial_keeps_a_fraction_of_channels() {
        let d = decisions(&plan(Grouping::Partial { fraction: 0.5 }), &Shape(vec![64, 32, 32])).unwrap();
        assert_eq!(d, Decisions { groups: 32 * 1024, gated: 32 * 1024 });
    }

    #[test]
    fn impossible_groupings_say_why() {
        let e = decisions(&plan(Grouping::Patch { size: (32, 32), edge: Edge::Merge }), &Shape(vec![32, 29, 29])).unwrap_err();
        assert!(e.contains("patch 32x32 is larger than the 29x29 map"), "{e}");
        let e = decisions(&plan(Grouping::Channel), &Shape(vec![128])).unwrap_err();
        assert!(e.contains("needs a [C, H, W] input, got [128]"), "{e}");
    }
}
