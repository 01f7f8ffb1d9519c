//! Plan search under budgets: the most accurate per-channel plan whose price fits
//! limits in any unit the cost model prices (decisions, megabytes, rounds, seconds
//! under a profile). The paper picks plans by hand; Block-ReLU solves a
//! multiple-choice knapsack over per-channel patch sizes from a measured
//! distortion. Here:
//!
//! 1. `options`: every searched channel's tile sides, each priced exactly (checked
//!    to add up over channels; rounds checked not to move);
//! 2. `distortion`: each option's measured effect on the network's output, from a
//!    trained checkpoint on training images, cached;
//! 3. `knapsack`: one option per channel, least summed distortion under the budgets;
//! 4. the plan it makes, priced again by the cost model as a whole.

pub mod distortion;
pub mod knapsack;
pub mod options;

use crate::error::{Error, Result};
use crate::graph::Network;
use crate::graph::sharing::Planned;
use crate::infer::model::Params;
use crate::spec::PlanSpec;
use crate::spec::plan::{Decision, Edge};
use crate::spec::protocol::ProtocolTable;
use distortion::Score;
use options::{Budget, LayerOptions, Unit};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The most DP states the exact knapsack may use before budgets are discretised
/// more coarsely (memory: a f64 and a u32 per state and channel's pick).
const STATES: u64 = 1 << 20;

/// What to search.
pub struct Request<'a> {
    pub network: &'a Network,
    /// Trained weights (for the distortion) and their digest (for the cache).
    pub params: &'a Params,
    pub weights_digest: String,
    /// Training images (normalised as the checkpoint was trained), `samples` of them.
    pub images: &'a [f32],
    pub samples: usize,
    /// Where the images came from, for the cache key.
    pub data_key: String,
    /// ReLU layers to search (empty: all on [C, H, W] maps).
    pub layers: &'a [String],
    pub sides: &'a [usize],
    pub edge: Edge,
    pub decision: Decision,
    pub table: &'a ProtocolTable,
    pub budgets: &'a [Budget],
    /// Folder of cached distortions.
    pub cache: &'a Path,
    /// Name of the plan to write.
    pub name: String,
}

/// One searched layer in the outcome.
#[derive(Debug, Clone, Serialize)]
pub struct LayerChoice {
    pub layer: String,
    /// Channels per tile side, ascending by side.
    pub channels_by_side: Vec<(usize, usize)>,
    pub decisions: u64,
    pub distortion: f64,
}

/// A budget and what the searched plan costs in its unit.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetUse {
    pub budget: String,
    pub limit: f64,
    /// The cost model's price of the written plan.
    pub cost: f64,
    /// The knapsack's own sum (fixed part plus the chosen options' lines).
    pub predicted: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    #[serde(skip)]
    pub plan: PlanSpec,
    pub plan_name: String,
    pub budgets: Vec<BudgetUse>,
    /// Summed distortion of the chosen options (mean KL divergence per image).
    pub distortion: f64,
    /// Optimal up to this much (`None`: solved exactly on the discretised budgets).
    pub duality_gap: Option<f64>,
    /// Budget units discretised more coarsely than their exact quantum (costs rounded
    /// up there, so the plan still fits).
    pub coarsened: Vec<String>,
    pub layers: Vec<LayerChoice>,
    pub relus: u64,
    pub megabytes: f64,
    pub rounds: u64,
    pub distortion_images: usize,
    pub distortion_seconds: f64,
    pub distortion_cached: bool,
    pub distortion_cache: String,
    pub knapsack_seconds: f64,
}

/// A cached distortion pass.
#[derive(Serialize, Deserialize)]
struct Cached {
    key: String,
    images: usize,
    seconds: f64,
    layers: Vec<CachedLayer>,
}

#[derive(Serialize, Deserialize)]
struct CachedLayer {
    layer: String,
    sides: Vec<usize>,
    /// [channel][option]
    distortion: Vec<Vec<f64>>,
}

fn over(b: &Budget, message: String) -> Error {
    Error::Budget { budget: b.text.clone(), message }
}

/// Runs the search: options priced, distortion measured (or read from the cache),
/// the knapsack solved, the plan built and priced as a whole.
pub fn run(req: &Request, bar: &indicatif::ProgressBar) -> Result<Outcome> {
    let net = req.network;
    let units: Vec<Unit> = req.budgets.iter().map(|b| b.unit.clone()).collect();
    let base = PlanSpec::original();
    let original = crate::cost::price(&Planned::new(net, &base)?, req.table, None, &[])?;
    if let Some(b) = req.budgets.iter().find(|b| b.unit == Unit::OfflineMegabytes)
        && original.total.offline_bits == 0
    {
        let message = format!("protocol table \"{}\" prices no offline phase, so there is nothing to budget", req.table.name);
        return Err(over(b, message));
    }
    let priced = options::price_options(net, &base, req.layers, req.sides, req.decision, req.edge, req.table, &units)
        .map_err(|m| Error::invalid(&net.path, None, m))?;

    // Each budget alone must be reachable: the fixed part plus every channel's cheapest.
    let cheapest: Vec<f64> = (0..units.len())
        .map(|u| {
            priced.fixed[u]
                + priced
                    .layers
                    .iter()
                    .map(|l| l.channels as f64 * (0..l.sides.len()).map(|k| l.cost(u, k)).fold(f64::INFINITY, f64::min))
                    .sum::<f64>()
        })
        .collect();
    for (b, &least) in req.budgets.iter().zip(&cheapest) {
        if b.limit < least * (1.0 - 1e-12) {
            return Err(over(b, format!("below the cheapest reachable plan, {} {}", show(least), b.unit.name())));
        }
    }

    let (distortion, cached, seconds, cache_file) = distortion_for(req, &priced.layers, bar)?;

    // Discretise: each unit in its exact quantum (the cost of one decision) when the
    // layers share it and the budget has few enough of them, else in 2^20 steps with
    // costs rounded up (4096 steps each when several such budgets go to the
    // Lagrangian). Units whose cost no option moves (rounds) are only checked.
    let started = std::time::Instant::now();
    let mut kept = Vec::new(); // (unit index, quantum, budget in quanta, exact)
    for (u, b) in req.budgets.iter().enumerate() {
        let slopes: Vec<f64> = priced.layers.iter().map(|l| l.per_decision[u]).collect();
        if slopes.iter().all(|&s| s == 0.0) {
            continue;
        }
        if slopes.iter().any(|&s| s < 0.0) {
            return Err(over(b, "a decision lowers this cost; the search needs costs that grow with decisions".into()));
        }
        let room = (b.limit - priced.fixed[u]).max(0.0);
        let common = slopes.iter().all(|&s| (s - slopes[0]).abs() <= 1e-12 * slopes[0]);
        let exact_states = room / slopes[0];
        let (quantum, exact) =
            if common && exact_states < STATES as f64 { (slopes[0], true) } else { (room.max(f64::MIN_POSITIVE) / STATES as f64, false) };
        // Tiny slack so that a budget equal to a plan's price admits that plan.
        kept.push((u, quantum, ((room / quantum) * (1.0 + 1e-12)).floor() as u64, exact));
    }
    if kept.len() > 1 {
        if kept.iter().all(|k| k.3) {
            // Every unit is a multiple of the decisions with one price per unit: each
            // budget is a limit on decisions, and the tightest is the only one that binds.
            let tightest = *kept.iter().min_by_key(|k| k.2).expect("more than one");
            kept = vec![tightest];
        } else {
            // Budgets priced differently per layer: the Lagrangian keeps the first in a
            // dynamic programme run many times, so all are cut into fewer, coarser steps.
            const STEPS: f64 = 4096.0;
            for k in kept.iter_mut() {
                let room = (req.budgets[k.0].limit - priced.fixed[k.0]).max(0.0);
                *k = (k.0, room.max(f64::MIN_POSITIVE) / STEPS, STEPS as u64, false);
            }
        }
    }
    let mut groups = Vec::new();
    for (l, layer) in priced.layers.iter().enumerate() {
        for per_option in &distortion[l] {
            groups.push(
                (0..layer.sides.len())
                    .map(|k| knapsack::Choice {
                        distortion: per_option[k],
                        costs: kept
                            .iter()
                            .map(|&(u, q, _, exact)| {
                                let units = layer.cost(u, k) / q;
                                if exact { units.round() as u64 } else { units.ceil() as u64 }
                            })
                            .collect(),
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    let limits: Vec<u64> = kept.iter().map(|k| k.2).collect();
    let solution = if limits.is_empty() {
        // No budget depends on the choice: the least distortion everywhere.
        let picks = groups
            .iter()
            .map(|g| (0..g.len()).min_by(|&a, &b| g[a].distortion.total_cmp(&g[b].distortion)).expect("options"))
            .collect::<Vec<_>>();
        let distortion = groups.iter().zip(&picks).map(|(g, &k)| g[k].distortion).sum();
        knapsack::Solution { picks, distortion, costs: vec![], gap: None }
    } else {
        knapsack::solve(&groups, &limits, STATES as usize * 4).ok_or_else(|| {
            let all: Vec<&str> = req.budgets.iter().map(|b| b.text.as_str()).collect();
            Error::Budget { budget: all.join(", "), message: "no plan meets these budgets together (each alone is reachable)".into() }
        })?
    };
    let knapsack_seconds = started.elapsed().as_secs_f64();

    // The plan: per-channel sides for each layer that shares anything.
    let mut plan = base.clone();
    plan.name = req.name.clone();
    plan.architecture = Some(net.name.clone());
    let mut at = 0;
    let mut layers = Vec::new();
    let mut predicted = priced.fixed.clone();
    for (l, layer) in priced.layers.iter().enumerate() {
        let picks = &solution.picks[at..at + layer.channels];
        at += layer.channels;
        for (u, p) in predicted.iter_mut().enumerate() {
            *p += picks.iter().map(|&k| layer.cost(u, k)).sum::<f64>();
        }
        let sides: Vec<usize> = picks.iter().map(|&k| layer.sides[k]).collect();
        let mut by_side: Vec<(usize, usize)> = layer.sides.iter().map(|&s| (s, sides.iter().filter(|&&x| x == s).count())).collect();
        by_side.retain(|&(_, n)| n > 0);
        layers.push(LayerChoice {
            layer: layer.name.clone(),
            channels_by_side: by_side,
            decisions: picks.iter().map(|&k| layer.tiles[k] as u64).sum(),
            distortion: picks.iter().enumerate().map(|(c, &k)| distortion[l][c][k]).sum(),
        });
        if sides.iter().any(|&s| s > 1) {
            plan = options::with_sides(&plan, &layer.name, sides, req.decision, req.edge);
        }
    }
    let planned = Planned::new(net, &plan)?;
    let report = crate::cost::price(&planned, req.table, None, &[])?;
    let mut budgets = Vec::new();
    for (u, b) in req.budgets.iter().enumerate() {
        let cost: f64 = report.layers.iter().map(|l| b.unit.of(l)).sum();
        if cost > b.limit * (1.0 + 1e-9) {
            return Err(over(b, format!("the searched plan costs {} (a cost that does not add up over channels)", show(cost))));
        }
        budgets.push(BudgetUse { budget: b.text.clone(), limit: b.limit, cost, predicted: predicted[u] });
    }
    plan.description = Some(format!(
        "searched by explore search under {} ({} protocol), per-channel tile sides from measured distortion",
        req.budgets.iter().map(|b| b.text.as_str()).collect::<Vec<_>>().join(", "),
        req.table.name
    ));
    let mut record = toml::Table::new();
    record.insert("budgets".into(), toml::Value::Array(req.budgets.iter().map(|b| b.text.clone().into()).collect()));
    record.insert("protocol".into(), req.table.name.clone().into());
    record.insert("distortion".into(), solution.distortion.into());
    record.insert("relus".into(), (report.total.relus as i64).into());
    record.insert("megabytes".into(), (report.total.bits as f64 / 8e6).into());
    record.insert("rounds".into(), (report.total.rounds as i64).into());
    record.insert("distortion_images".into(), (req.samples as i64).into());
    plan.search = Some(record);
    Ok(Outcome {
        plan_name: plan.name.clone(),
        plan,
        budgets,
        distortion: solution.distortion,
        duality_gap: solution.gap,
        coarsened: kept.iter().filter(|k| !k.3).map(|k| req.budgets[k.0].text.clone()).collect(),
        layers,
        relus: report.total.relus,
        megabytes: report.total.bits as f64 / 8e6,
        rounds: report.total.rounds,
        distortion_images: req.samples,
        distortion_seconds: seconds,
        distortion_cached: cached,
        distortion_cache: cache_file.display().to_string(),
        knapsack_seconds,
    })
}

/// A figure as a message shows it: integers whole, others to 6 significant digits.
fn show(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.6}") }
}

/// `[layer][channel][option]` distortion, whether it came from the cache, the seconds
/// its measurement took, and the cache file.
type Distortions = (Vec<Vec<Vec<f64>>>, bool, f64, PathBuf);

/// The distortion of every option, from the cache when this checkpoint, sample and
/// set of options were measured before.
fn distortion_for(req: &Request, layers: &[LayerOptions], bar: &indicatif::ProgressBar) -> Result<Distortions> {
    use sha2::Digest;
    let score = match req.decision {
        Decision::Center => Score::Center,
        Decision::Mean | Decision::Learned { .. } => Score::Mean,
    };
    let mut h = sha2::Sha256::new();
    let described: Vec<(String, &[usize])> = layers.iter().map(|l| (l.name.clone(), l.sides.as_slice())).collect();
    h.update(format!("v1|{}|{}|{}|{:?}|{:?}|{:?}|", req.weights_digest, net_digest(req.network), req.data_key, described, req.edge, score));
    h.update(req.samples.to_le_bytes());
    let key: String = h.finalize()[..10].iter().map(|b| format!("{b:02x}")).collect();
    let file = req.cache.join(format!("distortion-{key}.json"));
    if let Ok(text) = std::fs::read_to_string(&file) {
        let c: Cached =
            serde_json::from_str(&text).map_err(|e| Error::invalid(&file, None, format!("damaged distortion cache: {e}; remove it")))?;
        if c.key == key && c.layers.len() == layers.len() {
            return Ok((c.layers.into_iter().map(|l| l.distortion).collect(), true, c.seconds, file));
        }
    }
    let started = std::time::Instant::now();
    let plan = PlanSpec::original();
    let planned = Planned::new(req.network, &plan)?;
    let d = distortion::measure(&planned, req.params, req.images, req.samples, layers, req.edge, score, bar);
    let seconds = started.elapsed().as_secs_f64();
    let cached = Cached {
        key,
        images: req.samples,
        seconds,
        layers: layers
            .iter()
            .zip(&d)
            .map(|(l, d)| CachedLayer { layer: l.name.clone(), sides: l.sides.clone(), distortion: d.clone() })
            .collect(),
    };
    std::fs::create_dir_all(req.cache).map_err(|source| Error::Write { path: req.cache.to_path_buf(), source })?;
    let json = serde_json::to_vec(&cached).map_err(|e| Error::invalid(&file, None, e.to_string()))?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, json).and_then(|_| std::fs::rename(&tmp, &file)).map_err(|source| Error::Write { path: file.clone(), source })?;
    Ok((d, false, seconds, file))
}

/// The network's layers and shapes, for the cache key (not its path).
fn net_digest(net: &Network) -> String {
    net.layers().map(|(_, l)| format!("{}:{:?}:{}", l.name, l.op, l.output)).collect::<Vec<_>>().join(";")
}
