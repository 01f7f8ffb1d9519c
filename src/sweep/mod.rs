//! `explore sweep`: every design point of a sweep file through the stages cost ->
//! training -> secure simulation, each finished stage stored under `output/<sweep>/`
//! by a key of everything that determines it, then the tables and plots.
//!
//! Points run side by side (one rayon task each) as well as parallel inside (training
//! over the chunks of each batch, the simulation over its samples): on this 2-core
//! machine two 1-thread trainings side by side train 1.14x more images per second
//! than one 2-thread training, 1.13x and 1.17x in two runs (README, Sweeps). Results do not depend on it: each
//! stage is deterministic whatever the thread count, and rows keep the sweep's order.

pub mod merge;
pub mod results;
pub mod shard;
pub mod store;

use crate::cost;
use crate::error::{Error, Result};
use crate::graph::Network;
use crate::graph::sharing::{self, Planned};
use crate::spec::plan::Window;
use crate::spec::profile;
use crate::spec::protocol::ProtocolTable;
use crate::spec::sweep::{Paper, Parent, SweepSpec};
use crate::spec::train::TrainConfig;
use crate::spec::{ArchSpec, PlanSpec};
use crate::train::Start;
use crate::{data, simulate};
use rayon::prelude::*;
use results::{ClusterSource, LayerRelus, Row, SimRecord, Source, TrainRecord};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Training images whose ReLU decisions a sweep clusters (as `explore cluster`'s default).
const CLUSTER_IMAGES: usize = 2000;

/// Bumped when a stage's stored result would differ for the same inputs (a change to
/// the training loop or the simulator that the other parts of a key cannot see).
const STAGE_VERSION: &str = concat!("explore ", env!("CARGO_PKG_VERSION"), " stages 1");

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Skip training (accuracy columns stay empty).
    pub no_train: bool,
    pub epochs: Option<usize>,
    pub data: Option<PathBuf>,
    /// Secure inferences per point, overriding the sweep's `[simulate] samples`.
    pub samples: Option<usize>,
    pub train_images: Option<usize>,
    /// Where `<sweep name>/` goes (`output` by default).
    pub out_root: PathBuf,
    /// No progress bars (tests, logs).
    pub quiet: bool,
    /// Only the named points (the paper's rows), not the grids.
    pub named_only: bool,
    /// Only points whose name contains one of these (all when empty).
    pub only: Vec<String>,
    /// Only this slice of the points; no results.csv (a merge writes it).
    pub shard: Option<shard::Shard>,
    /// The sweep's folder (its store and outputs), instead of `out_root/<name>`.
    pub store: Option<PathBuf>,
    /// Compute nothing: every stage comes from the store (a merge). Points with a
    /// stage missing are an error naming them, or with `partial` left out.
    pub store_only: bool,
    pub partial: bool,
}

/// What a sweep did, for the CLI's summary.
#[derive(Debug)]
pub struct Outcome {
    pub dir: PathBuf,
    pub rows: Vec<Row>,
    /// Point name and why it was skipped.
    pub skipped: Vec<Skipped>,
    /// Stages run now, and stages found in the store.
    pub computed: usize,
    pub reused: usize,
    /// Set when no dataset was found: how to add one.
    pub note: Option<String>,
    /// The Pareto fronts of `rows` (also in pareto.csv).
    pub fronts: Vec<results::Front>,
    /// The network's name and the cost profiles' names, for the plots.
    pub network: String,
    pub profiles: Vec<String>,
    /// The slice this run computed, when sharded (then no results files are written).
    pub shard: Option<shard::Shard>,
    /// Published figures of the sweep's dataset to draw beside its points (`frontier`).
    pub quoted: Vec<crate::spec::frontier::Quoted>,
}

/// A point left out: its name and why.
pub type Skipped = (String, String);

/// A design point before pricing.
struct Candidate {
    name: String,
    source: Source,
    parameters: String,
    paper: Option<Paper>,
    /// For a searched point, the original until the search has run.
    plan: PlanSpec,
    /// A searched point's budgets (`[search]`).
    search: Option<Vec<crate::search::options::Budget>>,
}

/// Bytes a sweep of `points` design points holds before and after its runs: each
/// point's plan (a few entries per ReLU layer), its cost report (a few numbers per
/// layer) and its row. Measured per point, with a margin, in the README.
pub fn memory_estimate(network: &Network, points: u64) -> u64 {
    const PER_POINT: u64 = 8 << 10;
    const PER_POINT_LAYER: u64 = 1 << 10;
    let per_point = PER_POINT + PER_POINT_LAYER * network.order.len() as u64;
    points.saturating_mul(per_point)
}

pub fn run(spec: &SweepSpec, opts: &Options) -> Result<Outcome> {
    let arch_text = crate::spec::read_text(&spec.architecture)?;
    let network = Network::build(&ArchSpec::load(&spec.architecture)?)?;
    let table = match ProtocolTable::builtin(&spec.protocol) {
        Some(t) => t,
        None => ProtocolTable::load(Path::new(&spec.protocol))?,
    };
    let profiles = profile::merge(&spec.path, spec.profiles.clone())?;
    let relu_names: Vec<String> = sharing::relu_layers(&network).map(|n| network.node(n).name.clone()).collect();
    // Searched points' budgets, read before anything runs: a bad one stops the sweep.
    let searched: Vec<(String, Vec<crate::search::options::Budget>)> = match &spec.search {
        None => Vec::new(),
        Some(s) => s
            .budgets
            .iter()
            .map(|text| {
                let budgets = text
                    .split('&')
                    .map(|b| crate::search::options::Budget::parse(b, &profiles))
                    .collect::<Result<Vec<_>>>()
                    // The sweep file is where the budget was written: name it and the key.
                    .map_err(|e| Error::invalid(&spec.path, Some("[search] key \"budgets\"".into()), e.to_string()))?;
                let name = format!("search {}", budgets.iter().map(|b| b.text.as_str()).collect::<Vec<_>>().join(" & "));
                Ok((name, budgets))
            })
            .collect::<Result<_>>()?,
    };

    // A spinner while the grids expand and a bar while each point is checked against
    // the network: a large grid shows progress from its first second.
    let setup = if opts.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
    setup.set_message("expanding the grids");
    setup.enable_steady_tick(std::time::Duration::from_millis(200));
    let (mut candidates, mut skipped) = candidates(spec, &relu_names, searched)?;
    if opts.named_only {
        candidates.retain(|c| c.source == Source::Named);
    }
    if !opts.only.is_empty() {
        candidates.retain(|c| opts.only.iter().any(|o| c.name.contains(o.as_str())));
    }
    if opts.named_only || !opts.only.is_empty() {
        skipped.retain(|(name, _)| !opts.named_only && opts.only.iter().any(|o| name.contains(o.as_str())));
    }
    // Points whose plan does not fit the network are reported and skipped.
    let mut valid = Vec::new();
    setup.set_length(candidates.len() as u64);
    setup.set_style(
        indicatif::ProgressStyle::with_template("checking design points [{bar:30}] {pos}/{len} {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    for c in candidates {
        match Planned::new(&network, &c.plan) {
            Ok(_) => valid.push(c),
            Err(e) => skipped.push((c.name, e.to_string())),
        }
        setup.inc(1);
    }
    setup.finish_and_clear();

    let mut cfg = spec.train.clone();
    if let Some(e) = opts.epochs {
        cfg.epochs = e;
    }
    let samples = opts.samples.unwrap_or(spec.simulate.samples);
    let train_images = opts.train_images.or(spec.train_images);
    let input_shape = network.node(network.input).output.0.clone();
    let data_dir = data::locate(opts.data.as_deref(), &input_shape);
    let mut note = match (&data_dir, opts.no_train) {
        (None, false) => Some(format!(
            "no {} data found: accuracy columns are empty; add --data DIR or EXPLORE_DATA=DIR (see README, Datasets)",
            spec.dataset.as_deref().unwrap_or("training")
        )),
        _ => None,
    };
    // Say which weights the untrained points' secure inferences ran.
    if (data_dir.is_none() || opts.no_train) && samples > 0 {
        let ran = match &network.trained {
            Some(t) => format!(
                "secure inferences ran the shipped trained original {} (under each plan: the same weights, shared decisions at their defaults) on {}",
                t.weights.display(),
                t.test_images.as_ref().map_or("generated inputs".into(), |d| format!("the test images in {}", d.display()))
            ),
            None => {
                format!("secure inferences ran seeded random weights on generated inputs (no trained model ships with {})", network.name)
            }
        };
        note = Some(match note {
            Some(n) => format!("{n}; {ran}"),
            None => ran,
        });
    }
    let training = data_dir.is_some() && !opts.no_train;
    if !training {
        // A search measures the trained original on training images: nothing to search from.
        let why = "a searched point needs the trained original and training data (run with --data, without --no-train)";
        skipped.extend(valid.iter().filter(|c| c.search.is_some()).map(|c| (c.name.clone(), why.to_string())));
        valid.retain(|c| c.search.is_none());
    }
    // Identifies the data by where it is and how much of it is used; loading it just
    // to hash it would make a rerun slow.
    let data_id = match &data_dir {
        Some(d) => format!("{} limit {train_images:?}", std::fs::canonicalize(d).unwrap_or(d.clone()).display()),
        None => String::new(),
    };

    let dir = opts.store.clone().unwrap_or_else(|| opts.out_root.join(&spec.name));
    for stage in ["train", "simulate", "clusters", "search"] {
        store::remove_temporaries(&dir.join(stage));
    }
    // A shard computes its slice of the points, split by their known work: a training
    // (or fine-tune) epoch outweighs any number of secure samples.
    if let Some(sh) = opts.shard {
        let original = format!("{:?}", PlanSpec::original().relu);
        let weights: Vec<u64> = valid
            .iter()
            .map(|c| {
                let epochs = match &spec.warm {
                    _ if !training => 0,
                    // The original of a warm start is shared by every shard.
                    Some(_) if c.search.is_none() && format!("{:?}", c.plan.relu) == original => 0,
                    Some(_) => spec.finetune_epochs(&c.name).unwrap_or(cfg.epochs),
                    None => cfg.epochs,
                };
                1000 * (epochs * spec.seeds) as u64 + samples as u64 + 1
            })
            .collect();
        let of = shard::split(&weights, sh.count);
        let mut i = 0;
        valid.retain(|_| {
            i += 1;
            of[i - 1] == sh.index
        });
    }
    // What a shard ran, for the merge: written now (unfinished) and at the end.
    let mut shard_record = match opts.shard {
        None => None,
        Some(sh) => Some(shard::Record {
            sweep: spec.name.clone(),
            file: std::fs::canonicalize(&spec.path).unwrap_or(spec.path.clone()),
            given: spec.path.clone(),
            digest: store::text_digest(crate::spec::read_text(&spec.path)?.as_bytes()),
            settings: shard::Settings {
                no_train: opts.no_train,
                epochs: opts.epochs,
                data: data_dir.as_ref().map(|d| std::fs::canonicalize(d).unwrap_or(d.clone())),
                samples: opts.samples,
                train_images: opts.train_images,
                named_only: opts.named_only,
                only: opts.only.clone(),
            },
            shard: sh,
            points: valid.iter().map(|c| c.name.clone()).collect(),
            finished: false,
        }),
    };
    let record = |r: &Option<shard::Record>| match r {
        Some(r) => store::write_json(&shard::Record::path(&dir, r.shard), r),
        None => Ok(()),
    };
    record(&shard_record)?;
    let baseline_plan = PlanSpec::original();
    let ctx = Context {
        network: &network,
        arch_text,
        baseline: cost::price(&Planned::new(&network, &baseline_plan)?, &table, None, &profiles)?,
        table,
        profiles: profiles.clone(),
        cfg,
        samples,
        frac_bits: spec.simulate.frac_bits,
        training,
        data_dir,
        data_id,
        train_images,
        dir: dir.clone(),
        dataset: std::sync::Mutex::new(None),
        warm: spec.warm.clone(),
        finetune_epochs: spec.points.iter().filter_map(|p| Some((p.name.clone(), p.finetune_epochs?))).collect(),
        search: spec.search.clone(),
        parent: Mutex::new(Default::default()),
        seeds: spec.seeds,
        shipped: network.trained.as_ref().map(|t| store::file_digest(&t.weights)).transpose()?,
        shipped_images: simulate::Weights::Shipped.default_inputs(&network).map(store::folder_digest).transpose()?,
        store_only: opts.store_only,
        bars: Bars::new(valid.len(), opts.quiet),
        computed: AtomicUsize::new(0),
        reused: AtomicUsize::new(0),
    };
    // The original of a warm start first, once per seed, before the points run side by
    // side: they all wait for it anyway, and no point then holds its lock while rayon
    // runs another point's work on the same thread.
    if ctx.training && ctx.warm.is_some() && !opts.store_only && !valid.is_empty() {
        for i in 0..spec.seeds as u64 {
            ctx.parent("original", ctx.cfg.seed.wrapping_add(i))?;
        }
    }
    // One task per point; each point's training and simulation parallelise inside too,
    // and rayon's work stealing shares the cores between them. A merge finds every
    // stage in the store, or notes the point as missing.
    let results: Vec<Result<Row>> = valid.par_iter().with_max_len(1).map(|c| ctx.point(c)).collect();
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for (c, r) in valid.iter().zip(results) {
        match r {
            Ok(row) => rows.push(row),
            Err(Error::Missing { .. }) if opts.store_only => missing.push(c.name.clone()),
            Err(e) => return Err(e),
        }
    }
    let bars = &ctx.bars;
    let (computed, reused) = (ctx.computed.load(Ordering::Relaxed), ctx.reused.load(Ordering::Relaxed));
    bars.finish();
    if let Some(r) = shard_record.as_mut() {
        r.finished = true;
    }
    record(&shard_record)?;
    if !missing.is_empty() {
        if !opts.partial {
            return Err(Error::invalid(
                &dir,
                None,
                format!(
                    "{} of {} points are not in the store: {} (rerun the shards that hold them, or merge with --partial)",
                    missing.len(),
                    valid.len(),
                    missing.join(", ")
                ),
            ));
        }
        skipped.extend(missing.into_iter().map(|m| (m, "not in the store (merged with --partial)".to_string())));
    }

    let relu_columns: Vec<String> = relu_names.clone();
    let profile_names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
    let fronts = results::pareto(&rows, &profile_names);
    // A shard's rows are a slice: the merge writes the sweep's files.
    if opts.shard.is_none() {
        results::write_results(&dir.join("results.csv"), &rows, &relu_columns, &profile_names)?;
        results::write_pareto(&dir.join("pareto.csv"), &fronts, &rows)?;
        results::write_skipped(&dir.join("skipped.csv"), &skipped)?;
    }
    // Read before returning, so that a bad file is named even when nothing is drawn.
    let quoted = match &spec.frontier {
        Some(f) => crate::spec::frontier::load(f)?.into_iter().filter(|q| spec.dataset.as_deref() == Some(q.dataset.as_str())).collect(),
        None => Vec::new(),
    };
    Ok(Outcome {
        quoted,
        dir,
        rows,
        skipped,
        computed,
        reused,
        note,
        fronts,
        network: network.name.clone(),
        profiles: profile_names,
        shard: opts.shard,
    })
}

/// What every point of a run shares.
struct Context<'a> {
    network: &'a Network,
    arch_text: String,
    table: ProtocolTable,
    profiles: Vec<profile::Profile>,
    baseline: cost::CostReport,
    cfg: TrainConfig,
    samples: usize,
    frac_bits: u32,
    training: bool,
    data_dir: Option<PathBuf>,
    data_id: String,
    train_images: Option<usize>,
    dir: PathBuf,
    /// Loaded by the first point that trains, then shared.
    dataset: Mutex<Option<Arc<data::Dataset>>>,
    /// Fine-tuning settings of a warm-started sweep.
    warm: Option<crate::spec::sweep::Warm>,
    /// Named points' own fine-tuning epochs, where they have them.
    finetune_epochs: std::collections::BTreeMap<String, usize>,
    /// `[search]`, for searched points.
    search: Option<crate::spec::sweep::SearchSettings>,
    /// The trained original's store key and checkpoint per seed, once a point has
    /// needed it.
    parent: Mutex<std::collections::BTreeMap<u64, (String, TrainRecord, PathBuf)>>,
    /// Trainings per point (`seeds`).
    seeds: usize,
    /// The SHA-256 of the network's shipped original, when it has one, and of its
    /// shipped test images (`store::folder_digest`).
    shipped: Option<String>,
    shipped_images: Option<String>,
    /// Compute nothing (a merge): a stage not in the store is `Error::Missing`.
    store_only: bool,
    bars: Bars,
    computed: AtomicUsize,
    reused: AtomicUsize,
}

impl Context<'_> {
    fn dataset(&self) -> Result<Arc<data::Dataset>> {
        // A poisoned lock means another point panicked; the run is lost anyway.
        let mut slot = self.dataset.lock().expect("no point panicked");
        if let Some(ds) = slot.as_ref() {
            return Ok(ds.clone());
        }
        let path = self.data_dir.as_deref().expect("training implies a data folder");
        let shape = &self.network.node(self.network.input).output.0;
        let ds = Arc::new(self.bars.suspend(|| data::load(path, self.train_images, shape))?);
        *slot = Some(ds.clone());
        Ok(ds)
    }

    /// A stage's result: found in the store, or computed under a claim on its key, so
    /// that processes sharing the store (shards) never compute one key at once; a
    /// process that finds the key claimed waits for the result.
    fn stage<T>(
        &self,
        point: &str,
        what: &str,
        lock: &Path,
        found: impl Fn() -> Result<Option<T>>,
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let reuse = |r: T| {
            self.reused.fetch_add(1, Ordering::Relaxed);
            r
        };
        if let Some(r) = found()? {
            return Ok(reuse(r));
        }
        if self.store_only {
            return Err(Error::Missing { point: point.to_string(), stage: what.to_string() });
        }
        let waiting = |owner: &str| self.bars.start(point, &format!("waiting for {owner} ({what})"));
        let claim = store::claim(lock, || Ok(found()?.is_some()), waiting)?;
        if let store::Claimed::Done = claim {
            return found()?.map(reuse).ok_or_else(|| store::damaged(lock, "its result vanished after it was written"));
        }
        let r = compute()?;
        self.computed.fetch_add(1, Ordering::Relaxed);
        drop(claim);
        Ok(r)
    }

    /// A training stage under `key`: found in the store, or run from `start` and stored
    /// (checkpoint written to a temporary name, then renamed).
    #[allow(clippy::too_many_arguments)]
    fn train_stage(
        &self,
        point: &str,
        stage: &str,
        planned: &Planned,
        key: &str,
        cfg: &TrainConfig,
        start: crate::train::Start,
    ) -> Result<(TrainRecord, PathBuf)> {
        let dir = self.dir.join("train");
        let json = dir.join(format!("{key}.json"));
        let ckpt = dir.join(format!("{key}.safetensors"));
        let found = || -> Result<Option<(TrainRecord, PathBuf)>> {
            match store::read_json::<TrainRecord>(&json)? {
                Some(r) if ckpt.is_file() => {
                    store::check_safetensors(&ckpt)?;
                    Ok(Some((r, ckpt.clone())))
                }
                _ => Ok(None),
            }
        };
        self.stage(point, stage, &dir.join(format!("{key}.lock")), found, || {
            let ds = self.dataset()?;
            self.bars.start(point, stage);
            let tmp = store::temporary(&ckpt);
            std::fs::create_dir_all(&dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
            let report = crate::train::train_planned(planned, &ds, start, Some(&tmp), cfg, self.bars.stage_bar())?;
            std::fs::rename(&tmp, &ckpt).map_err(|source| Error::Write { path: ckpt.clone(), source })?;
            let record = TrainRecord::from(&report);
            store::write_json(&json, &record)?;
            Ok((record, ckpt.clone()))
        })
    }

    /// The trained original of a warm-started sweep (its store key and checkpoint):
    /// trained by the first point that needs it while the others wait, or, given as a
    /// checkpoint, evaluated once (a 0-epoch stage: its record holds the test accuracy).
    fn parent(&self, point: &str, seed: u64) -> Result<(String, TrainRecord, PathBuf)> {
        // A poisoned lock means another point panicked; the run is lost anyway.
        let mut slot = self.parent.lock().expect("no point panicked");
        let parent = self.warm.as_ref().map(|w| &w.parent);
        // A given checkpoint is every seed's parent.
        let seed = if matches!(parent, Some(Parent::Checkpoint(_))) { 0 } else { seed };
        if let Some(p) = slot.get(&seed) {
            return Ok(p.clone());
        }
        let original = PlanSpec::original();
        let planned = Planned::new(self.network, &original)?;
        let (key, (record, ckpt)) = match parent {
            Some(Parent::Checkpoint(file)) => {
                let cfg = TrainConfig { epochs: 0, distill: None, ..self.cfg.clone() };
                let key = store::key(&[STAGE_VERSION, "checkpoint", &self.arch_text, &store::file_digest(file)?, &self.data_id]);
                let stage = self.train_stage(point, "evaluating the original", &planned, &key, &cfg, Start::Resume(file))?;
                (key, stage)
            }
            _ => {
                let (key, record, ckpt) =
                    self.train_from_scratch(point, "training the original", &planned, &format!("{:?}", original.relu), seed)?;
                (key, (record, ckpt))
            }
        };
        slot.insert(seed, (key.clone(), record.clone(), ckpt.clone()));
        Ok((key, record, ckpt))
    }

    /// One training of a point with one seed: from scratch, or fine-tuned from the
    /// original of a warm-started sweep. Returns its record, store key and checkpoint.
    fn train_point(&self, point: &str, planned: &Planned, plan_id: &str, seed: u64) -> Result<(TrainRecord, String, PathBuf)> {
        let original = format!("{:?}", PlanSpec::original().relu);
        let (key, record, ckpt) = match &self.warm {
            // The original itself: trained (or evaluated) once, whichever point needs it first.
            Some(_) if plan_id == original => self.parent(point, seed)?,
            // Fine-tuned from the trained original; the key names the parent, so a
            // changed original retrains its children and nothing else.
            Some(ft) => {
                let (parent_key, _, parent_ckpt) = self.parent(point, seed)?;
                let cfg = TrainConfig {
                    epochs: self.finetune_epochs.get(point).copied().unwrap_or(ft.finetune_epochs),
                    lr: ft.finetune_lr.unwrap_or(self.cfg.lr),
                    augment: ft.finetune_augment.unwrap_or(self.cfg.augment),
                    optimizer: ft.finetune_optimizer.unwrap_or(self.cfg.optimizer),
                    seed,
                    ..self.cfg.clone()
                };
                let key = store::key(&[STAGE_VERSION, "finetune", &self.arch_text, plan_id, &config_id(&cfg), &self.data_id, &parent_key]);
                let (record, ckpt) = self.train_stage(point, "fine-tuning", planned, &key, &cfg, Start::Init(&parent_ckpt))?;
                (key, record, ckpt)
            }
            None => self.train_from_scratch(point, "training", planned, plan_id, seed)?,
        };
        Ok((record, key, ckpt))
    }

    /// A training from seeded random weights with `[train]` and `seed`: its store key,
    /// record and checkpoint. The original of a warm-started sweep and every point of
    /// a cold one train here, under the same key for the same plan and seed.
    fn train_from_scratch(
        &self,
        point: &str,
        stage: &str,
        planned: &Planned,
        plan_id: &str,
        seed: u64,
    ) -> Result<(String, TrainRecord, PathBuf)> {
        // Distillation is for fine-tunes only: a from-scratch training has no teacher.
        let cfg = TrainConfig { seed, distill: None, ..self.cfg.clone() };
        let key = store::key(&[STAGE_VERSION, "train", &self.arch_text, plan_id, &config_id(&cfg), &self.data_id]);
        let (record, ckpt) = self.train_stage(point, stage, planned, &key, &cfg, Start::Random)?;
        Ok((key, record, ckpt))
    }

    /// The plan with every `clusters` layer that has no assignment clustered from the
    /// trained original's ReLU decisions (on up to `CLUSTER_IMAGES` training images;
    /// the first seed's original; stored under a key of the original and the layers'
    /// settings), when this sweep fine-tunes from an original. Also says where the
    /// plan's clusters come from, for results.csv.
    fn with_clusters(&self, point: &str, plan: &PlanSpec) -> Result<(PlanSpec, ClusterSource)> {
        use crate::spec::plan::{Assignment, Grouping};
        let missing: Vec<(&String, Window, crate::spec::Edge, usize)> = plan
            .relu
            .iter()
            .filter_map(|(layer, p)| match &p.grouping {
                Grouping::Clusters { window, clusters, edge, assignment: None } => Some((layer, *window, *edge, *clusters)),
                _ => None,
            })
            .collect();
        let any = plan.relu.values().any(|p| matches!(p.grouping, Grouping::Clusters { .. }));
        if missing.is_empty() {
            return Ok((plan.clone(), if any { ClusterSource::File } else { ClusterSource::None }));
        }
        if !(self.training && self.warm.is_some()) {
            return Ok((plan.clone(), ClusterSource::StandIn));
        }
        let (parent_key, _, parent_ckpt) = self.parent(point, self.cfg.seed)?;
        let key = store::key(&[STAGE_VERSION, "clusters", &parent_key, &format!("{missing:?}"), &CLUSTER_IMAGES.to_string()]);
        let dir = self.dir.join("clusters");
        let file = dir.join(format!("{key}.safetensors"));
        let found = || -> Result<Option<()>> {
            if !file.is_file() {
                return Ok(None);
            }
            store::check_safetensors(&file).map(Some)
        };
        self.stage(point, "clusters", &dir.join(format!("{key}.lock")), found, || {
            self.bars.start(point, "clustering the original's decisions");
            let original = PlanSpec::original();
            let planned = Planned::new(self.network, &original)?;
            let (params, meta) = crate::infer::checkpoint::load(&parent_ckpt, &planned)?;
            let ds = self.dataset()?;
            let ds = crate::train::as_trained(&ds, &meta);
            let requests = missing
                .iter()
                .map(|&(layer, window, edge, clusters)| {
                    let node = self.network.find(layer).expect("the plan was checked against the network");
                    crate::train::cluster::Request { node, window, edge, clusters }
                })
                .collect::<Vec<_>>();
            let found = crate::train::cluster::assignments(&planned, &params, &ds.train, &requests, CLUSTER_IMAGES)
                .map_err(|m| Error::invalid(&self.network.path, Some(format!("point \"{point}\"")), m))?;
            let info = std::collections::HashMap::from([
                ("architecture".to_string(), self.network.name.clone()),
                ("weights".to_string(), parent_ckpt.display().to_string()),
                ("images".to_string(), CLUSTER_IMAGES.min(ds.train.len()).to_string()),
                ("method".to_string(), "single-linkage agglomerative, Hamming distance of ReLU decisions".to_string()),
            ]);
            std::fs::create_dir_all(&dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
            // Written under a temporary name and renamed: a reader never sees a part.
            let tmp = store::temporary(&file);
            Assignment::write(&tmp, &found, info).map_err(|source| Error::Write { path: file.clone(), source })?;
            std::fs::rename(&tmp, &file).map_err(|source| Error::Write { path: file.clone(), source })
        })?;
        let mut plan = plan.clone();
        for (layer, p) in plan.relu.iter_mut() {
            if let Grouping::Clusters { assignment: a @ None, .. } = &mut p.grouping {
                *a = Some(Assignment::load(&file, layer).map_err(|m| Error::invalid(&file, None, m))?);
            }
        }
        Ok((plan, ClusterSource::Original))
    }

    /// A searched point's plan: `explore search` under its budgets from the first
    /// seed's trained original, stored as plan TOML under a key of the original, the
    /// budgets and the search settings. The distortion pass, shared by every budget,
    /// is cached beside it.
    fn searched(&self, point: &str, budgets: &[crate::search::options::Budget]) -> Result<PlanSpec> {
        let settings = self.search.as_ref().expect("searched points come from [search]");
        let (parent_key, _, parent_ckpt) = self.parent(point, self.cfg.seed)?;
        let texts: Vec<&str> = budgets.iter().map(|b| b.text.as_str()).collect();
        let key = store::key(&[
            STAGE_VERSION,
            "search",
            &parent_key,
            &texts.join("&"),
            &format!("{settings:?}"),
            &format!("{:?}", self.table),
            &format!("{:?}", self.profiles),
        ]);
        let dir = self.dir.join("search");
        let file = dir.join(format!("{key}.toml"));
        let found = || -> Result<Option<PlanSpec>> {
            if !file.is_file() {
                return Ok(None);
            }
            // A damaged plan stops the run rather than being overwritten.
            PlanSpec::load(&file).map(Some).map_err(|e| store::damaged(&file, e.to_string()))
        };
        let mut plan = self.stage(point, "search", &dir.join(format!("{key}.lock")), found, || {
            self.bars.start(point, "searching a plan for its budget");
            let original = PlanSpec::original();
            let planned = Planned::new(self.network, &original)?;
            let (params, meta) = crate::infer::checkpoint::load_init(&parent_ckpt, &planned)?;
            let ds = self.dataset()?;
            let ds = crate::train::as_trained(&ds, &meta);
            let samples = settings.samples.min(ds.train.len());
            let req = crate::search::Request {
                network: self.network,
                params: &params,
                weights_digest: parent_key.clone(),
                images: &ds.train.images[..samples * ds.train.image_len()],
                samples,
                data_key: self.data_id.clone(),
                layers: &settings.layers,
                sides: &settings.sides,
                edge: settings.edge,
                decision: settings.decision().expect("checked when the sweep was read"),
                table: &self.table,
                budgets,
                cache: &dir,
                name: point.to_string(),
            };
            let outcome = crate::search::run(&req, &self.bars.stage_bar())?;
            let text = outcome.plan.to_toml().map_err(|e| Error::invalid(&file, None, format!("cannot write the plan: {e}")))?;
            std::fs::create_dir_all(&dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
            store::write_atomic(&file, text.as_bytes())?;
            PlanSpec::load(&file)
        })?;
        plan.name = point.to_string();
        Ok(plan)
    }

    /// One point through its stages: cost, then training and simulation unless stored.
    fn point(&self, c: &Candidate) -> Result<Row> {
        let network = self.network;
        let (plan, clusters) = match &c.search {
            Some(budgets) => (self.searched(&c.name, budgets)?, ClusterSource::None),
            None => self.with_clusters(&c.name, &c.plan)?,
        };
        // Checked when the points were chosen (clusters found here have the plan's counts).
        let planned = Planned::new(network, &plan)?;
        self.bars.start(&c.name, "cost");
        let priced = cost::price(&planned, &self.table, None, &self.profiles)?;
        let plan_id = format!("{:?}", plan.relu);
        let dir = &self.dir;

        // One training per seed; a stage that does not depend on the seed (the shipped
        // original, evaluated) counts once.
        let mut trained: Vec<(TrainRecord, String, PathBuf)> = Vec::new();
        if self.training {
            for i in 0..self.seeds as u64 {
                let t = self.train_point(&c.name, &planned, &plan_id, self.cfg.seed.wrapping_add(i))?;
                if !trained.iter().any(|(_, key, _)| *key == t.1) {
                    trained.push(t);
                }
            }
        }
        // The first seed's weights go through the secure simulation.
        let first = trained.first();

        let mut sim = None;
        if self.samples > 0 {
            // Each point its own protocol randomness (named after the point, unique in
            // the sweep): no two points share a mask stream; inputs stay the same.
            let run = u64::from_str_radix(&store::key(&["masks", &c.name])[..16], 16).expect("a key is hex");
            let sim_opts = simulate::Options {
                samples: self.samples,
                seed: self.cfg.seed,
                frac: self.frac_bits,
                fit_frac: false,
                masking: None,
                batch: 1,
                run,
            };
            // The prediction without the files it names: keys do not depend on paths.
            let unnamed = cost::CostReport { architecture_file: String::new(), plan_file: None, ..priced.clone() };
            let prediction = serde_json::to_string(&unnamed).expect("a cost report serialises");
            // Untrained points run the network's shipped original on its shipped test
            // images where it has them, else seeded random weights on generated inputs.
            let untrained = simulate::Weights::Shipped;
            let (weights, inputs) = match (first, &self.shipped) {
                (Some(t), _) => (t.1.clone(), self.data_id.clone()),
                // The shipped images by content: keys do not depend on where the checkout is.
                (None, Some(digest)) => (format!("shipped {digest}"), format!("{:?}", self.shipped_images)),
                (None, None) => (format!("random seed {}", self.cfg.seed), "generated".into()),
            };
            let key = store::key(&[
                STAGE_VERSION,
                "simulate",
                &self.arch_text,
                &plan_id,
                &prediction,
                // The options as keys have always spelled them (a sweep never fits
                // its fractional bits, so `fit_frac` is left out).
                &format!(
                    "Options {{ samples: {}, seed: {}, frac: {}, masking: {:?}, run: {} }}",
                    sim_opts.samples, sim_opts.seed, sim_opts.frac, sim_opts.masking, sim_opts.run
                ),
                &weights,
                &inputs,
            ]);
            let json = dir.join("simulate").join(format!("{key}.json"));
            let lock = dir.join("simulate").join(format!("{key}.lock"));
            let record = self.stage(
                &c.name,
                "secure simulation",
                &lock,
                || store::read_json::<SimRecord>(&json),
                || {
                    self.bars.start(&c.name, "secure simulation");
                    let (w, data) = match first {
                        Some(t) => (simulate::Weights::Trained(&t.2), self.data_dir.as_deref()),
                        None => (untrained, None),
                    };
                    let report = simulate::run_planned(&planned, w, data, &self.table, &sim_opts, &self.bars.stage_bar())?;
                    let record = SimRecord::from(&report);
                    store::write_json(&json, &record)?;
                    Ok(record)
                },
            )?;
            sim = Some((record, key));
        }

        let layers = sharing::relu_layers(network)
            .map(|n| {
                let layer = network.node(n);
                let channels = network.input_shape(n).chw().map_or(1, |(c, _, _)| c);
                let relus = priced.layers.iter().find(|l| l.name == layer.name).map_or(0, |l| l.relus);
                LayerRelus { name: layer.name.clone(), channels, relus }
            })
            .collect();
        let row = Row::new(
            c.name.clone(),
            c.source.clone(),
            c.parameters.clone(),
            plan.relu.iter().map(|(l, p)| format!("{l}: {p}")).collect::<Vec<_>>().join("; "),
            c.paper.clone(),
            layers,
            &priced,
            &self.baseline,
            self.cfg.seed,
            trained.into_iter().map(|(r, key, _)| (r, key)).collect(),
            sim,
        );
        let row = Row { clusters, ..row };
        self.bars.done(&c.name, &row.summary());
        Ok(row)
    }
}

/// A training configuration as it enters store keys.
fn config_id(cfg: &TrainConfig) -> String {
    // Plain numbers and strings: serialisation cannot fail.
    serde_json::to_string(cfg).expect("a config serialises")
}

/// Named points first, in file order, then each grid's points, then the searched ones.
fn candidates(
    spec: &SweepSpec,
    relu_names: &[String],
    searched: Vec<(String, Vec<crate::search::options::Budget>)>,
) -> Result<(Vec<Candidate>, Vec<Skipped>)> {
    let mut out: Vec<Candidate> = spec
        .points
        .iter()
        .map(|p| Candidate {
            name: p.name.clone(),
            source: Source::Named,
            parameters: String::new(),
            paper: p.paper.clone(),
            plan: p.plan.clone(),
            search: None,
        })
        .collect();
    let mut skipped = Vec::new();
    for grid in &spec.grids {
        for gp in grid.expand(&spec.path, relu_names)? {
            if out.iter().any(|c| c.name == gp.name) {
                return Err(Error::invalid(
                    &spec.path,
                    Some(format!("[[grid]] \"{}\"", grid.name)),
                    format!("a second point named \"{}\"", gp.name),
                ));
            }
            match gp.plan {
                Ok(plan) => out.push(Candidate {
                    name: gp.name,
                    source: Source::Grid(grid.name.clone()),
                    parameters: gp.parameters,
                    paper: None,
                    plan,
                    search: None,
                }),
                Err(reason) => skipped.push((gp.name, reason)),
            }
        }
    }
    for (name, budgets) in searched {
        if out.iter().any(|c| c.name == name) {
            return Err(Error::invalid(&spec.path, Some("[search] key \"budgets\"".into()), format!("a second point named \"{name}\"")));
        }
        let parameters = budgets.iter().map(|b| b.text.as_str()).collect::<Vec<_>>().join(" & ");
        out.push(Candidate { name, source: Source::Search, parameters, paper: None, plan: PlanSpec::original(), search: Some(budgets) });
    }
    Ok((out, skipped))
}

/// The sweep's progress: a bar of points with the points running and their stage,
/// and under it a bar per running point's current training epoch or secure samples.
struct Bars {
    multi: indicatif::MultiProgress,
    points: indicatif::ProgressBar,
    running: Mutex<Vec<(String, String)>>,
    quiet: bool,
}

impl Bars {
    fn new(total: usize, quiet: bool) -> Bars {
        let multi = indicatif::MultiProgress::new();
        if quiet {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let points = multi.add(indicatif::ProgressBar::new(total as u64));
        points.set_style(
            indicatif::ProgressStyle::with_template("points [{bar:30}] {pos}/{len} {elapsed} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        Bars { multi, points, running: Mutex::new(Vec::new()), quiet }
    }

    fn show(&self, running: &[(String, String)]) {
        self.points.set_message(running.iter().map(|(n, s)| format!("{n}: {s}")).collect::<Vec<_>>().join(", "));
    }

    fn start(&self, name: &str, stage: &str) {
        let mut running = self.running.lock().expect("no point panicked");
        match running.iter_mut().find(|(n, _)| n == name) {
            Some(r) => r.1 = stage.to_string(),
            None => running.push((name.to_string(), stage.to_string())),
        }
        self.show(&running);
    }

    /// A bar for a running point's stage (a training epoch, the secure samples),
    /// under the points' bar; the stage clears it when done.
    fn stage_bar(&self) -> indicatif::ProgressBar {
        self.multi.add(indicatif::ProgressBar::new(0))
    }

    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    /// One log line per finished point, also when the bars are not drawn.
    fn done(&self, name: &str, line: &str) {
        if !self.quiet {
            self.multi.suspend(|| eprintln!("{line}"));
        }
        let mut running = self.running.lock().expect("no point panicked");
        running.retain(|(n, _)| n != name);
        self.show(&running);
        self.points.inc(1);
    }

    fn finish(&self) {
        self.points.finish_and_clear();
    }
}
