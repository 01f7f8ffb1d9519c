//! `explore compare`: one network and plan priced under several protocols, each
//! beside the same network without sharing under the same protocol, to show where
//! ReLU sharing pays and where linear layers come to dominate.

use crate::cost::{CostReport, price_batch};
use crate::error::Result;
use crate::graph::sharing::Planned;
use crate::spec::profile::Profile;
use crate::spec::protocol::ProtocolTable;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    pub profile: String,
    pub online_seconds: f64,
    /// Online, the parties on machines of their own (`cost::Estimate::seconds_apart`).
    pub online_seconds_apart: f64,
    pub total_seconds: f64,
    /// Percent of the original network's total seconds saved by the plan.
    pub saved_percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub protocol: String,
    pub source: String,
    pub relus: u64,
    pub rounds: u64,
    pub offline_bytes: u64,
    pub online_bytes: u64,
    pub total_bytes: u64,
    /// Share of online bytes spent in products (linear layers and secret scores).
    pub linear_share: f64,
    pub timings: Vec<Timing>,
    pub original_total_bytes: u64,
    pub original_rounds: u64,
    /// Percent of the original network's total bytes saved by the plan.
    pub bytes_saved_percent: f64,
}

fn total_bytes(r: &CostReport) -> u64 {
    (r.total.bits + r.total.offline_bits) / 8
}

/// Prices `planned` and the same network without sharing under each table. A table
/// that cannot price some layer (`Error::NotPriced`) gives that error in its place.
/// `batch` images per inference (see `cost::price_batch`): every figure is per batch.
pub fn compare(planned: &Planned, original: &Planned, tables: &[ProtocolTable], profiles: &[Profile], batch: u64) -> Vec<Result<Row>> {
    tables
        .iter()
        .map(|t| {
            let (r, o) = (price_batch(planned, t, None, profiles, batch)?, price_batch(original, t, None, profiles, batch)?);
            let pct = |new: f64, old: f64| if old > 0.0 { 100.0 * (old - new) / old } else { 0.0 };
            Ok(Row {
                protocol: t.name.clone(),
                source: t.source.clone(),
                relus: r.total.relus,
                rounds: r.total.rounds,
                offline_bytes: r.total.offline_bytes,
                online_bytes: r.total.bytes,
                total_bytes: total_bytes(&r),
                linear_share: r.total.bits_by_protocol.linear as f64 / r.total.bits.max(1) as f64,
                timings: r
                    .estimates
                    .iter()
                    .zip(&o.estimates)
                    .map(|(e, b)| Timing {
                        profile: e.profile.clone(),
                        online_seconds: e.seconds,
                        online_seconds_apart: e.seconds_apart,
                        total_seconds: e.seconds_total,
                        saved_percent: pct(e.seconds_total, b.seconds_total),
                    })
                    .collect(),
                original_total_bytes: total_bytes(&o),
                original_rounds: o.total.rounds,
                bytes_saved_percent: pct(total_bytes(&r) as f64, total_bytes(&o) as f64),
            })
        })
        .collect()
}
