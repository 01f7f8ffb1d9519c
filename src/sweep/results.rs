//! A sweep's rows and what is written from them: `results.csv` (one row per point),
//! `pareto.csv` (the points no other point beats on both accuracy and a cost), and
//! `skipped.csv`.

use super::store;
use crate::cost::CostReport;
use crate::error::Result;
use crate::simulate::SimReport;
use crate::spec::sweep::Paper;
use crate::train::TrainReport;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A `[[point]]` of the sweep file.
    Named,
    /// A point of the named `[[grid]]`.
    Grid(String),
    /// A plan `explore search` found for a budget of `[search]`.
    Search,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LayerRelus {
    pub name: String,
    pub channels: usize,
    /// ReLU decisions (DReLUs) in the layer.
    pub relus: u64,
}

/// The stored result of training one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// Fraction of the test split, after the last epoch.
    pub test_accuracy: f64,
    pub train_seconds: f64,
    pub epochs: usize,
    pub images_per_second: f64,
    pub train_images: usize,
    pub test_images: usize,
    pub threads: usize,
}

impl From<&TrainReport> for TrainRecord {
    fn from(r: &TrainReport) -> Self {
        TrainRecord {
            test_accuracy: r.test_accuracy,
            train_seconds: r.train_seconds,
            epochs: r.epochs,
            images_per_second: r.images_per_second,
            train_images: r.train_images,
            test_images: r.test_images,
            threads: r.threads,
        }
    }
}

/// The stored result of the secure simulation of one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimRecord {
    pub samples: usize,
    pub inputs: String,
    pub weights: String,
    /// Fraction of samples whose secure prediction equals the plaintext float one.
    pub agreement: f64,
    /// The same against plaintext fixed point.
    pub agreement_fixed: f64,
    /// Fraction matching the labels (images only).
    pub accuracy: Option<f64>,
    /// Measured rounds and bits equal the cost model's in every layer.
    pub exact: bool,
    pub rounds: u64,
    pub bits: u64,
    pub max_error_lsb: u64,
    pub seconds_per_image: f64,
    pub threads: usize,
    /// Shared decisions that flipped against fixed point, and how many of those were
    /// not explained by truncation (`simulate::DecisionCheck`); `None` in records
    /// stored before they were counted.
    #[serde(default)]
    pub flips: Option<(u64, u64)>,
    /// The digest of every message (`SimReport::total.transcript`): points never share
    /// protocol randomness, so no two points' digests are equal. `None` in records
    /// stored before it was kept.
    #[serde(default)]
    pub transcript: Option<String>,
}

impl From<&SimReport> for SimRecord {
    fn from(r: &SimReport) -> Self {
        SimRecord {
            samples: r.total.samples,
            inputs: r.inputs.clone(),
            weights: r.weights.clone(),
            agreement: r.total.agreement,
            agreement_fixed: r.total.agreement_fixed,
            accuracy: r.total.accuracy,
            exact: r.layers.iter().all(|l| l.measured == l.predicted),
            rounds: r.total.measured.rounds,
            bits: r.total.measured.bits,
            max_error_lsb: r.layers.iter().map(|l| l.max_error_lsb).max().unwrap_or(0),
            seconds_per_image: r.total.seconds_per_image,
            threads: r.total.threads,
            flips: Some(r.layers.iter().filter_map(|l| l.decisions).fold((0, 0), |(f, u), d| (f + d.flips, u + d.unexplained_flips))),
            transcript: Some(r.total.transcript.clone()),
        }
    }
}

/// Where a point's clusters come from (results.csv's `clusters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterSource {
    /// No layer shares by clusters.
    #[default]
    None,
    /// The plan names its assignments (`explore cluster` wrote them).
    File,
    /// Found by the sweep from the trained original's ReLU decisions.
    Original,
    /// No assignment and nothing to cluster from: runs of near-equal length with the
    /// paper's counts, so costs are exact and accuracy is not the paper's method's.
    StandIn,
}

impl ClusterSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterSource::None => "",
            ClusterSource::File => "assignment file",
            ClusterSource::Original => "trained original",
            ClusterSource::StandIn => "stand-in partition",
        }
    }
}

/// One design point, all stages joined.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub source: Source,
    pub parameters: String,
    /// Each shared layer's sharing, `relu1: patch 3x3 ...; relu2: ...`.
    pub plan: String,
    pub clusters: ClusterSource,
    pub paper: Option<Paper>,
    pub layers: Vec<LayerRelus>,
    pub relus: u64,
    pub rounds: u64,
    pub rounds_depth: u64,
    pub bytes: u64,
    pub bytes_by_party: [u64; 3],
    pub offline_bytes: u64,
    /// Bytes saved against the same network without sharing, percent.
    pub saved_bytes_pct: f64,
    /// Online estimate per network profile, seconds; and with the offline phase.
    pub seconds: Vec<(String, f64)>,
    pub seconds_total: Vec<(String, f64)>,
    /// Online estimate with the three parties on machines of their own.
    pub seconds_apart: Vec<(String, f64)>,
    /// The first training's seed (the others follow it: seed + 1, ...).
    pub seed: u64,
    /// One training per seed, with its store key; empty when nothing was trained.
    pub train: Vec<(TrainRecord, String)>,
    pub sim: Option<(SimRecord, String)>,
}

impl Row {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        source: Source,
        parameters: String,
        plan: String,
        paper: Option<Paper>,
        layers: Vec<LayerRelus>,
        priced: &CostReport,
        baseline: &CostReport,
        seed: u64,
        train: Vec<(TrainRecord, String)>,
        sim: Option<(SimRecord, String)>,
    ) -> Row {
        let t = &priced.total;
        Row {
            name,
            source,
            parameters,
            plan: if plan.is_empty() { "regular ReLU".into() } else { plan },
            clusters: ClusterSource::None,
            paper,
            layers,
            relus: t.relus,
            rounds: t.rounds,
            rounds_depth: t.rounds_depth,
            bytes: t.bytes,
            bytes_by_party: t.bits_by_party.map(|b| b / 8).0,
            offline_bytes: t.offline_bytes,
            saved_bytes_pct: 100.0 * (1.0 - t.bytes as f64 / baseline.total.bytes.max(1) as f64),
            seconds: priced.estimates.iter().map(|e| (e.profile.clone(), e.seconds)).collect(),
            seconds_total: priced.estimates.iter().map(|e| (e.profile.clone(), e.seconds_total)).collect(),
            seconds_apart: priced.estimates.iter().map(|e| (e.profile.clone(), e.seconds_apart)).collect(),
            seed,
            train,
            sim,
        }
    }

    /// Plaintext test accuracy from our training, percent: the mean over the seeds.
    pub fn accuracy(&self) -> Option<f64> {
        let n = self.train.len();
        (n > 0).then(|| self.train.iter().map(|(t, _)| 100.0 * t.test_accuracy).sum::<f64>() / n as f64)
    }

    /// The sample standard deviation of the test accuracy over the seeds, percent
    /// points; `None` under two seeds.
    pub fn accuracy_sd(&self) -> Option<f64> {
        let n = self.train.len();
        let mean = self.accuracy()?;
        (n >= 2).then(|| (self.train.iter().map(|(t, _)| (100.0 * t.test_accuracy - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt())
    }

    pub fn paper_accuracy(&self) -> Option<f64> {
        self.paper.as_ref()?.accuracy
    }

    /// The value of a cost metric (see `metrics`).
    pub fn cost(&self, metric: &Metric) -> f64 {
        match metric {
            Metric::Relus => self.relus as f64,
            Metric::Bytes => self.bytes as f64,
            Metric::Rounds => self.rounds as f64,
            Metric::Seconds(p) => self.seconds.iter().find(|(n, _)| n == p).map_or(f64::NAN, |(_, s)| *s),
        }
    }

    /// The line logged when the point is done.
    pub fn summary(&self) -> String {
        let mut s = format!("{}: {} ReLUs, {} rounds, {:.3} MB", self.name, self.relus, self.rounds, self.bytes as f64 / 1e6);
        if let Some((sim, _)) = &self.sim {
            s += &format!(
                ", secure {}/{} agree{}",
                (sim.agreement * sim.samples as f64).round(),
                sim.samples,
                if sim.exact { ", counts exact" } else { ", COUNTS DIFFER" }
            );
            match sim.flips {
                Some((0, _)) | None => {}
                Some((f, 0)) => s += &format!(", {f} shared decision(s) flipped by truncation"),
                Some((f, u)) => s += &format!(", {f} shared decision(s) flipped, {u} NOT by truncation"),
            }
        }
        match (self.accuracy(), self.accuracy_sd()) {
            (Some(a), Some(sd)) => s += &format!(", test {a:.2}% +- {sd:.2} ({} seeds)", self.train.len()),
            (Some(a), None) => s += &format!(", test {a:.2}%"),
            _ => {}
        }
        if let Some(p) = self.paper_accuracy() {
            s += &format!(" (paper {p:.2}%)");
        }
        s
    }
}

/// A cost axis of the trade-off.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Relus,
    Bytes,
    Rounds,
    /// Estimated online seconds on the named network profile.
    Seconds(String),
}

impl Metric {
    /// Column and file name part: `relus`, `bytes`, `rounds`, `seconds_wan`.
    pub fn id(&self) -> String {
        match self {
            Metric::Relus => "relus".into(),
            Metric::Bytes => "bytes".into(),
            Metric::Rounds => "rounds".into(),
            Metric::Seconds(p) => format!("seconds_{p}"),
        }
    }

    /// Axis label with its unit.
    pub fn label(&self) -> String {
        match self {
            Metric::Relus => "ReLU decisions (DReLUs) per image".into(),
            Metric::Bytes => "communication per image (bytes, all parties)".into(),
            Metric::Rounds => "communication rounds per image".into(),
            Metric::Seconds(p) => format!("estimated online time per image on {p} (s)"),
        }
    }
}

pub fn metrics(profiles: &[String]) -> Vec<Metric> {
    let mut m = vec![Metric::Relus, Metric::Bytes, Metric::Rounds];
    m.extend(profiles.iter().map(|p| Metric::Seconds(p.clone())));
    m
}

/// Where a front's accuracies come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccuracySource {
    /// Our training.
    Measured,
    /// The paper's tables, for named points, when nothing was trained.
    Paper,
}

impl AccuracySource {
    pub fn as_str(self) -> &'static str {
        match self {
            AccuracySource::Measured => "measured",
            AccuracySource::Paper => "paper",
        }
    }

    pub fn of(self, row: &Row) -> Option<f64> {
        match self {
            AccuracySource::Measured => row.accuracy(),
            AccuracySource::Paper => row.paper_accuracy(),
        }
    }
}

/// The non-dominated points for accuracy against one cost, cheapest first.
#[derive(Debug, Clone)]
pub struct Front {
    pub metric: Metric,
    pub source: AccuracySource,
    /// Indices into the rows.
    pub points: Vec<usize>,
}

/// The accuracy the sweep has: ours when anything was trained, else the paper's.
pub fn accuracy_source(rows: &[Row]) -> Option<AccuracySource> {
    if rows.iter().any(|r| r.accuracy().is_some()) {
        Some(AccuracySource::Measured)
    } else if rows.iter().any(|r| r.paper_accuracy().is_some()) {
        Some(AccuracySource::Paper)
    } else {
        None
    }
}

/// One front per cost metric. A point is on the front when no other point costs no
/// more and is at least as accurate, with one of the two strictly.
pub fn pareto(rows: &[Row], profiles: &[String]) -> Vec<Front> {
    let Some(source) = accuracy_source(rows) else { return vec![] };
    metrics(profiles)
        .into_iter()
        .map(|metric| {
            let mut pts: Vec<(usize, f64, f64)> =
                rows.iter().enumerate().filter_map(|(i, r)| Some((i, r.cost(&metric), source.of(r)?))).collect();
            // Cheapest first; at equal cost the most accurate first.
            pts.sort_by(|a, b| a.1.total_cmp(&b.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(&b.0)));
            let mut best = f64::NEG_INFINITY;
            let mut points = Vec::new();
            for (i, _, acc) in pts {
                if acc > best {
                    points.push(i);
                    best = acc;
                }
            }
            Front { metric, source, points }
        })
        .collect()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or(String::new(), |x| format!("{x:.digits$}"))
}

fn csv_bytes(header: Vec<String>, records: Vec<Vec<String>>) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to memory cannot fail, and every record has the header's length.
    w.write_record(&header).expect("in-memory csv");
    for r in records {
        w.write_record(&r).expect("in-memory csv");
    }
    w.into_inner().expect("in-memory csv")
}

/// `results.csv`: one row per valid point; empty cells where a stage did not run.
pub fn write_results(path: &Path, rows: &[Row], relu_layers: &[String], profiles: &[String]) -> Result<()> {
    let mut header: Vec<String> = ["point", "source", "grid", "parameters", "plan", "clusters", "paper_table"].map(String::from).to_vec();
    for l in relu_layers {
        header.push(format!("relus_{l}"));
        header.push(format!("relus_per_channel_{l}"));
    }
    header.extend(
        ["relus", "rounds", "rounds_depth", "bytes", "bytes_p0", "bytes_p1", "bytes_p2", "offline_bytes", "saved_bytes_pct"]
            .map(String::from),
    );
    for p in profiles {
        header.push(format!("seconds_{p}"));
    }
    for p in profiles {
        header.push(format!("seconds_total_{p}"));
    }
    for p in profiles {
        header.push(format!("seconds_apart_{p}"));
    }
    header.extend(
        [
            "test_accuracy_pct",
            "test_accuracy_sd_pct",
            "seeds",
            "paper_accuracy_pct",
            "accuracy_minus_paper",
            "paper_mb",
            "paper_rounds",
            "paper_seconds",
            "secure_samples",
            "secure_inputs",
            "secure_agreement_pct",
            "secure_accuracy_pct",
            "secure_counts_exact",
            "secure_max_error_lsb",
            "secure_seconds_per_image",
            "epochs",
            "train_seconds",
            "train_images",
            "seed",
            "train_key",
            "simulate_key",
        ]
        .map(String::from),
    );
    let records = rows
        .iter()
        .map(|r| {
            let (source, grid) = match &r.source {
                Source::Named => ("named", String::new()),
                Source::Grid(g) => ("grid", g.clone()),
                Source::Search => ("search", String::new()),
            };
            let mut rec = vec![
                r.name.clone(),
                source.into(),
                grid,
                r.parameters.clone(),
                r.plan.clone(),
                r.clusters.as_str().into(),
                r.paper.as_ref().and_then(|p| p.table.clone()).unwrap_or_default(),
            ];
            for name in relu_layers {
                let l = r.layers.iter().find(|l| &l.name == name);
                rec.push(l.map_or(String::new(), |l| l.relus.to_string()));
                rec.push(l.map_or(String::new(), |l| {
                    let per = l.relus as f64 / l.channels.max(1) as f64;
                    if per.fract() == 0.0 { format!("{per}") } else { format!("{per:.2}") }
                }));
            }
            rec.extend([r.relus, r.rounds, r.rounds_depth, r.bytes].map(|v| v.to_string()));
            rec.extend(r.bytes_by_party.map(|v| v.to_string()));
            rec.push(r.offline_bytes.to_string());
            rec.push(format!("{:.2}", r.saved_bytes_pct));
            for p in profiles {
                rec.push(opt(r.seconds.iter().find(|(n, _)| n == p).map(|s| s.1), 4));
            }
            for p in profiles {
                rec.push(opt(r.seconds_total.iter().find(|(n, _)| n == p).map(|s| s.1), 4));
            }
            for p in profiles {
                rec.push(opt(r.seconds_apart.iter().find(|(n, _)| n == p).map(|s| s.1), 4));
            }
            let sim = r.sim.as_ref().map(|s| &s.0);
            let train = r.train.first().map(|t| &t.0);
            let paper = r.paper.as_ref();
            rec.push(opt(r.accuracy(), 2));
            rec.push(opt(r.accuracy_sd(), 2));
            rec.push(if r.train.is_empty() { String::new() } else { r.train.len().to_string() });
            rec.push(opt(r.paper_accuracy(), 2));
            rec.push(opt(r.accuracy().zip(r.paper_accuracy()).map(|(a, p)| a - p), 2));
            rec.push(paper.and_then(|p| p.megabytes).map_or(String::new(), |v| v.to_string()));
            rec.push(paper.and_then(|p| p.rounds).map_or(String::new(), |v| v.to_string()));
            rec.push(paper.and_then(|p| p.seconds).map_or(String::new(), |v| v.to_string()));
            rec.push(sim.map_or(String::new(), |s| s.samples.to_string()));
            rec.push(sim.map_or(String::new(), |s| s.inputs.clone()));
            rec.push(opt(sim.map(|s| 100.0 * s.agreement), 1));
            rec.push(opt(sim.and_then(|s| s.accuracy).map(|a| 100.0 * a), 1));
            rec.push(sim.map_or(String::new(), |s| s.exact.to_string()));
            rec.push(sim.map_or(String::new(), |s| s.max_error_lsb.to_string()));
            rec.push(opt(sim.map(|s| s.seconds_per_image), 3));
            rec.push(train.map_or(String::new(), |t| t.epochs.to_string()));
            // Per training: the mean over the seeds.
            rec.push(opt((!r.train.is_empty()).then(|| r.train.iter().map(|t| t.0.train_seconds).sum::<f64>() / r.train.len() as f64), 1));
            rec.push(train.map_or(String::new(), |t| t.train_images.to_string()));
            rec.push(r.seed.to_string());
            rec.push(r.train.iter().map(|t| t.1.as_str()).collect::<Vec<_>>().join(" "));
            rec.push(r.sim.as_ref().map_or(String::new(), |s| s.1.clone()));
            rec
        })
        .collect();
    store::write_atomic(path, &csv_bytes(header, records))
}

/// `pareto.csv`: for each cost metric, the points on its front, cheapest first.
pub fn write_pareto(path: &Path, fronts: &[Front], rows: &[Row]) -> Result<()> {
    let header = ["metric", "point", "cost", "accuracy_pct", "accuracy_source", "relus", "bytes", "rounds"].map(String::from).to_vec();
    let records = fronts
        .iter()
        .flat_map(|f| {
            f.points.iter().map(move |&i| {
                let r = &rows[i];
                vec![
                    f.metric.id(),
                    r.name.clone(),
                    format!("{}", r.cost(&f.metric)),
                    opt(f.source.of(r), 2),
                    f.source.as_str().into(),
                    r.relus.to_string(),
                    r.bytes.to_string(),
                    r.rounds.to_string(),
                ]
            })
        })
        .collect();
    store::write_atomic(path, &csv_bytes(header, records))
}

/// `skipped.csv`: the points that are not valid plans for the network, and why.
pub fn write_skipped(path: &Path, skipped: &[(String, String)]) -> Result<()> {
    let records = skipped.iter().map(|(n, why)| vec![n.clone(), why.clone()]).collect();
    store::write_atomic(path, &csv_bytes(vec!["point".into(), "reason".into()], records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, relus: u64, bytes: u64, acc: Option<f64>) -> Row {
        Row {
            name: name.into(),
            source: Source::Named,
            parameters: String::new(),
            plan: String::new(),
            clusters: ClusterSource::None,
            paper: None,
            layers: vec![],
            relus,
            rounds: 10,
            rounds_depth: 10,
            bytes,
            bytes_by_party: [0; 3],
            offline_bytes: 0,
            saved_bytes_pct: 0.0,
            seconds: vec![],
            seconds_total: vec![],
            seconds_apart: vec![],
            seed: 1,
            train: acc
                .map(|a| {
                    (
                        TrainRecord {
                            test_accuracy: a,
                            train_seconds: 1.0,
                            epochs: 1,
                            images_per_second: 1.0,
                            train_images: 1,
                            test_images: 1,
                            threads: 1,
                        },
                        "k".into(),
                    )
                })
                .into_iter()
                .collect(),
            sim: None,
        }
    }

    #[test]
    fn the_front_keeps_only_points_nothing_beats() {
        let rows = vec![
            row("a", 100, 50, Some(0.80)),
            row("b", 10, 10, Some(0.70)),
            row("c", 50, 60, Some(0.75)),
            row("d", 50, 5, Some(0.60)),   // cheapest in bytes
            row("e", 200, 70, Some(0.80)), // as accurate as a, dearer
            row("f", 20, 20, None),        // not trained: on no front
        ];
        let fronts = pareto(&rows, &[]);
        let by = |id: &str| {
            fronts.iter().find(|f| f.metric.id() == id).unwrap().points.iter().map(|&i| rows[i].name.as_str()).collect::<Vec<_>>()
        };
        assert_eq!(by("relus"), ["b", "c", "a"]);
        assert_eq!(by("bytes"), ["d", "b", "a"]);
        // Equal rounds everywhere: only the most accurate (first of equals) remains.
        assert_eq!(by("rounds"), ["a"]);
        assert_eq!(fronts[0].source, AccuracySource::Measured);
    }

    #[test]
    fn without_training_the_front_uses_the_papers_accuracy() {
        let mut rows = vec![row("a", 100, 50, None), row("b", 10, 10, None)];
        assert!(pareto(&rows, &[]).is_empty());
        rows[0].paper = Some(Paper { accuracy: Some(83.0), ..Default::default() });
        let f = pareto(&rows, &[]);
        assert_eq!(f[0].source, AccuracySource::Paper);
        assert_eq!(f[0].points, [0]);
    }

    #[test]
    fn several_seeds_give_the_mean_and_the_sample_standard_deviation() {
        let mut r = row("a", 1, 1, Some(0.80));
        assert_eq!((r.accuracy(), r.accuracy_sd()), (Some(80.0), None));
        let mut second = r.train[0].clone();
        second.0.test_accuracy = 0.90;
        r.train.push(second);
        assert!((r.accuracy().unwrap() - 85.0).abs() < 1e-9);
        // sqrt(((80 - 85)^2 + (90 - 85)^2) / (2 - 1))
        assert!((r.accuracy_sd().unwrap() - 50f64.sqrt()).abs() < 1e-9);
        assert!(r.summary().contains("test 85.00% +- 7.07 (2 seeds)"), "{}", r.summary());
        assert_eq!(row("b", 1, 1, None).accuracy(), None);
    }
}
