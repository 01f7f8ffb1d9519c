//! `explore train`: train a network under a plan on a real dataset with the embedded
//! loop; one line per epoch, a safetensors checkpoint.

use crate::error::Result;
use crate::graph::sharing::Planned;
use crate::report::{self, Format, Table};
use crate::spec::train::{Distill, Optimizer, TrainConfig};
use crate::train::{Start, TrainReport};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Architecture TOML.
    pub arch: PathBuf,
    /// ReLU-sharing plan TOML; without one, regular ReLU everywhere.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Dataset directory: IDX files (Fashion-MNIST) or image class folders
    /// (train/<class>/*.jpg, test/...). Default: $EXPLORE_DATA, then
    /// /usr/share/datasets/fashion-mnist for 28x28 grey networks.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Training settings TOML (epochs, batch_size, optimizer, lr, momentum,
    /// weight_decay, schedule, step_epochs, step_gamma, augment, seed); the flags
    /// below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Passes over the training images [default: 10, or the config's].
    #[arg(long, value_parser = super::positive)]
    pub epochs: Option<usize>,
    /// Images per minibatch [default: 128, or the config's].
    #[arg(long, value_parser = super::positive)]
    pub batch_size: Option<usize>,
    /// Learning rate at the start of the schedule [default: 0.05, or the config's].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimizer [default: sgd (with momentum 0.9), or the config's].
    #[arg(long, value_enum)]
    pub optimizer: Option<Optimizer>,
    /// Seed of the initial weights, the shuffling and the augmentation [default: 1,
    /// or the config's]; the same seed gives the same weights on any thread count.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Random crops and flips (3-channel inputs).
    #[arg(long)]
    pub augment: bool,
    /// Use at most this many images of each split (quick runs).
    #[arg(long, value_parser = super::positive)]
    pub limit: Option<usize>,
    /// Continue from the weights of this checkpoint (of the same plan).
    #[arg(long, conflicts_with = "init")]
    pub resume: Option<PathBuf>,
    /// Start from the weights of a checkpoint of the same architecture under any plan
    /// (fine-tuning a plan from the trained original): every conv, linear and
    /// batchnorm tensor transfers; learned decision weights start from their defaults.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Distil from the --init checkpoint (the trained original) at this temperature:
    /// the loss mixes the labels' cross-entropy with the divergence from the
    /// original's softened outputs [default: labels only, or the config's].
    #[arg(long, requires = "init")]
    pub distill: Option<f64>,
    /// Weight of the original's outputs in the distillation loss, 0 to 1 [default: 0.5].
    #[arg(long, requires = "distill")]
    pub distill_weight: Option<f64>,
    /// Where to write the checkpoint (safetensors).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Final report: a short text, the per-epoch log as CSV or Markdown, or JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub limits: super::limits::MemoryArgs,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = settings(&args)?;
    let limits = args.limits.settings()?;
    let (arch, plan, data) = (&args.arch, args.plan.as_deref(), args.data.as_deref());
    let start = match (&args.resume, &args.init) {
        (Some(c), _) => Start::Resume(c),
        (None, Some(c)) => Start::Init(c),
        (None, None) => Start::Random,
    };
    let report = train_files(arch, plan, data, args.limit, start, args.out.as_deref(), &cfg, &limits)?;
    super::emit(None, &report::render(args.format, &report, || text(&report), || epoch_table(&report)))
}

/// The config file (or the defaults) with the flags over it, checked.
fn settings(args: &Args) -> Result<TrainConfig> {
    let mut cfg = match &args.config {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::default(),
    };
    cfg.epochs = args.epochs.unwrap_or(cfg.epochs);
    cfg.batch_size = args.batch_size.unwrap_or(cfg.batch_size);
    cfg.lr = args.lr.unwrap_or(cfg.lr);
    cfg.seed = args.seed.unwrap_or(cfg.seed);
    cfg.augment |= args.augment;
    cfg.optimizer = args.optimizer.unwrap_or(cfg.optimizer);
    if let Some(temperature) = args.distill {
        cfg.distill = Some(Distill { temperature, weight: args.distill_weight.unwrap_or(0.5) });
    }
    cfg.check(args.config.as_deref().unwrap_or(Path::new("(flags)")))?;
    Ok(cfg)
}

/// Loads an architecture, plan and dataset and trains: a progress bar per epoch and
/// one log line per epoch on standard error, the checkpoint written to `out`.
#[allow(clippy::too_many_arguments)]
pub fn train_files(
    arch: &Path,
    plan: Option<&Path>,
    data_dir: Option<&Path>,
    limit: Option<usize>,
    start: Start,
    out: Option<&Path>,
    cfg: &TrainConfig,
    limits: &super::limits::Limits,
) -> Result<TrainReport> {
    let (network, plan) = super::load_network_and_plan(arch, plan)?;
    limits.check_training(arch, &network, limit)?;
    let planned = Planned::new(&network, &plan)?;
    let dir = super::locate_data(arch, &network, data_dir)?;
    let dataset = crate::data::load(&dir, limit, network.input_dims())?;
    crate::train::train_planned(&planned, &dataset, start, out, cfg, indicatif::ProgressBar::new(0))
}

fn text(r: &TrainReport) -> String {
    format!(
        "{} under plan \"{}\": test accuracy {:.2}% after {} epochs, {:.1} s, {:.0} images/s on {} threads\n",
        r.architecture,
        r.plan,
        100.0 * r.test_accuracy,
        r.epochs,
        r.train_seconds,
        r.images_per_second,
        r.threads
    )
}

fn epoch_table(r: &TrainReport) -> Table {
    let mut t = Table::new(&["epoch", "loss", "train_accuracy", "test_accuracy", "lr", "seconds"], 0);
    for e in &r.history {
        t.push(vec![
            e.epoch.to_string(),
            e.loss.to_string(),
            e.train_accuracy.to_string(),
            e.test_accuracy.to_string(),
            e.lr.to_string(),
            e.seconds.to_string(),
        ]);
    }
    t
}
