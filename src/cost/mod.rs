//! The analytic cost model: `actions` counts what each layer must do, a
//! `protocol::ProtocolTable` prices each action in rounds and bits per party, and
//! `profile` turns totals into estimated seconds.
//!
//! Rounds follow the paper's convention: a layer's actions run one after another
//! and layers run one after another, so rounds add up along the whole network, even
//! for independent branches of a residual network (no batching of independent
//! layers is modelled).

pub mod actions;
pub mod profile;
pub mod protocol;

use crate::sharing::Planned;
use actions::{Action, LayerActions};
use profile::Profile;
use protocol::{ConvMasking, ProtocolTable};
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
    pub bits_by_party: [u64; 3],
    pub bits_by_protocol: BitsByProtocol,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Total {
    pub relus: u64,
    pub rounds: u64,
    pub rounds_depth: u64,
    pub bits: u64,
    pub bytes: u64,
    pub bits_by_party: [u64; 3],
    pub bits_by_protocol: BitsByProtocol,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub profile: String,
    pub bandwidth_mbps: f64,
    pub rtt_ms: f64,
    pub seconds: f64,
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
    pub layers: Vec<LayerCost>,
    pub total: Total,
    pub estimates: Vec<Estimate>,
}

/// Prices a planned network. `masking` overrides the table's conv masking.
pub fn price(planned: &Planned, table: &ProtocolTable, masking: Option<ConvMasking>, profiles: &[Profile]) -> CostReport {
    let masking = masking.unwrap_or(table.conv_masking);
    let layers: Vec<LayerCost> = actions::count(planned, masking)
        .into_iter()
        .map(|la| price_layer(planned, table, la))
        .collect();
    let mut total = Total { relus: 0, rounds: 0, rounds_depth: 0, bits: 0, bytes: 0, bits_by_party: [0; 3], bits_by_protocol: BitsByProtocol::default() };
    for l in &layers {
        total.relus += l.relus;
        total.rounds += l.rounds;
        total.rounds_depth += l.rounds_depth;
        total.bits += l.bits;
        for p in 0..3 {
            total.bits_by_party[p] += l.bits_by_party[p];
        }
        total.bits_by_protocol.linear += l.bits_by_protocol.linear;
        total.bits_by_protocol.drelu += l.bits_by_protocol.drelu;
        total.bits_by_protocol.mul += l.bits_by_protocol.mul;
    }
    total.bytes = total.bits / 8;
    let estimates = profiles
        .iter()
        .map(|p| Estimate { profile: p.name.clone(), bandwidth_mbps: p.bandwidth_mbps, rtt_ms: p.rtt_ms, seconds: p.seconds(total.rounds, total.bits) })
        .collect();
    let plan = planned.plan;
    CostReport {
        architecture: planned.network.name.clone(),
        architecture_file: planned.network.path.display().to_string(),
        plan: plan.name.clone(),
        plan_file: plan.path.as_ref().map(|p| p.display().to_string()),
        protocol: table.name.clone(),
        protocol_source: table.source.clone(),
        conv_masking: masking,
        layers,
        total,
        estimates,
    }
}

fn price_layer(planned: &Planned, table: &ProtocolTable, la: LayerActions) -> LayerCost {
    let node = planned.network.node(la.node);
    let mut rounds = 0;
    let mut depth = 0;
    let mut by_party = [0u64; 3];
    let mut by_protocol = BitsByProtocol::default();
    for action in &la.actions {
        let (price_rounds, price_depth, bits, family) = match *action {
            Action::Product { x, y, z, .. } => (table.product.rounds, table.product.depth, table.product_bits(x, y, z), &mut by_protocol.linear),
            Action::Drelu { count } => (table.drelu.rounds, table.drelu.depth, table.unit_bits(&table.drelu, count), &mut by_protocol.drelu),
            Action::Mul { count, .. } => (table.mul.rounds, table.mul.depth, table.unit_bits(&table.mul, count), &mut by_protocol.mul),
            Action::Truncate { count } => {
                let bits = table.unit_bits(&table.truncate, count);
                (table.truncate.rounds, table.truncate.depth, bits, &mut by_protocol.linear)
            }
        };
        rounds += price_rounds;
        depth += price_depth;
        *family += bits.iter().sum::<u64>();
        for p in 0..3 {
            by_party[p] += bits[p];
        }
    }
    let bits: u64 = by_party.iter().sum();
    LayerCost {
        name: node.name.clone(),
        op: node.op.as_ref().map_or("input", |o| o.kind()).to_string(),
        output_shape: node.output.0.clone(),
        relus: la.relus,
        rounds,
        rounds_depth: depth,
        bits,
        bytes: bits / 8,
        bits_by_party: by_party,
        bits_by_protocol: by_protocol,
        actions: la.actions,
    }
}
