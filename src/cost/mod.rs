//! The analytic cost model: `actions` counts what each layer must do, a
//! `protocol::ProtocolTable` prices each action in rounds and bits per party, and
//! `profile` turns totals into estimated seconds.
//!
//! Rounds follow the paper's convention within a layer (its actions run one after
//! another) and add up along the network's critical path: a layer starts when its
//! inputs are done, so the shortcut of a residual block runs beside its main branch
//! and only the longer one counts (on a chain of layers, the plain sum).

pub mod actions;
pub mod compare;

use crate::error::{Error, Result};
use crate::graph::sharing::Planned;
use crate::spec::PerParty;
use crate::spec::profile::Profile;
use crate::spec::protocol::{ConvMasking, ProtocolTable};
use actions::{Action, LayerActions, MulPurpose};
use petgraph::graph::NodeIndex;
use serde::Serialize;

/// Bits by the protocol family that sends them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BitsByProtocol {
    pub linear: u64,
    pub drelu: u64,
    pub mul: u64,
}

/// One layer's price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerCost {
    pub name: String,
    pub op: String,
    pub output_shape: Vec<usize>,
    pub relus: u64,
    pub rounds: u64,
    /// Rounds counting only true message dependencies.
    pub rounds_depth: u64,
    pub bits: u64,
    pub bytes: u64,
    pub bits_by_party: PerParty<u64>,
    pub bits_by_protocol: BitsByProtocol,
    /// Input-independent (preprocessing) traffic, for protocols that have it;
    /// `bits` and `bits_by_party` are online.
    pub offline_bits: u64,
    pub offline_bits_by_party: PerParty<u64>,
    /// Local computation, when the table has a `[compute]` section (else 0).
    pub compute_seconds: f64,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Total {
    pub relus: u64,
    pub rounds: u64,
    pub rounds_depth: u64,
    pub bits: u64,
    pub bytes: u64,
    pub bits_by_party: PerParty<u64>,
    pub bits_by_protocol: BitsByProtocol,
    pub offline_bits: u64,
    pub offline_bytes: u64,
    pub offline_bits_by_party: PerParty<u64>,
    pub compute_seconds: f64,
    /// Over the layers, the bits of each layer's busiest sender: what parties on
    /// machines of their own wait for when they send side by side.
    pub bits_busiest_party: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub profile: String,
    pub bandwidth_mbps: f64,
    pub rtt_ms: f64,
    /// Online: rounds x rtt + online bits / bandwidth + local computation.
    pub seconds: f64,
    /// Online plus the offline bits over the same link (offline rounds not modelled).
    pub seconds_total: f64,
    /// Online, the three parties on machines of their own (see `spec::profile`).
    pub seconds_apart: f64,
}

/// A batch's totals per image (`CostReport::per_image`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerImage {
    pub bits: f64,
    pub bytes: f64,
    pub offline_bytes: f64,
    /// Each profile's estimated online seconds for the batch, over the batch size.
    pub seconds: Vec<(String, f64)>,
    /// The same with the parties apart (`Estimate::seconds_apart`).
    pub seconds_apart: Vec<(String, f64)>,
}

/// The price of one network under one plan and one protocol table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    pub architecture: String,
    pub architecture_file: String,
    pub plan: String,
    pub plan_file: Option<String>,
    pub protocol: String,
    pub protocol_source: String,
    pub conv_masking: ConvMasking,
    /// Images per inference: layers, totals and estimates are per batch. Left out
    /// of JSON for one image, so single-image reports (and store keys made from
    /// them) read as before batches existed.
    #[serde(skip_serializing_if = "is_one")]
    pub batch: u64,
    pub layers: Vec<LayerCost>,
    pub total: Total,
    pub estimates: Vec<Estimate>,
    /// The batch's totals divided by its size; only for batches of more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_image: Option<PerImage>,
}

fn is_one(b: &u64) -> bool {
    *b == 1
}

/// Largest `--batch`: far beyond the 128 of the published batched figures, and small
/// enough that a batch's counts stay far from overflowing (each image's bits are
/// below 2^40 elements x 2^13 bits for any network that passes the graph's limits).
pub const MAX_BATCH: u64 = 1 << 10;

/// Prices a planned network. `masking` overrides the table's conv masking. Fails
/// only when a layer needs a price the table does not have (`Error::NotPriced`).
pub fn price(planned: &Planned, table: &ProtocolTable, masking: Option<ConvMasking>, profiles: &[Profile]) -> Result<CostReport> {
    price_batch(planned, table, masking, profiles, 1)
}

/// `price` for a batch of `batch` images (1 to `MAX_BATCH`) in one inference:
/// weights are masked once, everything else is paid per image, rounds once.
pub fn price_batch(
    planned: &Planned,
    table: &ProtocolTable,
    masking: Option<ConvMasking>,
    profiles: &[Profile],
    batch: u64,
) -> Result<CostReport> {
    assert!((1..=MAX_BATCH).contains(&batch), "callers check the batch size");
    let masking = masking.unwrap_or(table.conv_masking);
    let counted = actions::count(planned, masking);
    let nodes: Vec<_> = counted.iter().map(|la| la.node).collect();
    let layers: Vec<LayerCost> = counted
        .into_iter()
        .map(|la| LayerActions { actions: la.actions.into_iter().map(|a| a.batched(batch)).collect(), relus: la.relus * batch, ..la })
        .map(|la| price_layer(planned, table, la))
        .collect::<Result<_>>()?;
    let mut total = Total {
        relus: 0,
        rounds: 0,
        rounds_depth: 0,
        bits: 0,
        bytes: 0,
        bits_by_party: PerParty::default(),
        bits_by_protocol: BitsByProtocol::default(),
        offline_bits: 0,
        offline_bytes: 0,
        offline_bits_by_party: PerParty::default(),
        compute_seconds: 0.0,
        bits_busiest_party: 0,
    };
    let (rounds, depth) = critical_rounds(planned.network, &nodes, &layers, |l| (l.rounds, l.rounds_depth));
    total.rounds = rounds;
    total.rounds_depth = depth;
    for l in &layers {
        total.relus += l.relus;
        total.bits += l.bits;
        total.offline_bits += l.offline_bits;
        total.compute_seconds += l.compute_seconds;
        total.bits_by_party += l.bits_by_party;
        total.offline_bits_by_party += l.offline_bits_by_party;
        total.bits_by_protocol.linear += l.bits_by_protocol.linear;
        total.bits_by_protocol.drelu += l.bits_by_protocol.drelu;
        total.bits_by_protocol.mul += l.bits_by_protocol.mul;
        total.bits_busiest_party += l.bits_by_party.0.iter().max().copied().unwrap_or(0);
    }
    total.bytes = total.bits / 8;
    total.offline_bytes = total.offline_bits / 8;
    let estimates: Vec<Estimate> = profiles
        .iter()
        .map(|p| Estimate {
            profile: p.name.clone(),
            bandwidth_mbps: p.bandwidth_mbps,
            rtt_ms: p.rtt_ms,
            seconds: p.seconds(total.rounds, total.bits) + total.compute_seconds,
            seconds_total: p.seconds(total.rounds, total.bits + total.offline_bits) + total.compute_seconds,
            seconds_apart: p.seconds(total.rounds, total.bits_busiest_party) + total.compute_seconds,
        })
        .collect();
    let plan = planned.plan;
    let per_image = (batch > 1).then(|| {
        let b = batch as f64;
        PerImage {
            bits: total.bits as f64 / b,
            bytes: total.bits as f64 / 8.0 / b,
            offline_bytes: total.offline_bits as f64 / 8.0 / b,
            seconds: estimates.iter().map(|e| (e.profile.clone(), e.seconds / b)).collect(),
            seconds_apart: estimates.iter().map(|e| (e.profile.clone(), e.seconds_apart / b)).collect(),
        }
    });
    Ok(CostReport {
        architecture: planned.network.name.clone(),
        architecture_file: planned.network.path.display().to_string(),
        plan: plan.name.clone(),
        plan_file: plan.path.as_ref().map(|p| p.display().to_string()),
        protocol: table.name.clone(),
        protocol_source: table.source.clone(),
        conv_masking: masking,
        batch,
        layers,
        total,
        estimates,
        per_image,
    })
}

/// Rounds and depth along the critical path (`Network::critical_path`) of per-layer
/// figures, `layers[i]` belonging to `nodes[i]`.
pub fn critical_rounds<L>(net: &crate::graph::Network, nodes: &[NodeIndex], layers: &[L], of: impl Fn(&L) -> (u64, u64)) -> (u64, u64) {
    let mut per = vec![(0, 0); net.graph.node_count()];
    for (n, l) in nodes.iter().zip(layers) {
        per[n.index()] = of(l);
    }
    (net.critical_path(|n| per[n.index()].0), net.critical_path(|n| per[n.index()].1))
}

fn price_layer(planned: &Planned, table: &ProtocolTable, la: LayerActions) -> Result<LayerCost> {
    let node = planned.network.node(la.node);
    let mut rounds = 0;
    let mut depth = 0;
    let mut by_party = [0u64; 3];
    let mut offline = [0u64; 3];
    let mut by_protocol = BitsByProtocol::default();
    let mut actions = la.actions.iter().peekable();
    while let Some(action) = actions.next() {
        // A protocol with a one-piece ReLU prices an unshared decision-and-gate pair
        // (as many gates as decisions) as that ReLU; its bits count as DReLU bits.
        let fused = match (&table.relu, action) {
            (Some(relu), &Action::Drelu { count }) if matches!(actions.peek(), Some(Action::Mul { purpose: MulPurpose::Gate, count: gated }) if *gated == count) =>
            {
                actions.next();
                Some((relu, count))
            }
            _ => None,
        };
        let (price_rounds, price_depth, bits, off, family) = match (fused, *action) {
            (Some((p, count)), _) => {
                (p.rounds, p.depth, table.unit_bits(p, count), table.unit_offline_bits(p, count), &mut by_protocol.drelu)
            }
            (None, Action::Product { x, y, z, .. }) => (
                table.product.rounds,
                table.product.depth,
                table.product_bits(x, y, z),
                table.product_offline_bits(x, y, z),
                &mut by_protocol.linear,
            ),
            (None, Action::Drelu { count }) => {
                let p = &table.drelu;
                (p.rounds, p.depth, table.unit_bits(p, count), table.unit_offline_bits(p, count), &mut by_protocol.drelu)
            }
            (None, Action::Mul { count, .. }) => {
                let p = &table.mul;
                (p.rounds, p.depth, table.unit_bits(p, count), table.unit_offline_bits(p, count), &mut by_protocol.mul)
            }
            (None, Action::Truncate { count }) => {
                let p = &table.truncate;
                (p.rounds, p.depth, table.unit_bits(p, count), table.unit_offline_bits(p, count), &mut by_protocol.linear)
            }
            // Steps run one after another, each over every window: rounds per step,
            // bits per window and step. Billed with the comparisons (DReLU).
            (None, Action::Maxpool { windows, steps }) => {
                let p = table.maxpool.as_ref().ok_or_else(|| Error::NotPriced {
                    protocol: table.name.clone(),
                    origin: table.source.clone(),
                    layer: node.name.clone(),
                    op: "maxpool".into(),
                    hint: " (the sources of this table give no max pooling cost; to price it, add a [maxpool] entry to a \
                           copy of the table and pass that with --protocol)"
                        .into(),
                })?;
                (
                    p.rounds * steps,
                    p.depth * steps,
                    table.unit_bits(p, windows * steps),
                    table.unit_offline_bits(p, windows * steps),
                    &mut by_protocol.drelu,
                )
            }
        };
        rounds += price_rounds;
        depth += price_depth;
        *family += bits.iter().sum::<u64>();
        for p in 0..3 {
            by_party[p] += bits[p];
            offline[p] += off[p];
        }
    }
    let bits: u64 = by_party.iter().sum();
    // A fold from +0: `sum` over no actions gives -0, which prints as "-0".
    let compute_seconds = table.compute.map_or(0.0, |c| la.actions.iter().fold(0.0, |s, a| s + a.compute_seconds(&c)));
    Ok(LayerCost {
        name: node.name.clone(),
        op: node.op.as_ref().map_or("input", |o| o.kind()).to_string(),
        output_shape: node.output.0.clone(),
        relus: la.relus,
        rounds,
        rounds_depth: depth,
        bits,
        bytes: bits / 8,
        bits_by_party: PerParty(by_party),
        bits_by_protocol: by_protocol,
        offline_bits: offline.iter().sum(),
        offline_bits_by_party: PerParty(offline),
        compute_seconds,
        actions: la.actions,
    })
}

/// How one plan compares with the same network without sharing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Saving {
    pub baseline_plan: String,
    pub baseline_relus: u64,
    pub baseline_rounds: u64,
    pub baseline_bytes: u64,
    /// Percent of the baseline's bytes saved (negative when the plan costs more).
    pub bytes_saved_percent: f64,
    pub relus_saved_percent: f64,
}

impl Saving {
    pub fn between(plan: &CostReport, baseline: &CostReport) -> Saving {
        let pct = |new: u64, old: u64| if old == 0 { 0.0 } else { 100.0 * (old as f64 - new as f64) / old as f64 };
        Saving {
            baseline_plan: baseline.plan.clone(),
            baseline_relus: baseline.total.relus,
            baseline_rounds: baseline.total.rounds,
            baseline_bytes: baseline.total.bytes,
            bytes_saved_percent: pct(plan.total.bytes, baseline.total.bytes),
            relus_saved_percent: pct(plan.total.relus, baseline.total.relus),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The paper's figures (Tables 1, 5, 6, 8 and 9), from the shipped files.
    use super::*;
    use crate::spec::protocol::ConvMasking;
    use std::path::{Path, PathBuf};

    fn repo(p: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    }

    fn priced(arch: &str, plan: Option<&str>, masking: Option<ConvMasking>) -> CostReport {
        priced_under(&ProtocolTable::securenn(), arch, plan, masking)
    }

    fn priced_under(table: &ProtocolTable, arch: &str, plan: Option<&str>, masking: Option<ConvMasking>) -> CostReport {
        let plan = plan.map(|p| repo(&format!("architectures/plans/{p}.toml")));
        let net =
            crate::graph::Network::build(&crate::spec::ArchSpec::load(&repo(&format!("architectures/{arch}.toml"))).unwrap()).unwrap();
        let plan = plan.map_or_else(crate::spec::PlanSpec::original, |p| crate::spec::PlanSpec::load(&p).unwrap());
        price(&Planned::new(&net, &plan).unwrap(), table, masking, &crate::spec::profile::builtin()).unwrap()
    }

    #[test]
    fn parties_apart_wait_for_each_layers_busiest_sender() {
        // CIFAR-10: P2 sends most in every ReLU layer, P0 and P1 in the convolutions,
        // so the busiest senders' bits are well below the total but above any one party's.
        let r = priced("cifar10", None, None);
        let busiest: u64 = r.layers.iter().map(|l| *l.bits_by_party.0.iter().max().unwrap()).sum();
        assert_eq!(r.total.bits_busiest_party, busiest);
        assert!(busiest < r.total.bits && r.total.bits_by_party.0.iter().all(|&b| b <= busiest), "{busiest}");
        let wan = &r.estimates[1];
        let expected = 86.0 * 0.040 + busiest as f64 / 100e6;
        assert!((wan.seconds_apart - expected).abs() < 1e-9, "{}", wan.seconds_apart);
        assert!(wan.seconds_apart < wan.seconds);
        // A batch: per image is the batch's estimate over its size.
        let net = crate::graph::Network::build(&crate::spec::ArchSpec::load(&repo("architectures/lenet_mnist.toml")).unwrap()).unwrap();
        let plan = crate::spec::PlanSpec::original();
        let b = price_batch(&Planned::new(&net, &plan).unwrap(), &ProtocolTable::securenn(), None, &crate::spec::profile::builtin(), 4)
            .unwrap();
        let per = b.per_image.unwrap();
        assert!((per.seconds_apart[1].1 - b.estimates[1].seconds_apart / 4.0).abs() < 1e-12);
    }

    #[test]
    fn a_compute_section_adds_local_work_to_the_estimates() {
        let mut table = ProtocolTable::securenn();
        let plain = priced_under(&table, "svhn", None, None);
        table.compute = Some(crate::spec::protocol::Compute {
            ns_per_mac: 1.0,
            ns_per_element: 2.0,
            ns_per_drelu: 1000.0,
            ns_per_mul: 10.0,
            ns_per_truncate: 0.5,
        });
        let timed = priced_under(&table, "svhn", None, None);
        let mut expected = 0.0;
        for l in &timed.layers {
            for a in &l.actions {
                expected += match *a {
                    Action::Product { x, y, z, macs, .. } => macs as f64 + 2.0 * (x + y + z) as f64,
                    Action::Drelu { count } => count as f64 * 1000.0,
                    Action::Mul { count, .. } => count as f64 * 10.0,
                    Action::Truncate { count } => count as f64 * 0.5,
                    Action::Maxpool { windows, steps } => (windows * steps) as f64 * 1020.0,
                } * 1e-9;
            }
        }
        assert!((timed.total.compute_seconds - expected).abs() < 1e-12 && expected > 0.0);
        for (a, b) in plain.estimates.iter().zip(&timed.estimates) {
            assert!((b.seconds - a.seconds - expected).abs() < 1e-9);
        }
        // Bits and rounds do not move.
        assert_eq!((plain.total.bits, plain.total.rounds), (timed.total.bits, timed.total.rounds));
    }

    #[test]
    fn resnet18_has_557056_relus_and_its_shortcuts_run_beside_the_main_branch() {
        let r = priced("resnet18_cifar", None, None);
        assert_eq!(r.total.relus, 557_056);
        let summed: u64 = r.layers.iter().map(|l| l.rounds).sum();
        // Three 1x1 shortcut convs (2 rounds each) run while their block's two convs
        // and ReLU do: the critical path is 6 rounds shorter than the sum.
        assert_eq!((summed, r.total.rounds), (212, 206));
        assert_eq!(layer(&r, "s2b1_down").rounds, 2);
        // A chain of layers: the plain sum.
        let chain = priced("cifar10", None, None);
        assert_eq!(chain.total.rounds, chain.layers.iter().map(|l| l.rounds).sum::<u64>());
    }

    #[test]
    fn a_batch_masks_the_weights_once_and_pays_the_rest_per_image() {
        let table = ProtocolTable::securenn();
        let load = |arch: &str| crate::graph::Network::build(&crate::spec::ArchSpec::load(&repo(arch)).unwrap()).unwrap();
        let net = load("architectures/lenet_mnist.toml");
        let plan = crate::spec::PlanSpec::original();
        let planned = Planned::new(&net, &plan).unwrap();
        let one = price(&planned, &table, None, &[]).unwrap();
        let b = 128;
        let batch = price_batch(&planned, &table, None, &crate::spec::profile::builtin(), b).unwrap();
        assert_eq!((batch.total.rounds, batch.total.rounds_depth), (one.total.rounds, one.total.rounds_depth));
        // conv1, 24x24 outputs of 5x5x1 patches, 20 channels: 2 m^2 f^2 i and m^2 o per image, 2 f^2 o i once.
        assert_eq!(layer(&batch, "conv1").bits, (b * (2 * 576 * 25 + 576 * 20) + 2 * 25 * 20) * 64);
        // fc1 (Linear_{128,800,500}): 2 m n + m v per batch row, 2 n v once.
        assert_eq!(layer(&batch, "fc1").bits, (b * (2 * 800 + 500) + 2 * 800 * 500) * 64);
        // Everything but the weights' openings grows b times.
        let weights: u64 = [25 * 20, 25 * 20 * 50, 800 * 500, 500 * 10].iter().sum::<u64>() * 2 * 64;
        assert_eq!(batch.total.bits, b * one.total.bits - (b - 1) * weights);
        assert_eq!(layer(&batch, "pool1").bits, b * layer(&one, "pool1").bits);
        let per = batch.per_image.as_ref().unwrap();
        assert!((per.bits - batch.total.bits as f64 / b as f64).abs() < 1e-6);
        assert_eq!(per.seconds.len(), 2);
        // One image: no batch fields in JSON, so reports (and store keys) read as before.
        let json = serde_json::to_value(&one).unwrap();
        assert!(json.get("batch").is_none() && json.get("per_image").is_none());
        assert_eq!(serde_json::to_value(&batch).unwrap()["batch"], 128);
    }

    #[test]
    fn a_one_piece_relu_prices_only_unshared_layers() {
        // Delphi: an unshared ReLU is one garbled circuit (5,376 bits online, one
        // round); a shared layer pays a circuit per decision and a Beaver Mul (4 l)
        // per activation.
        let delphi = ProtocolTable::builtin("delphi").unwrap();
        let original = priced_under(&delphi, "cifar10", None, None);
        let l = layer(&original, "relu1");
        assert_eq!((l.rounds, l.bits, l.bits_by_protocol.mul), (1, 65_536 * 5_376, 0));
        assert_eq!(l.offline_bits, 65_536 * (5_376 + 156_736));
        let shared = priced_under(&delphi, "cifar10", Some("cifar10/uniform-32x32"), None);
        let l = layer(&shared, "relu1");
        assert_eq!((l.rounds, l.bits_by_protocol.drelu, l.bits_by_protocol.mul), (2, 64 * 5_376, 65_536 * 4 * 64));
        assert_eq!(l.offline_bits, 64 * (5_376 + 156_736));
        // Layers the plan leaves alone keep the one-piece price.
        assert_eq!(layer(&shared, "relu3").bits, layer(&original, "relu3").bits);
        // SecureNN has no one-piece ReLU: the same pair is a DReLU and a Mul.
        let securenn = priced("cifar10", None, None);
        let l = layer(&securenn, "relu1");
        assert_eq!((l.rounds, l.bits), (10, 65_536 * 88 * 64));
    }

    fn layer<'a>(r: &'a CostReport, name: &str) -> &'a LayerCost {
        r.layers.iter().find(|l| l.name == name).unwrap()
    }

    fn within(value: u64, paper_mb: f64, tolerance: f64) -> bool {
        (value as f64 / 1e6 - paper_mb).abs() <= tolerance * paper_mb
    }

    #[test]
    fn cifar10_original_matches_table8() {
        let r = priced("cifar10", None, None);
        assert_eq!(r.total.rounds, 86);
        assert_eq!(r.total.rounds_depth, 71);
        assert_eq!(r.total.relus, 173_056);
        // Table 1 arithmetic: 17,648,010 ring elements.
        assert_eq!(r.total.bytes, 17_648_010 * 8);
        assert!(within(r.total.bytes, 141.02, 0.005), "{}", r.total.bytes);
        for name in ["relu1", "relu2"] {
            let l = layer(&r, name);
            assert_eq!(l.relus, 65_536);
            assert_eq!(l.bytes, 65_536 * 88 * 8); // 46.14 MB
        }
        // Per party (spec: 39.44, 39.44, 62.30 MB).
        let mb = |b: u64| (b as f64 / 8e6 * 100.0).round() / 100.0;
        assert_eq!(r.total.bits_by_party.map(mb), [39.44, 39.44, 62.30]);
    }

    #[test]
    fn cifar10_plans_match_tables_5_8_9() {
        let per_channel = |plan: &str| {
            let r = priced("cifar10", Some(plan), None);
            (layer(&r, "relu1").relus / 64, layer(&r, "relu2").relus / 64)
        };
        assert_eq!(per_channel("cifar10/original"), (1024, 1024));
        assert_eq!(per_channel("cifar10/uniform-3x3"), (121, 121));
        assert_eq!(per_channel("cifar10/uniform-4x4"), (64, 64));
        assert_eq!(per_channel("cifar10/uniform-32x32"), (1, 1));
        assert_eq!(per_channel("cifar10/layer1-only"), (1, 1024));
        assert_eq!(per_channel("cifar10/layer2-only"), (1024, 1));
        assert_eq!(per_channel("cifar10/clusters-8x8-8"), (128, 128));
        assert_eq!(per_channel("cifar10/clusters-center-256"), (1, 256));

        let uniform = priced("cifar10", Some("cifar10/uniform-32x32"), None);
        assert_eq!(uniform.total.rounds, 86);
        assert!(within(uniform.total.bytes, 54.18, 0.01), "{}", uniform.total.bytes);
        for name in ["relu1", "relu2"] {
            assert_eq!(layer(&uniform, name).bytes, (64 * 83 + 65_536 * 5) * 8); // 2.66 MB
        }
        let fc_noise = priced("cifar10", Some("cifar10/fc-noise"), None);
        assert_eq!(fc_noise.total.rounds, 90);
        assert!(within(fc_noise.total.bytes, 57.865, 0.002), "{}", fc_noise.total.bytes);
        let shafran = priced("cifar10", Some("cifar10/shafran-partial"), None);
        assert_eq!(shafran.total.rounds, 76);
        assert!(within(shafran.total.bytes, 71.9, 0.002), "{}", shafran.total.bytes);
    }

    #[test]
    fn svhn_and_fashion_mnist_match_table8_within_the_papers_own_slack() {
        let svhn = priced("svhn", None, None);
        assert!(within(svhn.total.bytes, 22.1, 0.03), "{}", svhn.total.bytes);
        assert_eq!(svhn.total.rounds, 26);
        assert_eq!(layer(&svhn, "relu1").bits_by_protocol.drelu / 8, 26_912 * 664); // 17.87 MB
        let fashion = priced("fashion_mnist", None, None);
        assert!(within(fashion.total.bytes, 35.04, 0.03), "{}", fashion.total.bytes);
        assert_eq!(fashion.total.rounds, 38); // Table 1 arithmetic; the paper prints 40
        assert_eq!(layer(&fashion, "relu1").bits_by_protocol.drelu / 8, 25_088 * 664); // 16.66 MB
        // Table 6: 81 decisions per channel for 3x3 tiles, 1 per channel for "32x32".
        let r = priced("svhn", Some("svhn/uniform-3x3"), None);
        assert_eq!(layer(&r, "relu1").relus, 32 * 81);
        let r = priced("fashion_mnist", Some("fashion_mnist/uniform-3x3"), None);
        assert_eq!(layer(&r, "relu1").relus, 32 * 81);
        let r = priced("svhn", Some("svhn/uniform-32x32"), None);
        assert_eq!(layer(&r, "relu1").bytes, (32 * 83 + 26_912 * 5) * 8); // paper: 1.09 MB
    }

    #[test]
    fn tensor_masking_opens_inputs_instead_of_im2col() {
        let im2col = priced("cifar10", None, None);
        let tensor = priced("cifar10", None, Some(ConvMasking::Tensor));
        assert_eq!(tensor.conv_masking, ConvMasking::Tensor);
        // conv1: 2 * 3,072 input + 2 * 1,728 kernel + 65,536 output elements.
        assert_eq!(layer(&tensor, "conv1").bits, (2 * 3072 + 2 * 1728 + 65_536) * 64);
        let linear = |r: &CostReport| r.total.bits_by_protocol.linear as f64 / 8e6;
        assert!((linear(&im2col) - 19.4).abs() < 0.05, "{}", linear(&im2col));
        assert!((linear(&tensor) - 5.9).abs() < 0.05, "{}", linear(&tensor));
        assert_eq!(tensor.total.rounds, im2col.total.rounds);
    }

    #[test]
    fn shared_relu_prices_decision_options() {
        use crate::spec::PlanSpec;
        let net = crate::graph::Network::build(&crate::spec::ArchSpec::load(&repo("architectures/cifar10.toml")).unwrap()).unwrap();
        let relu1 = |body: &str| {
            let plan =
                PlanSpec::parse(Path::new("p.toml"), &format!("name = \"p\"\n[relu.relu1]\ngroup = \"patch\"\npatch = 4\n{body}")).unwrap();
            let r = price(&crate::graph::sharing::Planned::new(&net, &plan).unwrap(), &ProtocolTable::securenn(), None, &[]).unwrap();
            let l = layer(&r, "relu1");
            (l.rounds, l.bits / 64)
        };
        let (g, n) = (4096, 65_536);
        assert_eq!(relu1("decision = \"center\""), (10, 83 * g + 5 * n));
        assert_eq!(relu1("decision = \"mean\""), (10, 83 * g + 5 * n));
        assert_eq!(relu1("decision = \"learned\"\nweights = \"public\""), (10, 83 * g + 5 * n));
        // Secret weights, one v per group: X = activations, Y = weights, Z = scores.
        assert_eq!(relu1("decision = \"learned\""), (12, 2 * n + 2 * n + g + 83 * g + 5 * n));
        // One v shared by all 64 channels: Y has 1,024 weights.
        assert_eq!(relu1("decision = \"learned\"\nshared_across_channels = true"), (12, 2 * n + 2 * 1024 + g + 83 * g + 5 * n));
        // Noise at inference: free with a public mask, a Mul per activation with a secret one.
        assert_eq!(relu1("noise = 0.2\nnoise_at_inference = true\nnoise_mask = \"public\""), (10, 83 * g + 5 * n));
        assert_eq!(relu1("noise = 0.2\nnoise_at_inference = true"), (12, 83 * g + 10 * n));
        assert_eq!(relu1("noise = 0.2"), (10, 83 * g + 5 * n));
    }
}
