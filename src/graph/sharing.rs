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
        if let Some(arch) = &plan.architecture
            && *arch != network.name
        {
            return Err(Error::invalid(
                plan.file(),
                Some("key \"architecture\"".into()),
                format!("plan is for \"{arch}\", but {} is \"{}\"", network.path.display(), network.name),
            ));
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
            return Err(format!("{what} {th}x{tw} is larger than the {h}x{w} map; use group = \"channel\" for one decision per channel"));
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
        Grouping::Clusters { window, clusters, edge, ref assignment } => {
            let (c, h, w) = map()?;
            if let Window::Size(wh, ww) = window {
                tiles((h, w), (wh, ww), edge, "window")?;
            }
            let rects = window_rects(h, w, window, edge);
            // Every window must hold k activations, or some clusters would be empty.
            let ((y0, y1), (x0, x1)) = *rects.iter().min_by_key(|((y0, y1), (x0, x1))| (y1 - y0) * (x1 - x0)).expect("a map has a window");
            let area = (y1 - y0) * (x1 - x0);
            if clusters > area {
                return Err(match window {
                    Window::Full => format!("{clusters} clusters is more than the map's {area} activations"),
                    Window::Size(..) => format!(
                        "{clusters} clusters per window is more than the {}x{} window's {area} activations{}",
                        y1 - y0,
                        x1 - x0,
                        if matches!(window, Window::Size(wh, ww) if area < wh * ww) {
                            " (an edge window: edge = \"merge\" joins it to its neighbour)"
                        } else {
                            ""
                        }
                    ),
                });
            }
            if let Some(a) = assignment {
                check_assignment(a, (c, h, w), &rects, clusters)?;
            }
            Decisions { groups: c * rects.len() * clusters, gated: n }
        }
        Grouping::PerChannel { ref sides, edge } => {
            let (c, h, w) = map()?;
            if sides.len() != c {
                return Err(format!("key \"patches\" lists {} sides, the layer's input has {c} channels", sides.len()));
            }
            let mut groups = 0;
            for (ch, &s) in sides.iter().enumerate() {
                if s == 0 || s > h.max(w) {
                    return Err(format!("key \"patches\": channel {ch} has side {s}; on the {h}x{w} map sides are 1 to {}", h.max(w)));
                }
                groups += edge.tiles(h, s.min(h)) * edge.tiles(w, s.min(w));
            }
            Decisions { groups, gated: n }
        }
        Grouping::Partial { fraction } => {
            let (channels, per_channel) = shape.chw().map_or((n, 1), |(c, h, w)| (c, h * w));
            let kept = (fraction * channels as f64).round() as usize * per_channel;
            Decisions { groups: kept, gated: kept }
        }
    })
}

/// A window of a map: rows y0..y1 and columns x0..x1, as ((y0, y1), (x0, x1)).
pub type Rect = ((usize, usize), (usize, usize));

/// Start and end of each tile of side `tile` along a side of `side`, by the edge rule.
pub fn tile_ranges(side: usize, tile: usize, edge: crate::spec::Edge) -> Vec<(usize, usize)> {
    let count = edge.tiles(side, tile);
    (0..count).map(|t| (t * tile, if t + 1 == count { side } else { (t + 1) * tile }.min(side))).collect()
}

/// The windows of an `h x w` map, row by row: ((y0, y1), (x0, x1)) each.
pub fn window_rects(h: usize, w: usize, window: Window, edge: crate::spec::Edge) -> Vec<Rect> {
    let (rows, cols) = match window {
        Window::Full => (vec![(0, h)], vec![(0, w)]),
        Window::Size(wh, ww) => (tile_ranges(h, wh, edge), tile_ranges(w, ww, edge)),
    };
    rows.iter().flat_map(|&r| cols.iter().map(move |&c| (r, c))).collect()
}

/// An assignment fits when it has the map's shape and each window of each channel
/// uses every cluster id 0..k and no other.
fn check_assignment(
    a: &crate::spec::plan::Assignment,
    (c, h, w): (usize, usize, usize),
    rects: &[Rect],
    k: usize,
) -> std::result::Result<(), String> {
    if a.shape != [c, h, w] {
        return Err(format!("assignment {} is {:?}, the layer's input is [{c}, {h}, {w}]", a.file.display(), a.shape));
    }
    let mut seen = vec![false; k];
    for ch in 0..c {
        for ((y0, y1), (x0, x1)) in rects {
            seen.iter_mut().for_each(|s| *s = false);
            for y in *y0..*y1 {
                for x in *x0..*x1 {
                    let id = a.ids[(ch * h + y) * w + x] as usize;
                    if id >= k {
                        return Err(format!(
                            "assignment {}: channel {ch}, position ({y}, {x}) is in cluster {id}, but there are {k} per window",
                            a.file.display()
                        ));
                    }
                    seen[id] = true;
                }
            }
            if let Some(missing) = seen.iter().position(|s| !s) {
                return Err(format!(
                    "assignment {}: channel {ch}, window at ({y0}, {x0}) has no activation in cluster {missing} of {k}",
                    a.file.display()
                ));
            }
        }
    }
    Ok(())
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
        let w8 = Grouping::Clusters { window: Window::Size(8, 8), clusters: 8, edge: Edge::Partial, assignment: None };
        assert_eq!(per_channel(w8), 128);
        assert_eq!(per_channel(Grouping::Clusters { window: Window::Full, clusters: 256, edge: Edge::Partial, assignment: None }), 256);
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

/// Which activations of a shared ReLU layer form each group, built explicitly (the
/// cost model only counts; the simulator needs the groups themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMap {
    /// Number of groups (decisions).
    pub groups: usize,
    /// Group of each activation, `u32::MAX` for activations that pass unchanged
    /// (identity, or channels a partial layer leaves alone).
    pub group_of: Vec<u32>,
    /// For each group, the activation whose value decides under `center`.
    pub center: Vec<u32>,
    /// Members per group.
    pub size: Vec<u32>,
}

/// Builds the groups of `relu` on an input of `shape` (already checked by `decisions`).
///
/// Clusters come from training data once clustering exists; until then each window's
/// k clusters are k runs of consecutive positions (row-major), which has the same
/// count and cost as any clustering.
pub fn group_map(relu: &ReluPlan, shape: &Shape) -> GroupMap {
    let n = shape.numel();
    let (c, h, w) = shape.chw().unwrap_or((n, 1, 1));
    let mut group_of = vec![u32::MAX; n];
    let mut next = 0u32;
    // Numbers groups channel by channel, window by window; `local` gives an
    // activation's group within its window (of `per_rect`).
    let mut assign = |rects: &[Rect], per_rect: usize, local: &dyn Fn(usize, usize, usize) -> usize, group_of: &mut Vec<u32>| {
        for ch in 0..c {
            for &((y0, y1), (x0, x1)) in rects {
                for (i, (y, x)) in (y0..y1).flat_map(|y| (x0..x1).map(move |x| (y, x))).enumerate() {
                    let idx = (ch * h + y) * w + x;
                    group_of[idx] = next + local(i, (y1 - y0) * (x1 - x0), idx) as u32;
                }
                next += per_rect as u32;
            }
        }
    };
    let whole = |_: usize, _: usize, _: usize| 0;
    match &relu.grouping {
        Grouping::None => group_of.iter_mut().enumerate().for_each(|(i, g)| *g = i as u32),
        Grouping::Identity => {}
        Grouping::Channel => assign(&window_rects(h, w, Window::Full, crate::spec::Edge::Partial), 1, &whole, &mut group_of),
        Grouping::Patch { size, edge } => assign(&window_rects(h, w, Window::Size(size.0, size.1), *edge), 1, &whole, &mut group_of),
        Grouping::Clusters { window, clusters, edge, assignment } => {
            let rects = window_rects(h, w, *window, *edge);
            match assignment {
                Some(a) => assign(&rects, *clusters, &|_, _, idx| a.ids[idx] as usize, &mut group_of),
                // The stand-in: the window's positions in `clusters` runs of near-equal length.
                None => assign(&rects, *clusters, &|i, area, _| i * clusters / area, &mut group_of),
            }
        }
        Grouping::PerChannel { sides, edge } => {
            for (ch, &side) in sides.iter().enumerate() {
                let rects = window_rects(h, w, Window::Size(side.min(h), side.min(w)), *edge);
                for ((y0, y1), (x0, x1)) in rects {
                    for y in y0..y1 {
                        group_of[(ch * h + y) * w + x0..(ch * h + y) * w + x1].iter_mut().for_each(|g| *g = next);
                    }
                    next += 1;
                }
            }
        }
        &Grouping::Partial { fraction } => {
            let kept = (fraction * c as f64).round() as usize * h * w;
            group_of[..kept].iter_mut().enumerate().for_each(|(i, g)| *g = i as u32);
        }
    }
    let groups = group_of.iter().filter(|&&g| g != u32::MAX).map(|&g| g as usize + 1).max().unwrap_or(0);
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); groups];
    for (i, &g) in group_of.iter().enumerate() {
        if g != u32::MAX {
            members[g as usize].push(i as u32);
        }
    }
    // The middle member in row-major order: the centre of a rectangle.
    let center = members.iter().map(|m| m[(m.len() - 1) / 2]).collect();
    let size = members.iter().map(|m| m.len() as u32).collect();
    GroupMap { groups, group_of, center, size }
}

#[cfg(test)]
mod group_tests {
    use super::*;
    use crate::spec::plan::{Assignment, Decision, Edge, Noise};

    fn map(grouping: Grouping, shape: &[usize]) -> GroupMap {
        group_map(&ReluPlan { grouping, decision: Decision::Center, noise: Noise::NONE }, &Shape(shape.to_vec()))
    }

    fn clusters(ids: Vec<u32>, shape: Vec<usize>, k: usize) -> Grouping {
        let assignment = Assignment { file: "a.safetensors".into(), shape, ids: std::sync::Arc::new(ids), digest: String::new() };
        Grouping::Clusters { window: Window::Size(2, 2), clusters: k, edge: Edge::Partial, assignment: Some(assignment) }
    }

    #[test]
    fn an_assignment_sets_the_groups_and_must_fit_the_windows() {
        // One channel, 2x4 map, two 2x2 windows, 2 clusters each.
        let ids = vec![0, 1, 0, 0, 1, 1, 0, 1];
        let shape = Shape(vec![1, 2, 4]);
        let g = clusters(ids.clone(), vec![1, 2, 4], 2);
        let plan = ReluPlan { grouping: g.clone(), decision: Decision::Center, noise: Noise::NONE };
        assert_eq!(decisions(&plan, &shape).unwrap().groups, 4);
        // Window 0 holds (0,0) (0,1) (1,0) (1,1): groups 0 + id; window 1: groups 2 + id.
        assert_eq!(map(g, &shape.0).group_of, [0, 1, 2, 2, 1, 1, 2, 3]);
        let why = |ids: Vec<u32>, dims: Vec<usize>| {
            let plan = ReluPlan { grouping: clusters(ids, dims, 2), decision: Decision::Center, noise: Noise::NONE };
            decisions(&plan, &shape).unwrap_err()
        };
        assert!(why(vec![0; 8], vec![1, 2, 4]).contains("has no activation in cluster 1 of 2"));
        assert!(why(vec![0, 1, 0, 0, 1, 2, 0, 1], vec![1, 2, 4]).contains("is in cluster 2, but there are 2 per window"));
        assert!(why(ids, vec![2, 2, 2]).contains("is [2, 2, 2], the layer's input is [1, 2, 4]"));
    }

    #[test]
    fn explicit_groups_agree_with_the_counts() {
        let cases = [
            Grouping::None,
            Grouping::Channel,
            Grouping::Identity,
            Grouping::Patch { size: (3, 3), edge: Edge::Partial },
            Grouping::Patch { size: (3, 2), edge: Edge::Merge },
            Grouping::Clusters { window: Window::Size(4, 4), clusters: 3, edge: Edge::Partial, assignment: None },
            Grouping::Clusters { window: Window::Full, clusters: 7, edge: Edge::Partial, assignment: None },
            Grouping::Partial { fraction: 0.5 },
            Grouping::PerChannel { sides: std::sync::Arc::new(vec![1, 3, 11, 4]), edge: Edge::Partial },
            Grouping::PerChannel { sides: std::sync::Arc::new(vec![2, 10, 3, 1]), edge: Edge::Merge },
        ];
        for g in cases {
            let shape = Shape(vec![4, 10, 11]);
            let m = map(g.clone(), &shape.0);
            let relu = ReluPlan { grouping: g.clone(), decision: Decision::Center, noise: Noise::NONE };
            let d = decisions(&relu, &shape).unwrap();
            assert_eq!(m.groups, d.groups, "{g:?}");
            assert_eq!(m.group_of.iter().filter(|&&x| x != u32::MAX).count(), d.gated, "{g:?}");
            assert!(m.size.iter().all(|&s| s > 0), "{g:?}: empty group");
        }
    }

    #[test]
    fn tiles_follow_the_edge_rule_and_centres_sit_in_the_middle() {
        let m = map(Grouping::Patch { size: (3, 3), edge: Edge::Merge }, &[1, 4, 4]);
        // floor: one tile per side, the remainder merged: all 16 in one group.
        assert_eq!(m.groups, 1);
        let m = map(Grouping::Patch { size: (3, 3), edge: Edge::Partial }, &[1, 4, 4]);
        assert_eq!(m.size, vec![9, 3, 3, 1]);
        assert_eq!(m.center[0], 5); // (1, 1) of the first 3x3 tile
        let m = map(Grouping::Channel, &[2, 3, 3]);
        assert_eq!(m.center, vec![4, 13]);
    }

    #[test]
    fn per_channel_sides_tile_each_channel_alone() {
        // Channel 0 regular (9 groups), channel 1 2x2 with partial edge (4), channel 2 whole (1).
        let g = Grouping::PerChannel { sides: std::sync::Arc::new(vec![1, 2, 3]), edge: Edge::Partial };
        let m = map(g.clone(), &[3, 3, 3]);
        assert_eq!(m.groups, 14);
        assert_eq!(&m.group_of[9..18], &[9, 9, 10, 9, 9, 10, 11, 11, 12]);
        assert!(m.group_of[18..].iter().all(|&x| x == 13));
        let plan = |sides: Vec<usize>| ReluPlan {
            grouping: Grouping::PerChannel { sides: std::sync::Arc::new(sides), edge: Edge::Partial },
            decision: Decision::Center,
            noise: Noise::NONE,
        };
        let e = decisions(&plan(vec![1, 2]), &Shape(vec![3, 3, 3])).unwrap_err();
        assert!(e.contains("lists 2 sides, the layer's input has 3 channels"), "{e}");
        let e = decisions(&plan(vec![1, 2, 4]), &Shape(vec![3, 3, 3])).unwrap_err();
        assert!(e.contains("channel 2 has side 4; on the 3x3 map sides are 1 to 3"), "{e}");
    }
}
