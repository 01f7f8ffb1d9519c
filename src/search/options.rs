//! What the search chooses from and what each choice costs: budgets in any unit the
//! cost model prices, the sharing options of every searched channel, and each
//! option's exact cost per channel.
//!
//! A layer's cost under a plan is a sum of action prices, each linear in its
//! count; with the layer's map fixed, the only count a per-channel plan changes is
//! the number of decisions (DReLUs, truncations of public scores). So the layer's
//! cost in any unit is `A + b x decisions`, and a channel's option costs
//! `b x its tiles`. This is checked, not assumed: every option of every layer is
//! priced by the cost model as a uniform plan and must lie on that line.
//! Rounds are the exception the issue warns of: they are not a sum over channels.
//! Here they do not move at all (every option still runs one DReLU and one gating
//! product per layer), which is also checked; a rounds budget is met by every plan
//! or by none. Options that remove a layer's rounds (identity) are not offered.

use crate::cost::{LayerCost, price};
use crate::graph::Network;
use crate::graph::sharing::{Planned, relu_layers};
use crate::spec::PlanSpec;
use crate::spec::plan::{Decision, Edge, Grouping, Noise, ReluPlan};
use crate::spec::profile::Profile;
use crate::spec::protocol::ProtocolTable;
use petgraph::graph::NodeIndex;
use std::sync::Arc;

/// A cost unit a budget may limit.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    /// ReLU decisions (DReLU evaluations).
    Relus,
    /// Online megabytes (10^6 bytes), all parties.
    Megabytes,
    /// Preprocessing megabytes, for tables that price an offline phase.
    OfflineMegabytes,
    Rounds,
    /// Estimated online seconds per image under a named network profile.
    Seconds {
        profile: Profile,
    },
}

impl Unit {
    pub fn name(&self) -> String {
        match self {
            Unit::Relus => "relus".into(),
            Unit::Megabytes => "mb".into(),
            Unit::OfflineMegabytes => "offline-mb".into(),
            Unit::Rounds => "rounds".into(),
            Unit::Seconds { profile } => format!("{}-s", profile.name),
        }
    }

    /// This unit's share of one layer's price. Summed over layers it gives the
    /// network's total (seconds: rounds x rtt + bits / bandwidth + compute, the time
    /// model's estimate term by term).
    pub fn of(&self, l: &LayerCost) -> f64 {
        match self {
            Unit::Relus => l.relus as f64,
            Unit::Megabytes => l.bits as f64 / 8e6,
            Unit::OfflineMegabytes => l.offline_bits as f64 / 8e6,
            Unit::Rounds => l.rounds as f64,
            Unit::Seconds { profile } => profile.seconds(l.rounds, l.bits) + l.compute_seconds,
        }
    }
}

/// One limit: `mb<=20`, `rounds<=60`, `wan-s<=2`, `relus<=50000`.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub unit: Unit,
    pub limit: f64,
    /// As the user wrote it, for messages.
    pub text: String,
}

impl Budget {
    /// Parses `UNIT<=LIMIT`; seconds units are `PROFILE-s` for the given profiles.
    pub fn parse(text: &str, profiles: &[Profile]) -> crate::error::Result<Budget> {
        Self::parse_unit(text, profiles).map_err(|message| crate::error::Error::Budget { budget: text.trim().to_string(), message })
    }

    fn parse_unit(text: &str, profiles: &[Profile]) -> std::result::Result<Budget, String> {
        let units = || {
            let mut u = vec!["relus".to_string(), "mb".into(), "offline-mb".into(), "rounds".into()];
            u.extend(profiles.iter().map(|p| format!("{}-s", p.name)));
            u.join(", ")
        };
        let Some((unit, limit)) = text.split_once("<=") else {
            return Err(format!("write UNIT<=LIMIT, e.g. mb<=20 (units: {})", units()));
        };
        let unit = unit.trim().to_ascii_lowercase();
        let unit = match unit.as_str() {
            "relus" => Unit::Relus,
            "mb" => Unit::Megabytes,
            "offline-mb" => Unit::OfflineMegabytes,
            "rounds" => Unit::Rounds,
            other => match other.strip_suffix("-s").and_then(|p| profiles.iter().find(|q| q.name == p)) {
                Some(p) => Unit::Seconds { profile: p.clone() },
                None => return Err(format!("unknown unit \"{other}\" (units: {})", units())),
            },
        };
        let limit: f64 = limit.trim().parse().map_err(|_| format!("\"{}\" is not a number", limit.trim()))?;
        if !limit.is_finite() || limit < 0.0 {
            return Err("the limit must be a number >= 0".into());
        }
        Ok(Budget { unit, limit, text: text.trim().to_string() })
    }
}

/// The options of one searched layer and what they cost.
#[derive(Debug, Clone)]
pub struct LayerOptions {
    pub node: NodeIndex,
    pub name: String,
    pub channels: usize,
    /// The layer's map (h, w).
    pub map: (usize, usize),
    /// Tile sides offered to every channel, ascending; 1 is regular ReLU, the
    /// largest may span the whole map. Sides with equal tile counts on this map
    /// are offered once, by the smallest.
    pub sides: Vec<usize>,
    /// Decisions of one channel under each side.
    pub tiles: Vec<usize>,
    /// Per unit (in the order of the budgets): the layer's fixed cost `A`.
    pub fixed: Vec<f64>,
    /// Per unit: the cost of one decision `b`.
    pub per_decision: Vec<f64>,
}

impl LayerOptions {
    /// One channel's cost in unit `u` under side index `k`.
    pub fn cost(&self, u: usize, k: usize) -> f64 {
        self.per_decision[u] * self.tiles[k] as f64
    }
}

/// The plan that gives layer `node` per-channel `sides` (under `decision`) on top of
/// `base`.
pub fn with_sides(base: &PlanSpec, layer: &str, sides: Vec<usize>, decision: Decision, edge: Edge) -> PlanSpec {
    let mut plan = base.clone();
    plan.relu.insert(
        layer.to_string(),
        ReluPlan { grouping: Grouping::PerChannel { sides: Arc::new(sides), edge }, decision, noise: Noise::NONE },
    );
    plan
}

/// What searching a network costs to set up: every searched layer's options, priced.
pub struct Priced {
    pub layers: Vec<LayerOptions>,
    /// Per unit: what the layers not searched cost, plus every searched layer's `A`.
    pub fixed: Vec<f64>,
}

/// Prices the options of each ReLU layer in `layers` (names; empty: every ReLU layer
/// on a [C, H, W] map) in every budget's unit. `base` is the plan of the layers not
/// searched (usually the original). Errors name the layer and say why.
#[allow(clippy::too_many_arguments)]
pub fn price_options(
    network: &Network,
    base: &PlanSpec,
    layers: &[String],
    sides: &[usize],
    decision: Decision,
    edge: Edge,
    table: &ProtocolTable,
    units: &[Unit],
) -> std::result::Result<Priced, String> {
    let nodes: Vec<NodeIndex> = if layers.is_empty() {
        relu_layers(network).filter(|&n| network.input_shape(n).chw().is_some()).collect()
    } else {
        layers
            .iter()
            .map(|l| match network.find(l) {
                Some(n) if network.node(n).op == Some(crate::spec::Op::Relu) => Ok(n),
                _ => {
                    let relus: Vec<&str> = relu_layers(network).map(|n| network.node(n).name.as_str()).collect();
                    Err(format!("--layers {l}: no ReLU layer of that name (ReLU layers: {})", relus.join(", ")))
                }
            })
            .collect::<std::result::Result<_, _>>()?
    };
    let price_of = |plan: &PlanSpec| -> std::result::Result<Vec<LayerCost>, String> {
        let planned = Planned::new(network, plan).map_err(|e| e.to_string())?;
        Ok(price(&planned, table, None, &[]).map_err(|e| e.to_string())?.layers)
    };
    let base_cost = price_of(base)?;
    let mut fixed: Vec<f64> = units.iter().map(|u| base_cost.iter().map(|l| u.of(l)).sum()).collect();
    let mut out = Vec::new();
    for node in nodes {
        let name = network.node(node).name.clone();
        let Some((c, h, w)) = network.input_shape(node).chw() else {
            return Err(format!("layer \"{name}\": per-channel sharing needs a [C, H, W] map; its input is flat"));
        };
        // Offered sides: those that fit, each tile count once (by its smallest side).
        let mut offered: Vec<(usize, usize)> = Vec::new();
        let mut wanted: Vec<usize> = sides.iter().map(|&s| s.min(h.max(w))).collect();
        wanted.sort_unstable();
        wanted.dedup();
        for s in wanted {
            let t = edge.tiles(h, s.min(h)) * edge.tiles(w, s.min(w));
            if !offered.iter().any(|&(_, t2)| t2 == t) {
                offered.push((s, t));
            }
        }
        if offered.len() < 2 {
            continue; // nothing to choose on this map
        }
        let layer_cost = |s: usize| -> std::result::Result<LayerCost, String> {
            let plan = with_sides(base, &name, vec![s; c], decision, edge);
            Ok(price_of(&plan)?.into_iter().find(|l| l.name == name).expect("the priced network has the layer"))
        };
        let costs: Vec<LayerCost> = offered.iter().map(|&(s, _)| layer_cost(s)).collect::<std::result::Result<_, _>>()?;
        let decisions: Vec<f64> = offered.iter().map(|&(_, t)| (t * c) as f64).collect();
        // The shared options (fewer decisions than activations) fix the line; a layer of
        // regular ReLU (side 1) may only be cheaper than the line (no score to truncate).
        let shared: Vec<usize> = (0..offered.len()).filter(|&k| offered[k].1 < h * w).collect();
        let (a, b) = match shared[..] {
            [] => unreachable!("two options with different tile counts: at most one has h x w tiles"),
            [k] => (0, k),
            _ => (shared[0], shared[shared.len() - 1]),
        };
        let (mut layer_fixed, mut per_decision) = (Vec::new(), Vec::new());
        for (u, unit) in units.iter().enumerate() {
            let v: Vec<f64> = costs.iter().map(|l| unit.of(l)).collect();
            let slope = (v[a] - v[b]) / (decisions[a] - decisions[b]);
            let intercept = v[a] - slope * decisions[a];
            let tolerance = 1e-9 * v.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            for k in 0..offered.len() {
                let line = intercept + slope * decisions[k];
                let on_line = (line - v[k]).abs() <= tolerance;
                let below = offered[k].1 == h * w && v[k] <= line + tolerance;
                if !(on_line || below) {
                    return Err(format!(
                        "layer \"{name}\": under protocol table \"{}\" its {} is not a sum over channels ({} with {}x{} tiles, {} expected from the others); the search needs costs that add up",
                        table.name,
                        unit.name(),
                        v[k],
                        offered[k].0,
                        offered[k].0,
                        line
                    ));
                }
            }
            if *unit == Unit::Rounds && slope != 0.0 {
                return Err(format!(
                    "layer \"{name}\": its rounds change with the tile side under \"{}\"; the search assumes they do not",
                    table.name
                ));
            }
            // The base plan's price of this layer is replaced by the searched one's.
            let base_layer = base_cost.iter().find(|l| l.name == name).expect("the base network has the layer");
            fixed[u] += intercept - unit.of(base_layer);
            layer_fixed.push(intercept);
            per_decision.push(slope);
        }
        out.push(LayerOptions {
            node,
            name,
            channels: c,
            map: (h, w),
            sides: offered.iter().map(|&(s, _)| s).collect(),
            tiles: offered.iter().map(|&(_, t)| t).collect(),
            fixed: layer_fixed,
            per_decision,
        });
    }
    if out.is_empty() {
        return Err("no layer to search: every chosen layer offers at most one tile count".into());
    }
    Ok(Priced { layers: out, fixed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ArchSpec;
    use crate::spec::plan::WeightVisibility;

    fn cifar() -> Network {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("architectures/cifar10.toml");
        Network::build(&ArchSpec::load(&path).unwrap()).unwrap()
    }

    #[test]
    fn budgets_read_units_and_limits_and_say_what_is_wrong() {
        let profiles = crate::spec::profile::builtin();
        let b = Budget::parse("mb <= 20", &profiles).unwrap();
        assert_eq!((b.unit.clone(), b.limit), (Unit::Megabytes, 20.0));
        assert_eq!(Budget::parse("wan-s<=2.5", &profiles).unwrap().unit.name(), "wan-s");
        let e = Budget::parse("gb<=1", &profiles).unwrap_err().to_string();
        assert_eq!(e, "budget \"gb<=1\": unknown unit \"gb\" (units: relus, mb, offline-mb, rounds, lan-s, wan-s)");
        assert!(Budget::parse("mb=20", &profiles).unwrap_err().to_string().contains("write UNIT<=LIMIT"));
        assert!(Budget::parse("mb<=x", &profiles).unwrap_err().to_string().contains("\"x\" is not a number"));
    }

    /// The line of every layer, summed with the fixed part, gives the cost model's
    /// total for a mixed per-channel plan, in every unit.
    #[test]
    fn option_costs_add_up_to_the_cost_models_total() {
        let net = cifar();
        let units = vec![Unit::Relus, Unit::Megabytes, Unit::Rounds, Unit::Seconds { profile: crate::spec::profile::builtin()[1].clone() }];
        let decision = Decision::Learned { weights: WeightVisibility::Public, shared_across_channels: false };
        let base = PlanSpec::original();
        let table = ProtocolTable::securenn();
        let p =
            price_options(&net, &base, &["relu1".into(), "relu5".into()], &[1, 2, 3, 4, 8, 32], decision, Edge::Partial, &table, &units)
                .unwrap();
        assert_eq!(p.layers[0].sides, [1, 2, 3, 4, 8, 32]);
        assert_eq!(p.layers[1].sides, [1, 2, 3, 4, 8]); // 8x8 map: 32 spans it as 8 does
        let mut plan = base.clone();
        let mut predicted = p.fixed.clone();
        for l in &p.layers {
            let picks: Vec<usize> = (0..l.channels).map(|c| (c * 7 + 3) % l.sides.len()).collect();
            for (u, total) in predicted.iter_mut().enumerate() {
                *total += picks.iter().map(|&k| l.cost(u, k)).sum::<f64>();
            }
            plan = with_sides(&plan, &l.name, picks.iter().map(|&k| l.sides[k]).collect(), decision, Edge::Partial);
        }
        let priced = price(&Planned::new(&net, &plan).unwrap(), &table, None, &[]).unwrap();
        for (u, unit) in units.iter().enumerate() {
            let exact: f64 = priced.layers.iter().map(|l| unit.of(l)).sum();
            assert!((exact - predicted[u]).abs() <= 1e-9 * exact.abs(), "{}: {exact} vs {}", unit.name(), predicted[u]);
        }
        assert_eq!(predicted[0] as u64, priced.total.relus);
        assert_eq!(predicted[2] as u64, priced.total.rounds);
    }
}
