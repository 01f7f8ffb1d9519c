//! `explore sweep`: every design point of a sweep file priced, simulated and (with
//! data) trained, into results.csv, pareto.csv, skipped.csv and the plots.

use crate::error::Result;
use crate::plot::{self, Figure, Mark, Series};
use crate::report::{self, Format, Table};
use crate::spec::SweepSpec;
use crate::sweep::results::{AccuracySource, Front, Metric, Row, Source, metrics};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Sweep TOML (e.g. sweeps/cifar.toml).
    pub sweep: PathBuf,
    /// Skip training: cost and secure simulation only (accuracy columns empty).
    #[arg(long)]
    pub no_train: bool,
    /// Training epochs per point, overriding the sweep's [train] epochs.
    #[arg(long, value_parser = super::positive)]
    pub epochs: Option<usize>,
    /// Dataset directory (else $EXPLORE_DATA); without data nothing is trained.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Secure inferences per point, overriding the sweep's [simulate] samples (0 skips).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Train on at most this many images per split (quick looks).
    #[arg(long, value_parser = super::positive)]
    pub limit: Option<usize>,
    /// Folder the sweep's folder goes in.
    #[arg(long, default_value = "output")]
    pub out_dir: PathBuf,
    /// The sweep's folder itself (its store of finished stages and its outputs),
    /// instead of OUT_DIR/<name>: a shared path when shards run on a cluster.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Run only slice I of N of the points (I from 0), or `slurm` for this task of a
    /// Slurm job array; writes no results.csv: `explore merge` does, once all ran.
    #[arg(long, value_name = "I/N|slurm", value_parser = shard)]
    pub shard: Option<crate::sweep::shard::Shard>,
    /// No progress bars or per-point lines on standard error.
    #[arg(long, short)]
    pub quiet: bool,
    /// Only the sweep's named points (the paper's rows), not its grids.
    #[arg(long)]
    pub named_only: bool,
    /// Only the points whose name contains TEXT (repeat or comma-separate for several:
    /// --only patch/ --only uniform).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// The summary printed at the end: aligned text, or the per-point table as CSV,
    /// Markdown or JSON (results.csv is written in any case).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub limits: super::limits::MemoryArgs,
}

pub fn run(args: Args) -> Result<()> {
    let spec = SweepSpec::load(&args.sweep)?;
    let points = args.limits.settings()?.check_sweep(&spec)?;
    if !args.quiet {
        // Before the grids are expanded, so that a large sweep says so at once.
        eprintln!("sweep \"{}\": {points} design points ({} named, {} grids)", spec.name, spec.points.len(), spec.grids.len());
    }
    let opts = crate::sweep::Options {
        no_train: args.no_train,
        epochs: args.epochs,
        data: args.data,
        samples: args.samples,
        train_images: args.limit,
        out_root: args.out_dir,
        quiet: args.quiet,
        named_only: args.named_only,
        only: args.only,
        shard: args.shard,
        store: args.store,
        store_only: false,
        partial: false,
    };
    let outcome = crate::sweep::run(&spec, &opts)?;
    if let Some(sh) = outcome.shard {
        let text = format!(
            "shard {sh} of sweep \"{}\": {} points; {} stages computed, {} reused; stored in {} (when every shard has run: explore merge {} -o DIR)\n",
            spec.name,
            outcome.rows.len(),
            outcome.computed,
            outcome.reused,
            outcome.dir.display(),
            outcome.dir.display()
        );
        return super::emit(None, &text);
    }
    report(&spec.name, &outcome, args.format, "")
}

/// Writes the plots of a finished sweep (or merge) and prints its summary, the
/// points skipped and the notes; `extra` is added to the closing line.
pub fn report(sweep: &str, outcome: &crate::sweep::Outcome, format: Format, extra: &str) -> Result<()> {
    let (plots, plot_note) = match sweep_plots(&outcome.dir, sweep, outcome) {
        Ok(p) => (p, None),
        Err(e) => (vec![], Some(e)),
    };
    let table = || summary(&outcome.rows, &outcome.profiles);
    let text = || {
        let mut text = table().text();
        for (name, why) in &outcome.skipped {
            text += &format!("skipped {name}: {why}\n");
        }
        text += &format!(
            "{} points ({} skipped); {} stages computed, {} reused{extra}; wrote {}/results.csv, pareto.csv, skipped.csv and {} plot files\n",
            outcome.rows.len(),
            outcome.skipped.len(),
            outcome.computed,
            outcome.reused,
            outcome.dir.display(),
            plots.len()
        );
        if let Some(n) = flip_note(&outcome.rows) {
            text += &format!("note: {n}\n");
        }
        for n in plot_note.iter().chain(&outcome.note) {
            text += &format!("note: {n}\n");
        }
        text
    };
    // JSON: the summary's rows as objects (results.csv has every column).
    let summary_table = table();
    super::emit(None, &report::render(format, &summary_table.records(), text, table))
}

/// `--shard`: `I/N` or `slurm` (this task's place in its Slurm job array).
fn shard(s: &str) -> std::result::Result<crate::sweep::shard::Shard, String> {
    crate::sweep::shard::Shard::parse(s, |k| std::env::var(k).ok())
}

/// Why secure and float classes differ on some points, when they do: truncation
/// flips of shared decisions (expected, most with random weights), or faults.
fn flip_note(rows: &[Row]) -> Option<String> {
    let sims: Vec<_> = rows.iter().filter_map(|r| r.sim.as_ref().map(|(s, _)| s)).collect();
    let (flips, unexplained) = sims.iter().filter_map(|s| s.flips).fold((0, 0), |(f, u), (a, b)| (f + a, u + b));
    if unexplained > 0 {
        return Some(format!(
            "{unexplained} shared decision(s) differ from fixed point by more than truncation explains: a protocol fault"
        ));
    }
    let disagree = sims.iter().filter(|s| s.agreement < 1.0).count();
    if disagree == 0 {
        return None;
    }
    let random = sims.iter().any(|s| s.weights.starts_with("random"));
    Some(format!(
        "{disagree} point(s) have a secure class that differs from float: {flips} shared decision(s) flipped, each with its fixed-point score within the truncation bound of zero, and the flipped groups' activations make secure_max_error_lsb large{}",
        if random {
            "; with random weights (no dataset) the logits lie close together, so one flip can change the class (trained weights: README, Training)"
        } else {
            ""
        }
    ))
}

/// The summary printed at the end of a sweep: one line per point.
fn summary(rows: &[Row], profiles: &[String]) -> Table {
    let mut header: Vec<String> = ["point", "ReLUs/channel", "ReLUs", "rounds", "MB", "saved"].map(String::from).to_vec();
    header.extend(profiles.iter().map(|p| format!("{p} s")));
    // With several seeds: the mean and the sample standard deviation.
    header.extend(["secure", "test %", "paper %"].map(String::from));
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let per: Vec<String> = r
                .layers
                .iter()
                .map(|l| {
                    let v = l.relus as f64 / l.channels.max(1) as f64;
                    if v.fract() == 0.0 { format!("{v}") } else { format!("{v:.1}") }
                })
                .collect();
            let mut cells = vec![
                r.name.clone(),
                per.join(", "),
                r.relus.to_string(),
                r.rounds.to_string(),
                format!("{:.3}", r.bytes as f64 / 1e6),
                format!("{:.1}%", r.saved_bytes_pct),
            ];
            cells.extend(r.seconds.iter().map(|(_, s)| format!("{s:.3}")));
            cells.push(r.sim.as_ref().map_or("-".into(), |(s, _)| {
                format!("{}/{}{}", (s.agreement * s.samples as f64).round(), s.samples, if s.exact { "" } else { " !" })
            }));
            cells.push(match (r.accuracy(), r.accuracy_sd()) {
                (Some(a), Some(sd)) => format!("{a:.2} +- {sd:.2}"),
                (Some(a), None) => format!("{a:.2}"),
                _ => "-".into(),
            });
            cells.push(r.paper_accuracy().map_or("-".into(), |a| format!("{a:.2}")));
            cells
        })
        .collect();
    Table { header, rows: body, left: 2 }
}

/// The figures of a sweep: accuracy against each cost (when any accuracy is known)
/// and each cost against the ReLU count. Returns the files written.
fn sweep_plots(dir: &Path, sweep: &str, o: &crate::sweep::Outcome) -> std::result::Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for fig in sweep_figures(sweep, &o.network, &o.rows, &o.fronts, &o.profiles, &o.quoted) {
        let stem = dir.join("plots").join(&fig.0);
        files.extend(plot::write(&fig.1, &stem)?);
    }
    Ok(files)
}

/// The sweep's figures and their file stems, without drawing them.
/// `quoted`: published figures of other work, drawn apart from the measured points
/// on the accuracy plots against ReLU count and communication.
pub fn sweep_figures(
    sweep: &str,
    network: &str,
    rows: &[Row],
    fronts: &[Front],
    profiles: &[String],
    quoted: &[crate::spec::frontier::Quoted],
) -> Vec<(String, Figure)> {
    let mut figs = Vec::new();
    let named_label = "named configurations";
    for front in fronts {
        let m = &front.metric;
        let source = front.source;
        let acc = |r: &Row| source.of(r);
        let mut series = Vec::new();
        // Each series with its error bars: the accuracy's standard deviation over the
        // seeds (none with one seed, or with the paper's accuracy).
        let series_of = |label: &str, mark: Mark, rows: Vec<&Row>| {
            let picked: Vec<&Row> = rows.into_iter().filter(|r| acc(r).is_some()).collect();
            let points = picked.iter().filter_map(|r| Some((r.cost(m), acc(r)?, r.name.clone()))).collect();
            let errors = match source {
                AccuracySource::Measured => picked.iter().map(|r| r.accuracy_sd().unwrap_or(0.0)).collect(),
                AccuracySource::Paper => Vec::new(),
            };
            Series::new(label, mark, points).with_errors(errors)
        };
        let grid: Vec<&Row> = rows.iter().filter(|r| matches!(r.source, Source::Grid(_))).collect();
        if grid.iter().any(|r| acc(r).is_some()) {
            series.push(series_of("grid points", Mark::Dot, grid));
        }
        let named: Vec<&Row> = rows.iter().filter(|r| r.source == Source::Named).collect();
        if named.iter().any(|r| acc(r).is_some()) {
            let label = if source == AccuracySource::Paper { "named configurations (paper's accuracy at our cost)" } else { named_label };
            series.push(series_of(label, Mark::Labelled, named));
        }
        // Searched plans, cheapest first and joined: the frontier the search draws.
        let mut searched: Vec<&Row> = rows.iter().filter(|r| r.source == Source::Search).collect();
        searched.sort_by(|a, b| a.cost(m).total_cmp(&b.cost(m)));
        if searched.iter().any(|r| acc(r).is_some()) {
            series.push(series_of("searched under budgets", Mark::Line, searched));
        }
        // The front is over the mean accuracy (with several seeds).
        let front_label = if rows.iter().any(|r| r.train.len() > 1) { "Pareto front (mean over seeds)" } else { "Pareto front" };
        series.push(Series::new(
            front_label,
            Mark::Front,
            front.points.iter().map(|&i| (rows[i].cost(m), acc(&rows[i]).unwrap_or(f64::NAN), rows[i].name.clone())).collect(),
        ));
        if source == AccuracySource::Measured {
            // The paper's accuracy for the same plan, at the paper's own cost where its
            // Table 8 gives one, else at ours.
            let published: Vec<_> = rows
                .iter()
                .filter_map(|r| {
                    let p = r.paper.as_ref()?;
                    let x = match m {
                        Metric::Bytes => p.megabytes.map(|mb| mb * 1e6),
                        Metric::Rounds => p.rounds.map(|v| v as f64),
                        _ => None,
                    };
                    Some((x.unwrap_or(r.cost(m)), p.accuracy?, r.name.clone()))
                })
                .collect();
            if !published.is_empty() {
                series.push(Series::new("paper (Tables 5-8)", Mark::Published, published));
            }
        }
        // Other work as published (its own network, its own accounting).
        let others: Vec<(f64, f64, String)> = quoted
            .iter()
            .filter_map(|q| {
                let x = match m {
                    Metric::Relus => q.relus.map(|v| v as f64),
                    Metric::Bytes => q.megabytes.map(|mb| mb * 1e6),
                    _ => None,
                }?;
                Some((x, q.accuracy_pct, q.method.clone()))
            })
            .collect();
        if !others.is_empty() {
            series.push(Series::new("published (frontier file)", Mark::Quoted, others));
        }
        let what = match source {
            AccuracySource::Paper => "paper's test accuracy (%)",
            _ if rows.iter().any(|r| r.train.len() > 1) => "test accuracy (%), mean and sd over seeds",
            _ => "test accuracy (%)",
        };
        figs.push((
            format!("accuracy-vs-{}", m.id()),
            Figure {
                title: format!("{network}, sweep {sweep}: accuracy against {}", short(m)),
                x_label: m.label(),
                y_label: what.into(),
                x_log: *m != Metric::Rounds,
                y_log: false,
                series,
            },
        ));
    }
    for m in metrics(profiles).into_iter().filter(|m| *m != Metric::Relus) {
        let pick = |keep: &dyn Fn(&Source) -> bool| -> Vec<(f64, f64, String)> {
            let mut v: Vec<_> =
                rows.iter().filter(|r| keep(&r.source)).map(|r| (r.relus.max(1) as f64, r.cost(&m), r.name.clone())).collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        let mut series = Vec::new();
        for (label, mark, keep) in [
            ("grid points", Mark::Dot, &(|s: &Source| matches!(s, Source::Grid(_))) as &dyn Fn(&Source) -> bool),
            (named_label, Mark::Labelled, &|s: &Source| *s == Source::Named),
            ("searched under budgets", Mark::Line, &|s: &Source| *s == Source::Search),
        ] {
            let points = pick(keep);
            if !points.is_empty() {
                series.push(Series::new(label, mark, points));
            }
        }
        figs.push((
            format!("{}-vs-relus", m.id()),
            Figure {
                title: format!("{network}, sweep {sweep}: {} against ReLU count", short(&m)),
                x_label: Metric::Relus.label(),
                y_label: m.label(),
                x_log: true,
                y_log: m != Metric::Rounds,
                series,
            },
        ));
    }
    figs
}

fn short(m: &Metric) -> String {
    match m {
        Metric::Relus => "ReLU count".into(),
        Metric::Bytes => "communication".into(),
        Metric::Rounds => "rounds".into(),
        Metric::Seconds(p) => format!("{p} time"),
    }
}
