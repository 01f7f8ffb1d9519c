//! `explore simulate`: secure inference under SecureNN, message by message, with the
//! measured rounds, bits and time per layer beside the cost model's prediction.

use crate::error::{Error, Result};
use crate::report::{self, Format, Table};
use crate::simulate::{Counts, Options, SimReport, Weights, messages_csv, run_planned};
use crate::spec::protocol::{ConvMasking, ProtocolTable};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Architecture TOML.
    pub arch: PathBuf,
    /// ReLU-sharing plan TOML; without one, regular ReLU everywhere.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Number of inputs to run (each a fresh secure inference, or each batch one).
    #[arg(long, default_value_t = 1, value_parser = super::positive)]
    pub samples: usize,
    /// Images per secure inference (SecureNN's batches): the weights are masked once
    /// per batch and every round is paid once; measured counts are checked against
    /// `explore cost --batch`. --samples must be a multiple.
    #[arg(long, default_value_t = 1, value_parser = super::cost::batch_size)]
    pub batch: u64,
    /// Trained weights of this plan (a checkpoint written by `explore train`); default:
    /// the network's shipped trained original (`[trained]` in its file) when present,
    /// else seeded random He-normal weights.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seeded random He-normal weights, even where the network ships trained ones.
    #[arg(long, conflicts_with = "weights")]
    pub random_weights: bool,
    /// Dataset directory whose test images are the inputs (as for `explore train`);
    /// default: the network's shipped test images with its shipped weights, else
    /// generated N(0, 1) inputs.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Seed of the weights, inputs and every party's randomness.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fractional bits of the fixed-point encoding; checked against the network's
    /// value range (values times 2^bits must stay far inside the 64-bit ring).
    /// Default: 13, or as many as the values leave room for when that is fewer.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=62))]
    pub frac_bits: Option<u32>,
    /// Override the protocol table's convolution masking.
    #[arg(long, value_enum)]
    pub conv_masking: Option<ConvMasking>,
    /// Protocol table the prediction is priced with (default: built-in SecureNN); one
    /// with a `[compute]` section (`explore calibrate`) also predicts each layer's time.
    #[arg(long)]
    pub protocol: Option<PathBuf>,
    /// Output format: an aligned table; the per-layer table as CSV or Markdown; JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write the first sample's messages to this CSV file: one row per layer,
    /// round, sender, receiver, element type and protocol, with count and bits.
    #[arg(long)]
    pub messages: Option<PathBuf>,
    /// Write the output to this file instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub limits: super::limits::MemoryArgs,
}

pub fn run(args: Args) -> Result<()> {
    let table = ProtocolTable::load_or_builtin(args.protocol.as_deref())?;
    let opts = Options {
        samples: args.samples,
        seed: args.seed,
        frac: args.frac_bits.unwrap_or(13),
        fit_frac: args.frac_bits.is_none(),
        masking: args.conv_masking,
        batch: args.batch as usize,
        run: 0,
    };
    if !args.samples.is_multiple_of(opts.batch) {
        return Err(Error::invalid(
            &args.arch,
            Some("--samples".into()),
            format!("{} is not a multiple of --batch {}: each secure inference runs a whole batch", args.samples, args.batch),
        ));
    }
    // Opened first, so that a path that cannot be written fails before the run.
    let messages_file = match &args.messages {
        Some(path) => Some((std::fs::File::create(path).map_err(|source| Error::Write { path: path.clone(), source })?, path)),
        None => None,
    };
    // The bar draws on standard error, and only on a terminal.
    let bar = indicatif::ProgressBar::new(0);
    let weights = match (&args.weights, args.random_weights) {
        (Some(w), _) => Weights::Trained(w),
        (None, true) => Weights::Random,
        (None, false) => Weights::Shipped,
    };
    let report =
        simulate_files(&args.arch, args.plan.as_deref(), weights, args.data.as_deref(), &table, &opts, &args.limits.settings()?, &bar)?;
    if let Some((mut file, path)) = messages_file {
        use std::io::Write;
        file.write_all(messages_csv(&report).as_bytes()).map_err(|source| Error::Write { path: path.clone(), source })?;
    }
    let text = report::render(args.format, &report, || text(&report), || layer_table(&report));
    super::emit(args.out.as_deref(), &text)
}

/// Loads an architecture, an optional plan, optional trained weights and optional
/// test images, checks that the run fits (`limits`), and runs the secure inference,
/// counting finished samples on `bar` (`ProgressBar::hidden()` for none).
#[allow(clippy::too_many_arguments)]
pub fn simulate_files(
    arch: &Path,
    plan: Option<&Path>,
    weights: Weights,
    data_dir: Option<&Path>,
    table: &ProtocolTable,
    opts: &Options,
    limits: &super::limits::Limits,
    bar: &indicatif::ProgressBar,
) -> Result<SimReport> {
    let (network, plan) = super::load_network_and_plan(arch, plan)?;
    let planned = crate::graph::sharing::Planned::new(&network, &plan)?;
    limits.check_simulation(arch, &network, opts)?;
    run_planned(&planned, weights, data_dir, table, opts, bar)
}

/// The human-readable table: measured beside predicted, per layer.
pub fn text(r: &SimReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} under plan \"{}\", protocol \"{}\" (conv masking {}), {} fractional bits",
        r.architecture, r.plan, r.protocol, r.conv_masking, r.frac_bits
    );
    let _ = writeln!(out, "weights: {}; inputs: {}; {} sample(s)\n", r.weights, r.inputs, r.total.samples);
    out += &layer_table(r).text();
    let t = &r.total;
    for l in &r.layers {
        let Some(d) = &l.decisions else { continue };
        let _ = write!(
            out,
            "\n{}: {} of {} shared decisions flipped against fixed point; scores within {} lsb (bound {} lsb: truncation and the input's error)",
            l.name, d.flips, d.groups, d.max_score_error_lsb, d.max_bound_lsb
        );
        if d.unexplained_flips > 0 || d.beyond_bound > 0 {
            let _ = write!(out, "; NOT explained by truncation: {} flips, {} scores", d.unexplained_flips, d.beyond_bound);
        }
    }
    if r.layers.iter().any(|l| l.decisions.is_some()) {
        out.push('\n');
    }
    let per = if r.batch > 1 {
        format!(" per batch of {} ({:.3} MB per image)", r.batch, t.measured.bits as f64 / 8e6 / r.batch as f64)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "\ntotal {:.3} MB measured{per} ({:.3} MB predicted); predicted class agrees with float on {:.1}% and with fixed point on {:.1}% of samples",
        t.measured.bits as f64 / 8e6,
        t.predicted.bits as f64 / 8e6,
        100.0 * t.agreement,
        100.0 * t.agreement_fixed
    );
    if let Some(a) = t.accuracy {
        let _ = writeln!(out, "secure predictions match the labels on {:.1}% of the images", 100.0 * a);
    }
    let _ = writeln!(
        out,
        "per image: secure inference {:.3} s, plaintext fixed point {:.4} s ({:.1}x), one thread each; whole run {:.3} s per image on {} threads",
        t.secure_seconds_per_image,
        t.plaintext_fixed_seconds_per_image,
        t.secure_seconds_per_image / t.plaintext_fixed_seconds_per_image.max(1e-12),
        t.seconds_per_image,
        t.threads
    );
    let _ = writeln!(out, "transcript {} (every message of every sample; equal seeds give equal transcripts)", t.transcript);
    out
}

/// Measured beside predicted, per layer, and a total row.
fn layer_table(r: &SimReport) -> Table {
    // Time columns: measured, then the cost model's compute term where the table has one.
    let timed = r.total.predicted_seconds_per_image.is_some();
    let mut header: Vec<String> =
        ["layer", "op", "rounds", "pred", "depth", "P0 bits", "P1 bits", "P2 bits", "pred bits", "match", "max err (lsb)", "ms"]
            .map(String::from)
            .to_vec();
    if timed {
        header.push("pred ms".into());
    }
    // One row: the layer's (or the total's) name, op and error cell, then its counts and times.
    let row = |name: &str, op: &str, m: &Counts, p: &Counts, err: String, secs: f64, pred_secs: Option<f64>| {
        let ms = |s: f64| format!("{:.2}", 1e3 * s);
        let mut cells = vec![
            name.to_string(),
            op.to_string(),
            m.rounds.to_string(),
            p.rounds.to_string(),
            m.rounds_depth.to_string(),
            m.bits_by_party[0].to_string(),
            m.bits_by_party[1].to_string(),
            m.bits_by_party[2].to_string(),
            p.bits.to_string(),
            if m == p { "yes" } else { "NO" }.to_string(),
            err,
            ms(secs),
        ];
        if timed {
            cells.push(pred_secs.map_or(String::new(), ms));
        }
        cells
    };
    let mut rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| row(&l.name, &l.op, &l.measured, &l.predicted, l.max_error_lsb.to_string(), l.seconds, l.predicted_seconds))
        .collect();
    let t = &r.total;
    let layer_secs = r.layers.iter().map(|l| l.seconds).sum();
    rows.push(row("total", "", &t.measured, &t.predicted, String::new(), layer_secs, t.predicted_seconds_per_image));
    Table { header, rows, left: 2 }
}
