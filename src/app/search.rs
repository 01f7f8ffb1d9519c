//! `explore search`: the per-channel plan of least measured distortion that fits
//! budgets in any priced unit; writes the plan (with what the search predicted) and,
//! with `--finetune-epochs`, fine-tunes it from the checkpoint and reports accuracy.

use crate::error::{Error, Result};
use crate::graph::sharing::Planned;
use crate::infer::checkpoint;
use crate::report::{self, Format, Table};
use crate::search::options::Budget;
use crate::search::{Outcome, Request};
use crate::spec::plan::{Decision, Edge, WeightVisibility};
use crate::spec::protocol::ProtocolTable;
use crate::spec::train::TrainConfig;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionArg {
    /// Learned decision weights, public (the paper's Table 5 plans).
    LearnedPublic,
    /// Learned decision weights, secret-shared (a product per group).
    LearnedSecret,
    Mean,
    Center,
}

#[derive(clap::Args)]
pub struct Args {
    /// Architecture TOML (the one the checkpoint was trained as, e.g.
    /// architectures/cifar10_bn.toml; batchnorm folds away and costs nothing).
    pub arch: PathBuf,
    /// Trained weights of the network without sharing (e.g.
    /// models/cifar10_bn-original.safetensors).
    #[arg(long)]
    pub weights: PathBuf,
    /// A limit, UNIT<=LIMIT: relus, mb (online), offline-mb, rounds, or PROFILE-s
    /// (seconds under a profile: lan-s, wan-s). Repeat for several.
    #[arg(long = "budget", required = true)]
    pub budgets: Vec<String>,
    /// The plan to write (TOML).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Dataset directory; a sample of its training images measures the distortion.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// ReLU layers to search, comma-separated [default: every ReLU layer on a map].
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Tile sides offered to each channel (1: regular ReLU; a side as long as the map:
    /// one decision per channel).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3, 4, 8, 16, 32], value_parser = super::positive)]
    pub sides: Vec<usize>,
    #[arg(long, value_enum, default_value_t = Edge::Partial)]
    pub edge: Edge,
    /// How each group decides.
    #[arg(long, value_enum, default_value_t = DecisionArg::LearnedPublic)]
    pub decision: DecisionArg,
    /// Training images that measure the distortion.
    #[arg(long, default_value_t = 256, value_parser = super::positive)]
    pub samples: usize,
    /// Protocol table TOML (default: the built-in SecureNN table).
    #[arg(long)]
    pub protocol: Option<PathBuf>,
    /// TOML with [profile.NAME] tables that add seconds units (NAME-s).
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Folder of cached distortion passes [default: .search-cache beside --out].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Name of the written plan [default: the file stem of --out].
    #[arg(long)]
    pub name: Option<String>,
    /// Fine-tune the searched plan from --weights for this many epochs and report
    /// its test accuracy (checkpoint beside the plan, .safetensors).
    #[arg(long, value_parser = super::positive)]
    pub finetune_epochs: Option<usize>,
    /// Training settings TOML for the fine-tuning (lr, batch_size, distill, ...).
    #[arg(long, requires = "finetune_epochs")]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub limits: super::limits::MemoryArgs,
}

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    outcome: &'a Outcome,
    plan_file: String,
    finetuned_test_accuracy_pct: Option<f64>,
    finetune_epochs: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    let table = ProtocolTable::load_or_builtin(args.protocol.as_deref())?;
    let profiles = super::cost::profiles_or_builtin(args.profiles.as_deref())?;
    let budgets: Vec<Budget> = args.budgets.iter().map(|b| Budget::parse(b, &profiles)).collect::<Result<_>>()?;
    let (network, _) = super::load_network_and_plan(&args.arch, None)?;
    let limits = args.limits.settings()?;
    limits.check_training(&args.arch, &network, Some(args.samples))?;
    let original = crate::spec::PlanSpec::original();
    let planned = Planned::new(&network, &original)?;
    // Decision weights of a shared plan are not in an original's checkpoint: only the
    // layers' weights are read (as a warm start reads them).
    let (params, meta) = checkpoint::load_init(&args.weights, &planned)?;
    let dir = super::locate_data(&args.arch, &network, args.data.as_deref())?;
    let stats = checkpoint::input_stats(&meta, network.input_dims()[0]);
    let dataset = crate::data::load_normalised(&dir, args.samples, network.input_dims(), stats)?;
    let samples = dataset.train.len().min(args.samples);
    let decision = match args.decision {
        DecisionArg::LearnedPublic => Decision::Learned { weights: WeightVisibility::Public, shared_across_channels: false },
        DecisionArg::LearnedSecret => Decision::Learned { weights: WeightVisibility::Secret, shared_across_channels: false },
        DecisionArg::Mean => Decision::Mean,
        DecisionArg::Center => Decision::Center,
    };
    let folder = args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let cache = args.cache.clone().unwrap_or_else(|| folder.join(".search-cache"));
    let name = args.name.clone().unwrap_or_else(|| args.out.file_stem().map_or("searched".into(), |s| s.to_string_lossy().into_owned()));
    let req = Request {
        network: &network,
        params: &params,
        weights_digest: crate::sweep::store::file_digest(&args.weights)?,
        images: &dataset.train.images[..samples * dataset.train.image_len()],
        samples,
        data_key: std::fs::canonicalize(&dir).unwrap_or(dir.clone()).display().to_string(),
        layers: &args.layers,
        sides: &args.sides,
        edge: args.edge,
        decision,
        table: &table,
        budgets: &budgets,
        cache: &cache,
        name,
    };
    let bar = if args.format == Format::Table { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("distortion {bar:30} {pos}/{len} options, {elapsed} (eta {eta})")
            .expect("the template is valid"),
    );
    let outcome = crate::search::run(&req, &bar)?;
    bar.finish_and_clear();
    let text = outcome.plan.to_toml().map_err(|e| Error::invalid(&args.out, None, format!("cannot write the plan: {e}")))?;
    super::emit(Some(&args.out), &text)?;
    let mut accuracy = None;
    if let Some(epochs) = args.finetune_epochs {
        let mut cfg = match &args.config {
            Some(p) => TrainConfig::load(p)?,
            None => TrainConfig::default(),
        };
        cfg.epochs = epochs;
        cfg.check(args.config.as_deref().unwrap_or(Path::new("(flags)")))?;
        let ckpt = args.out.with_extension("safetensors");
        let r = super::train::train_files(
            &args.arch,
            Some(&args.out),
            args.data.as_deref(),
            None,
            crate::train::Start::Init(&args.weights),
            Some(&ckpt),
            &cfg,
            &limits,
        )?;
        accuracy = Some(100.0 * r.test_accuracy);
    }
    let report = Report {
        outcome: &outcome,
        plan_file: args.out.display().to_string(),
        finetuned_test_accuracy_pct: accuracy,
        finetune_epochs: args.finetune_epochs,
    };
    super::emit(None, &report::render(args.format, &report, || text_report(&report), || layer_table(&outcome)))
}

fn layer_table(o: &Outcome) -> Table {
    let mut t = Table::new(&["layer", "decisions", "distortion", "channels by tile side"], 1);
    for l in &o.layers {
        let sides: Vec<String> = l.channels_by_side.iter().map(|(s, n)| format!("{s}x{s}: {n}")).collect();
        t.push(vec![l.layer.clone(), l.decisions.to_string(), format!("{:.5}", l.distortion), sides.join(", ")]);
    }
    t
}

fn text_report(r: &Report) -> String {
    let o = r.outcome;
    let mut s = format!("wrote {} (plan \"{}\")\n", r.plan_file, o.plan_name);
    s += &layer_table(o).text();
    for b in &o.budgets {
        s += &format!("budget {}: costs {:.6} (knapsack predicted {:.6})\n", b.budget, b.cost, b.predicted);
    }
    s += &format!("plan: {} ReLUs, {:.3} MB, {} rounds; summed distortion {:.5}", o.relus, o.megabytes, o.rounds, o.distortion);
    match o.duality_gap {
        Some(g) => s += &format!(", optimal within {g:.5} (Lagrangian)\n"),
        None => s += " (optimal on the discretised budgets)\n",
    }
    if !o.coarsened.is_empty() {
        s += &format!("discretised coarsely (costs rounded up): {}\n", o.coarsened.join(", "));
    }
    s += &format!(
        "distortion of every option on {} training images: {:.1} s{}; knapsack {:.2} s\n",
        o.distortion_images,
        o.distortion_seconds,
        if o.distortion_cached { format!(" when measured, read from {}", o.distortion_cache) } else { String::new() },
        o.knapsack_seconds
    );
    if let (Some(a), Some(e)) = (r.finetuned_test_accuracy_pct, r.finetune_epochs) {
        s += &format!("fine-tuned {e} epochs from the checkpoint: test accuracy {a:.2}%\n");
    }
    s
}
