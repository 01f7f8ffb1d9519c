//! The `explore` command line.

use clap::{Parser, Subcommand, ValueEnum};
use explore::cost::profile;
use explore::cost::protocol::{ConvMasking, ProtocolTable, SECURENN_TOML};
use explore::error::{Error, Result};
use explore::report;
use std::path::PathBuf;
use std::process::ExitCode;

// Secure inference allocates and frees large share vectors layer after layer;
// mimalloc, told to keep freed memory (`allocator`), reuses it instead of faulting
// fresh pages in each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "explore", version, about = "What ReLU sharing saves in secure inference (rounds, bandwidth, time), and what it costs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Price a network, optionally under a ReLU-sharing plan, with the analytic
    /// SecureNN cost model: ReLUs, rounds and bits per layer and party.
    Cost {
        /// Architecture TOML (e.g. architectures/cifar10.toml).
        arch: PathBuf,
        /// ReLU-sharing plan TOML (e.g. architectures/plans/cifar10/uniform-32x32.toml);
        /// without one, every ReLU layer keeps regular ReLU. With one, the saving
        /// against the original network is reported too.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Output format: an aligned table for people, CSV or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Protocol table TOML pricing each action (default: the built-in SecureNN
        /// table; print it with `explore protocol`).
        #[arg(long)]
        protocol: Option<PathBuf>,
        /// Override the table's convolution masking: im2col opens the im2col matrix
        /// (SecureNN, the paper), tensor opens the input tensor.
        #[arg(long, value_enum)]
        conv_masking: Option<Masking>,
        /// TOML with [profile.NAME] tables (bandwidth_mbps, rtt_ms) that override or
        /// add to the built-in lan (10 Gbit/s, 0.2 ms) and wan (100 Mbit/s, 40 ms).
        #[arg(long)]
        profiles: Option<PathBuf>,
        /// Write the output to this file instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Explore a design space of ReLU-sharing plans (the tool's main job): price every
    /// point, run it through the secure simulation and, with data, train it; write
    /// output/<sweep>/results.csv, pareto.csv and plots. Finished points are stored
    /// and never recomputed: an interrupted sweep resumes, a rerun is instant.
    Sweep {
        /// Sweep TOML (e.g. sweeps/cifar.toml).
        sweep: PathBuf,
        /// Skip training: cost and secure simulation only (accuracy columns empty).
        #[arg(long)]
        no_train: bool,
        /// Training epochs per point, overriding the sweep's [train] epochs.
        #[arg(long, value_parser = positive)]
        epochs: Option<usize>,
        /// Dataset directory (else $EXPLORE_DATA); without data nothing is trained.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Secure inferences per point, overriding the sweep's [simulate] samples (0 skips).
        #[arg(long)]
        samples: Option<usize>,
        /// Train on at most this many images per split (quick looks).
        #[arg(long, value_parser = positive)]
        limit: Option<usize>,
        /// Folder the sweep's folder goes in.
        #[arg(long, default_value = "output")]
        out_dir: PathBuf,
        /// No progress bars or per-point lines on standard error.
        #[arg(long, short)]
        quiet: bool,
        /// Only the sweep's named points (the paper's rows), not its grids.
        #[arg(long)]
        named_only: bool,
        /// Only the points whose name contains TEXT (repeat or comma-separate for several:
        /// --only patch/ --only uniform).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Run secure inference under SecureNN, message by message, on generated inputs:
    /// measured rounds, bits and time per layer beside the cost model's prediction, the
    /// error against plaintext fixed point, and class agreement with float.
    Simulate {
        /// Architecture TOML.
        arch: PathBuf,
        /// ReLU-sharing plan TOML; without one, regular ReLU everywhere.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Number of inputs to run (each a fresh secure inference).
        #[arg(long, default_value_t = 1, value_parser = positive)]
        samples: usize,
        /// Trained weights (a checkpoint written by `explore train`); default: seeded
        /// random He-normal weights.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Dataset directory whose test images are the inputs (as for `explore train`);
        /// default: generated N(0, 1) inputs.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Seed of the weights, inputs and every party's randomness.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fractional bits of the fixed-point encoding.
        #[arg(long, default_value_t = 13, value_parser = clap::value_parser!(u32).range(1..=30))]
        frac_bits: u32,
        /// Override the protocol table's convolution masking.
        #[arg(long, value_enum)]
        conv_masking: Option<Masking>,
        /// Protocol table the prediction is priced with (default: built-in SecureNN); one
        /// with a `[compute]` section (`explore calibrate`) also predicts each layer's time.
        #[arg(long)]
        protocol: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = SimFormat::Table)]
        format: SimFormat,
        /// Also write the first sample's messages to this CSV file: one row per layer,
        /// round, sender, receiver, element type and protocol, with count and bits.
        #[arg(long)]
        messages: Option<PathBuf>,
        /// Write the output to this file instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Train a network (under a ReLU-sharing plan) on a real dataset with the embedded
    /// training loop; print one line per epoch and write a safetensors checkpoint.
    Train {
        /// Architecture TOML.
        arch: PathBuf,
        /// ReLU-sharing plan TOML; without one, regular ReLU everywhere.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Dataset directory: IDX files (Fashion-MNIST) or image class folders
        /// (train/<class>/*.jpg, test/...). Default: $EXPLORE_DATA, then
        /// /usr/share/datasets/fashion-mnist for 28x28 grey networks.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Training settings TOML (epochs, batch_size, optimizer, lr, momentum,
        /// weight_decay, schedule, step_epochs, step_gamma, augment, seed); the flags
        /// below override it.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_parser = positive)]
        epochs: Option<usize>,
        #[arg(long, value_parser = positive)]
        batch_size: Option<usize>,
        /// Learning rate.
        #[arg(long)]
        lr: Option<f64>,
        #[arg(long, value_enum)]
        optimizer: Option<Opt>,
        #[arg(long)]
        seed: Option<u64>,
        /// Random crops and flips (3-channel inputs).
        #[arg(long)]
        augment: bool,
        /// Use at most this many images of each split (quick runs).
        #[arg(long, value_parser = positive)]
        limit: Option<usize>,
        /// Start from the weights of this checkpoint.
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Where to write the checkpoint (safetensors).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Final report: a short text, or JSON.
        #[arg(long, value_enum, default_value_t = SimFormat::Table)]
        format: SimFormat,
    },
    /// Record activations of a trained network on training images: the binary ReLU
    /// pattern of chosen layers (for clustering) and every layer's total variation
    /// (the paper's Figure 3).
    Record {
        #[command(flatten)]
        trained: Trained,
        /// ReLU layers whose patterns to record, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        layers: Vec<String>,
        /// Number of training images.
        #[arg(long, default_value_t = 1000, value_parser = positive)]
        samples: usize,
        /// Write the patterns here (safetensors, one u8 tensor `<layer>.pattern` of
        /// shape [images, ...layer shape] per layer).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// The total-variation table: aligned text, CSV or JSON.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Also draw the total variation per layer (the paper's Figure 3) to
        /// FIGURE.png and FIGURE.svg.
        #[arg(long)]
        figure: Option<PathBuf>,
    },
    /// Cluster a trained network's ReLU decisions into shared groups (the paper's
    /// agglomerative clustering by Hamming distance, per channel and window): writes
    /// the assignment a `clusters` plan reads, a cluster map PNG per layer, and
    /// optionally the plan itself.
    Cluster {
        #[command(flatten)]
        trained: Trained,
        /// ReLU layers to cluster, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        layers: Vec<String>,
        /// Window to cluster: `full` (the whole map of a channel), `8` or `8x4`.
        #[arg(long, default_value = "full", value_parser = window)]
        window: explore::spec::plan::Window,
        /// Clusters per window.
        #[arg(long, value_parser = positive)]
        clusters: usize,
        /// Windows at the map's edge: partial (smaller windows) or merge (joined to
        /// their neighbour).
        #[arg(long, value_enum, default_value_t = EdgeArg::Partial)]
        edge: EdgeArg,
        /// Training images whose decisions are clustered.
        #[arg(long, default_value_t = 2000, value_parser = positive)]
        samples: usize,
        /// The assignment file to write (safetensors, one u32 [C, H, W] tensor per
        /// layer); cluster maps go beside it as <stem>-<layer>.png.
        #[arg(long, short)]
        out: PathBuf,
        /// Also write a plan TOML that shares each layer by these clusters.
        #[arg(long)]
        plan_out: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = SimFormat::Table)]
        format: SimFormat,
    },
    /// Check everything the tool claims: the cost model against the simulator for
    /// every shipped network and plan (exactly), the simulator against plaintext
    /// fixed point, and the model against the paper's Table 8. Exits 1 on any failure.
    Validate {
        /// Protocol table to validate (default: the built-in SecureNN table).
        #[arg(long)]
        protocol: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = SimFormat::Table)]
        format: SimFormat,
    },
    /// Price a network and plan under several protocols (SecureNN, Falcon, CrypTen
    /// with a dealer, or your own tables): rounds, MB offline/online/total, estimated
    /// seconds per profile, and the plan's saving under each protocol.
    Compare {
        /// Architecture TOML.
        arch: PathBuf,
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Protocols, comma-separated: built-in names (securenn, falcon, crypten-ttp, delphi)
        /// or paths to protocol tables. Default: all built-in.
        #[arg(long, value_delimiter = ',')]
        protocols: Vec<String>,
        /// Network profiles TOML (as for `explore cost`).
        #[arg(long)]
        profiles: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = SimFormat::Table)]
        format: SimFormat,
    },
    /// Print the built-in SecureNN protocol table, to copy and edit for --protocol.
    Protocol,
    /// Measure the simulator's local work per action on this machine and print the
    /// SecureNN table (or --protocol FILE) with a `[compute]` section: estimated
    /// seconds then add computation to rounds and bits.
    Calibrate {
        /// Table to extend (default: the built-in SecureNN table).
        #[arg(long)]
        protocol: Option<PathBuf>,
        /// Threads to measure on (default 1: one image's work among many).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Repetitions per measurement; the median is kept.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Opt {
    Sgd,
    Adam,
}

#[derive(Clone, Copy, ValueEnum)]
enum SimFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Masking {
    Im2col,
    Tensor,
}

/// A count of at least 1.
/// A trained network and its training images: what `record` and `cluster` read.
#[derive(clap::Args)]
struct Trained {
    /// Architecture TOML.
    arch: PathBuf,
    /// The plan the weights were trained under (default: regular ReLU).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Trained weights (checkpoint from `explore train`).
    #[arg(long)]
    weights: PathBuf,
    /// Dataset directory (as for `explore train`); its training images are used.
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum EdgeArg {
    Partial,
    Merge,
}

fn window(s: &str) -> std::result::Result<explore::spec::plan::Window, String> {
    use explore::spec::plan::Window;
    if s == "full" {
        return Ok(Window::Full);
    }
    let side = |t: &str| t.parse::<usize>().ok().filter(|&v| v > 0);
    match s.split_once('x') {
        None => side(s).map(|k| Window::Size(k, k)),
        Some((h, w)) => side(h).zip(side(w)).map(|(h, w)| Window::Size(h, w)),
    }
    .ok_or_else(|| format!("expected full, a side (8) or HxW (8x4), got {s}"))
}

fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl From<Masking> for ConvMasking {
    fn from(m: Masking) -> ConvMasking {
        match m {
            Masking::Im2col => ConvMasking::Im2col,
            Masking::Tensor => ConvMasking::Tensor,
        }
    }
}

fn main() -> ExitCode {
    explore::allocator::keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Cost { arch, plan, format, protocol, conv_masking, profiles, out } => {
            let table = ProtocolTable::load_or_builtin(protocol.as_deref())?;
            let profiles = match &profiles {
                Some(p) => profile::load(p)?,
                None => profile::builtin(),
            };
            let masking = conv_masking.map(Masking::into);
            let (priced, saving) = explore::cost_files(&arch, plan.as_deref(), &table, masking, &profiles)?;
            let text = match format {
                Format::Table => report::table(&priced, saving.as_ref()),
                Format::Csv => report::csv(&priced),
                Format::Json => report::json(&priced, saving.as_ref()) + "\n",
            };
            emit(out, &text)
        }
        Command::Sweep { sweep, no_train, epochs, data, samples, limit, out_dir, quiet, named_only, only } => {
            let spec = explore::spec::SweepSpec::load(&sweep)?;
            let opts = explore::sweep::Options {
                no_train,
                epochs,
                data,
                samples,
                train_images: limit,
                out_root: out_dir,
                quiet,
                named_only,
                only,
            };
            let outcome = explore::sweep::run(&spec, &opts)?;
            let profiles: Vec<String> = outcome.rows.first().map(|r| r.seconds.iter().map(|s| s.0.clone()).collect()).unwrap_or_default();
            let mut text = explore::sweep::results::table(&outcome.rows, &profiles);
            for (name, why) in &outcome.skipped {
                text += &format!("skipped {name}: {why}\n");
            }
            text += &format!(
                "{} points ({} skipped); {} stages computed, {} reused; wrote {}/results.csv, pareto.csv, skipped.csv and {} plot files\n",
                outcome.rows.len(),
                outcome.skipped.len(),
                outcome.computed,
                outcome.reused,
                outcome.dir.display(),
                outcome.plots.len()
            );
            if let Some(n) = &outcome.plot_note {
                text += &format!("note: {n}\n");
            }
            if let Some(n) = &outcome.note {
                text += &format!("note: {n}\n");
            }
            emit(None, &text)
        }
        Command::Simulate { arch, plan, samples, weights, data, seed, frac_bits, conv_masking, protocol, format, messages, out } => {
            let table = ProtocolTable::load_or_builtin(protocol.as_deref())?;
            let opts = explore::simulate::Options { samples, seed, frac: frac_bits, masking: conv_masking.map(Masking::into) };
            // The bar draws on standard error, and only on a terminal.
            let bar = indicatif::ProgressBar::new(0);
            // Opened first, so that a path that cannot be written fails before the run.
            let messages_file = match &messages {
                Some(path) => Some((std::fs::File::create(path).map_err(|source| Error::Write { path: path.clone(), source })?, path)),
                None => None,
            };
            let report = explore::simulate_files(&arch, plan.as_deref(), weights.as_deref(), data.as_deref(), &table, &opts, &bar)?;
            if let Some((mut file, path)) = messages_file {
                use std::io::Write;
                let csv = explore::simulate::messages_csv(&report);
                file.write_all(csv.as_bytes()).map_err(|source| Error::Write { path: path.clone(), source })?;
            }
            let text = match format {
                SimFormat::Table => explore::simulate::table(&report),
                // Plain data: serialization cannot fail.
                SimFormat::Json => serde_json::to_string_pretty(&report).expect("report serializes") + "\n",
            };
            emit(out, &text)
        }
        Command::Train { arch, plan, data, config, epochs, batch_size, lr, optimizer, seed, augment, limit, resume, out, format } => {
            let mut cfg = match &config {
                Some(p) => explore::train::TrainConfig::load(p)?,
                None => explore::train::TrainConfig::default(),
            };
            cfg.epochs = epochs.unwrap_or(cfg.epochs);
            cfg.batch_size = batch_size.unwrap_or(cfg.batch_size);
            cfg.lr = lr.unwrap_or(cfg.lr);
            cfg.seed = seed.unwrap_or(cfg.seed);
            cfg.augment |= augment;
            if let Some(o) = optimizer {
                cfg.optimizer = match o {
                    Opt::Sgd => explore::train::Optimizer::Sgd,
                    Opt::Adam => explore::train::Optimizer::Adam,
                };
            }
            cfg.check(config.as_deref().unwrap_or(std::path::Path::new("(flags)")))?;
            let report = explore::train_files(&arch, plan.as_deref(), data.as_deref(), limit, resume.as_deref(), out.as_deref(), &cfg)?;
            let text = match format {
                SimFormat::Table => format!(
                    "{} under plan \"{}\": test accuracy {:.2}% after {} epochs, {:.1} s, {:.0} images/s on {} threads\n",
                    report.architecture,
                    report.plan,
                    100.0 * report.test_accuracy,
                    report.epochs,
                    report.train_seconds,
                    report.images_per_second,
                    report.threads
                ),
                // Plain data: serialization cannot fail.
                SimFormat::Json => serde_json::to_string_pretty(&report).expect("report serializes") + "\n",
            };
            emit(None, &text)
        }
        Command::Record { trained: Trained { arch, plan, weights, data }, layers, samples, out, format, figure } => {
            let tv = explore::record_files(&arch, plan.as_deref(), &weights, data.as_deref(), &layers, samples, out.as_deref())?;
            if let Some(stem) = &figure {
                let network = explore::spec::ArchSpec::load(&arch)?.name;
                let fig = explore::plot::variation_figure(&network, samples, &tv);
                explore::plot::write(&fig, stem).map_err(|m| Error::Write { path: stem.clone(), source: std::io::Error::other(m) })?;
            }
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&tv).expect("plain data serializes") + "\n",
                Format::Csv => {
                    let mut t = String::from("layer,op,total_variation,per_neighbour_pair\n");
                    for v in &tv {
                        t += &format!("{},{},{},{}\n", v.layer, v.op, v.total_variation, v.per_neighbour_pair);
                    }
                    t
                }
                Format::Table => {
                    let mut t = format!("{:<10} {:<8} {:>16} {:>18}\n", "layer", "op", "total variation", "per neighbour pair");
                    for v in &tv {
                        t += &format!("{:<10} {:<8} {:>16.2} {:>18.4}\n", v.layer, v.op, v.total_variation, v.per_neighbour_pair);
                    }
                    t
                }
            };
            emit(None, &text)
        }
        Command::Cluster {
            trained: Trained { arch, plan, weights, data },
            layers,
            window,
            clusters,
            edge,
            samples,
            out,
            plan_out,
            format,
        } => {
            let req = explore::ClusterRequest {
                arch: &arch,
                plan: plan.as_deref(),
                weights: &weights,
                data_dir: data.as_deref(),
                layers: &layers,
                window,
                edge: match edge {
                    EdgeArg::Partial => explore::spec::Edge::Partial,
                    EdgeArg::Merge => explore::spec::Edge::Merge,
                },
                clusters,
                samples,
                out: &out,
                plan_out: plan_out.as_deref(),
            };
            let r = explore::cluster_files(&req)?;
            let text = match format {
                SimFormat::Json => serde_json::to_string_pretty(&r).expect("plain data serializes") + "\n",
                SimFormat::Table => {
                    let header: Vec<String> =
                        ["layer", "shape", "decisions/channel", "largest cluster", "seconds", "map"].map(String::from).to_vec();
                    let rows: Vec<Vec<String>> = r
                        .layers
                        .iter()
                        .map(|l| {
                            vec![
                                l.layer.clone(),
                                format!("{:?}", l.shape),
                                l.decisions_per_channel.to_string(),
                                format!("{:.1}%", 100.0 * l.largest_cluster_share),
                                format!("{:.2}", l.seconds),
                                l.map.clone(),
                            ]
                        })
                        .collect();
                    let mut t = format!(
                        "{}: ReLU decisions of {} training images recorded in {:.1} s ({} threads)\n",
                        r.architecture, r.images, r.record_seconds, r.threads
                    );
                    t += &(report::columns(&header, &rows, 2).join("\n") + "\n");
                    t += &format!("wrote {}", r.assignment);
                    if let Some(p) = &r.plan {
                        t += &format!(" and {p}");
                    }
                    t + "\n"
                }
            };
            emit(None, &text)
        }
        Command::Validate { protocol, format } => {
            let table = ProtocolTable::load_or_builtin(protocol.as_deref())?;
            let checks = explore::validate::validate(std::path::Path::new("."), &table)?;
            let text = match format {
                SimFormat::Table => explore::validate::table(&checks),
                SimFormat::Json => serde_json::to_string_pretty(&checks).expect("plain data serializes") + "\n",
            };
            emit(None, &text)?;
            if checks.iter().any(|c| !c.pass) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Compare { arch, plan, protocols, profiles, format } => {
            let names: Vec<String> = if protocols.is_empty() {
                explore::cost::protocol::BUILTIN.iter().map(|(n, _)| n.to_string()).collect()
            } else {
                protocols
            };
            let tables = names
                .iter()
                .map(|n| match ProtocolTable::builtin(n) {
                    Some(t) => Ok(t),
                    None => ProtocolTable::load(std::path::Path::new(n)),
                })
                .collect::<Result<Vec<_>>>()?;
            let profiles = match &profiles {
                Some(p) => profile::load(p)?,
                None => profile::builtin(),
            };
            let (network, plan) = explore::load_network_and_plan(&arch, plan.as_deref())?;
            let original = explore::spec::PlanSpec::original();
            let planned = explore::sharing::Planned::new(&network, &plan)?;
            let rows = explore::compare::compare(&planned, &explore::sharing::Planned::new(&network, &original)?, &tables, &profiles);
            let text = match format {
                SimFormat::Table => explore::compare::table(&network.name, &plan.name, &rows),
                SimFormat::Json => serde_json::to_string_pretty(&rows).expect("plain data serializes") + "\n",
            };
            emit(None, &text)
        }
        Command::Protocol => emit(None, SECURENN_TOML),
        Command::Calibrate { protocol, threads, repeats, out } => {
            let text = match &protocol {
                Some(path) => explore::spec::read_text(path)?,
                None => SECURENN_TOML.to_string(),
            };
            let name = protocol.as_deref().unwrap_or(std::path::Path::new("protocols/securenn.toml"));
            if ProtocolTable::parse(name, &text)?.compute.is_some() {
                return Err(Error::invalid(name, Some("[compute]".into()), "the table already has one; remove it to measure again"));
            }
            // Fails only when the OS refuses to start threads: nothing to recover.
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().expect("a thread pool starts");
            let compute = pool.install(|| explore::calibrate::measure(repeats));
            emit(out, &(text + &explore::calibrate::section(&compute, threads.max(1), repeats)))
        }
    }
}

fn emit(out: Option<PathBuf>, text: &str) -> Result<()> {
    match out {
        Some(path) => std::fs::write(&path, text).map_err(|source| Error::Write { path, source }),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
