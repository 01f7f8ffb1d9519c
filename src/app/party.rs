//! `explore party` runs one of the three SecureNN parties over TCP; `explore run3pc`
//! starts all three on this machine, runs the inferences, and sets what crossed the
//! sockets beside the simulator's counts and the time model's estimate.
//!
//! The protocol functions are the simulator's (`mpc::protocols`): only the transport
//! differs. P0 stands for the owners of the model and the input: it loads both and
//! deals P1 its shares as setup, outside the counted protocol (as the paper leaves
//! input sharing uncounted); P1 and P2 run from the architecture and plan alone. All
//! three derive their generators from the run's seed, so that a run can be checked
//! bit for bit against the simulator; a deployment would agree the pairwise seeds by
//! key exchange instead.

use crate::error::{Error, Result};
use crate::graph::sharing::Planned;
use crate::infer::model::Params;
use crate::infer::run_batch;
use crate::infer::secure::Secure;
use crate::mpc::net::{Conditions, Shared, TcpLink, Traffic};
use crate::mpc::tls::Keys;
use crate::mpc::transport::Party;
use crate::report::{self, Format, Table};
use crate::simulate::{Options, Weights, batch_input, prepare, protocol_seed};
use crate::spec::protocol::{ConvMasking, ProtocolTable};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every party must agree on.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// Architecture TOML.
    pub arch: PathBuf,
    /// ReLU-sharing plan TOML; without one, regular ReLU everywhere.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Number of inputs, each a fresh secure inference.
    #[arg(long, default_value_t = 1, value_parser = super::positive)]
    pub samples: usize,
    /// Images per secure inference (SecureNN's batches: the weights masked once per
    /// batch, every round paid once); --samples must be a multiple.
    #[arg(long, default_value_t = 1, value_parser = super::cost::batch_size)]
    pub batch: u64,
    /// Seed of the inputs and every party's randomness.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Override the protocol table's convolution masking.
    #[arg(long, value_enum)]
    pub conv_masking: Option<ConvMasking>,
    /// Emulate a network profile's conditions on every link (`lan`, `wan`, or one of
    /// --profiles): each protocol frame waits its turn on the link at the profile's
    /// bandwidth and arrives one round time (`rtt_ms`) later, as the time model charges
    /// a round; setup frames (shares of the model and input), which the model leaves
    /// out, pass unslowed.
    #[arg(long)]
    pub emulate: Option<String>,
    /// Profiles TOML for --emulate (default: the built-in lan and wan).
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Directory of `explore keygen`'s certificates: mutually authenticated TLS, each
    /// party accepting only the certificates pinned there. Without it, plain TCP.
    #[arg(long)]
    pub tls: Option<PathBuf>,
    /// Seconds a party waits for a peer (to connect, or for a message) before it
    /// stops with an error naming the peer and the message.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub timeout: f64,
}

#[derive(clap::Args)]
pub struct PartyArgs {
    /// Which party this is: 0 or 1 (holding shares) or 2 (the helper).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub id: u8,
    /// The three parties' addresses, P0's first: host:port,host:port,host:port.
    #[arg(long, value_delimiter = ',', required = true)]
    pub peers: Vec<SocketAddr>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Fractional bits of the fixed-point encoding (the same at every party).
    #[arg(long, default_value_t = 13, value_parser = clap::value_parser!(u32).range(1..=62))]
    pub frac_bits: u32,
    /// P0's model and inputs (P1 and P2 ignore them).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Write this party's report (JSON) to this file instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// The model and the inputs (P0's, standing for their owners).
#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// Trained weights (a checkpoint of this plan); default: the network's shipped
    /// original when present, else seeded random weights.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seeded random weights even where the network ships trained ones.
    #[arg(long, conflicts_with = "weights")]
    pub random_weights: bool,
    /// Dataset directory whose test images are the inputs (default: generated).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

impl ModelArgs {
    fn weights(&self) -> Weights<'_> {
        match (&self.weights, self.random_weights) {
            (Some(w), _) => Weights::Trained(w),
            (None, true) => Weights::Random,
            (None, false) => Weights::Shipped,
        }
    }

    /// The arguments that pass the same choice on to P0.
    fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut out = Vec::new();
        if let Some(w) = &self.weights {
            out.extend(["--weights".into(), w.clone().into_os_string()]);
        }
        if self.random_weights {
            out.push("--random-weights".into());
        }
        if let Some(d) = &self.data {
            out.extend(["--data".into(), d.clone().into_os_string()]);
        }
        out
    }
}

/// One party's account of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartyReport {
    pub id: u8,
    /// Protocol payload bytes sent to and received from P0, P1, P2.
    pub payload_bytes_sent: [u64; 3],
    pub payload_bytes_received: [u64; 3],
    /// The bits this party's own count of the protocol says it sent to each.
    pub simulated_bits_sent: [u64; 3],
    pub setup_bytes_sent: [u64; 3],
    pub setup_bytes_received: [u64; 3],
    /// Frame headers and the connection's opening.
    pub framing_bytes_sent: u64,
    /// TLS records sent, handshakes included (0 without TLS).
    pub tls_bytes_sent: u64,
    /// The protocol steps its frames carried (every image's steps are the same).
    pub steps: Vec<u64>,
    /// From the connections being up to the last image's end.
    pub seconds: f64,
    /// P0: each batch's opened output (its images' one after another), as ring elements.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub outputs: Vec<Vec<u64>>,
}

/// A timeout: more than 0 and at most a day (a Duration of it cannot overflow).
fn seconds(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && t <= 86_400.0 => Ok(t),
        Ok(_) => Err("must be more than 0 and at most 86400 seconds".into()),
        Err(e) => Err(e.to_string()),
    }
}

impl RunArgs {
    /// The protocol table (SecureNN), its convolution masking or the override, the
    /// network and the plan.
    fn load(&self) -> Result<(ProtocolTable, ConvMasking, crate::graph::Network, crate::spec::PlanSpec)> {
        let table = ProtocolTable::load_or_builtin(None)?;
        let masking = self.conv_masking.unwrap_or(table.conv_masking);
        let (network, plan) = super::load_network_and_plan(&self.arch, self.plan.as_deref())?;
        Ok((table, masking, network, plan))
    }

    fn options(&self, frac: u32, fit_frac: bool, masking: ConvMasking) -> Result<Options> {
        Ok(Options { samples: self.samples, seed: self.seed, frac, fit_frac, masking: Some(masking), batch: whole_batches(self)?, run: 0 })
    }
}

/// A digest of what the parties must agree on: files, seed, samples, precision.
fn fingerprint(run: &RunArgs, frac: u32, masking: ConvMasking) -> Result<u64> {
    let mut bytes = Vec::new();
    for path in [Some(&run.arch), run.plan.as_ref()].into_iter().flatten() {
        bytes.extend(std::fs::read(path).map_err(|source| Error::Read { path: path.clone(), source })?);
        bytes.push(0);
    }
    bytes.extend(run.seed.to_le_bytes());
    bytes.extend((run.samples as u64).to_le_bytes());
    bytes.extend(run.batch.to_le_bytes());
    bytes.extend(frac.to_le_bytes());
    bytes.push(masking as u8);
    Ok(crate::mpc::prg::fnv1a(&bytes))
}

fn conditions(run: &RunArgs) -> Result<Conditions> {
    let Some(name) = &run.emulate else { return Ok(Conditions::default()) };
    let profiles = super::cost::profiles_or_builtin(run.profiles.as_deref())?;
    let p = profiles.iter().find(|p| &p.name == name).ok_or_else(|| {
        let known: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        Error::invalid(
            run.profiles.as_deref().unwrap_or(Path::new("built-in profiles")),
            Some("--emulate".into()),
            format!("no profile \"{name}\" (known: {})", known.join(", ")),
        )
    })?;
    Ok(Conditions { delay: Duration::from_secs_f64(p.rtt_ms / 1e3), bandwidth_bps: Some(p.bandwidth_mbps * 1e6) })
}

fn network_error(me: Party, e: crate::mpc::transport::LinkError) -> Error {
    Error::Network { party: format!("{me:?}"), message: e.to_string() }
}

pub fn party(args: PartyArgs) -> Result<()> {
    let me = [Party::P0, Party::P1, Party::P2][args.id as usize];
    let run = &args.run;
    let (_, masking, network, plan) = run.load()?;
    let planned = Planned::new(&network, &plan)?;
    let opts = run.options(args.frac_bits, false, masking)?;
    // P1 and P2 never read the model or the inputs: shapes are all they use.
    let prepared = if me == Party::P0 { Some(prepare(&planned, args.model.weights(), args.model.data.as_deref(), &opts)?) } else { None };
    let placeholder = Params::random(&planned, run.seed).folded(&network);
    let params = prepared.as_ref().map_or(&placeholder, |p| &p.params);
    let samples = match prepared.as_ref().map(|p| &p.inputs) {
        Some(crate::simulate::Inputs::Images { images, .. }) if images.len() < run.samples => {
            return Err(Error::invalid(
                args.model.data.as_deref().unwrap_or(Path::new("")),
                Some("--samples".into()),
                format!("{} test images, fewer than --samples {}: every party must run the same count", images.len(), run.samples),
            ));
        }
        _ => run.samples,
    };
    let addrs: [SocketAddr; 3] = args.peers.clone().try_into().map_err(|p: Vec<SocketAddr>| Error::Network {
        party: format!("{me:?}"),
        message: format!("--peers: three addresses (P0, P1, P2) are needed, not {}", p.len()),
    })?;
    let timeout = Duration::from_secs_f64(run.timeout);
    let keys = match &run.tls {
        Some(dir) => Some(Keys::load(dir, me as usize).map_err(|message| Error::Network { party: format!("{me:?}"), message })?),
        None => None,
    };
    let (link, traffic) =
        TcpLink::connect(me, &addrs, fingerprint(run, args.frac_bits, masking)?, timeout, conditions(run)?, keys.as_ref())
            .map_err(|e| network_error(me, e))?;
    let link = Arc::new(Mutex::new(link));
    let start = Instant::now();
    let input_len = network.node(network.input).output.numel();
    let mut report = PartyReport {
        id: args.id,
        payload_bytes_sent: [0; 3],
        payload_bytes_received: [0; 3],
        simulated_bits_sent: [0; 3],
        setup_bytes_sent: [0; 3],
        setup_bytes_received: [0; 3],
        framing_bytes_sent: 0,
        tls_bytes_sent: 0,
        steps: Vec::new(),
        seconds: 0.0,
        outputs: Vec::new(),
    };
    let batch = opts.batch;
    for sample in (0..samples).step_by(batch) {
        let input = match &prepared {
            Some(p) => batch_input(&planned, &p.inputs, &opts, sample),
            None => vec![0.0; input_len * batch],
        };
        let seed = protocol_seed(run.seed, 0, sample);
        let mut secure = Secure::party(seed, args.frac_bits, masking, me, Box::new(Shared(Arc::clone(&link))));
        let outs = run_batch(&mut secure, &planned, params, &input, batch, run.seed.wrapping_add(sample as u64));
        let opened = secure.open(outs.last().expect("a network has layers"));
        if let Some(e) = secure.ctx.net.failure.take() {
            return Err(Error::Network { party: format!("{me:?} (image {} of {samples})", sample + 1), message: e.to_string() });
        }
        for m in secure.ctx.net.log.iter().filter(|m| m.from == me) {
            report.simulated_bits_sent[m.to as usize] += m.bits;
        }
        report.outputs.extend(opened);
    }
    // Every frame written before the counts are read and the party exits.
    // The last handle (each image's runs dropped theirs): dropping it joins the writers.
    drop(link);
    report.seconds = start.elapsed().as_secs_f64();
    let t: Traffic = traffic.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.payload_bytes_sent = t.payload_sent;
    report.payload_bytes_received = t.payload_received;
    report.setup_bytes_sent = t.setup_sent;
    report.setup_bytes_received = t.setup_received;
    report.framing_bytes_sent = t.framing_sent;
    report.tls_bytes_sent = t.tls_sent;
    report.steps = t.steps.into_iter().collect();
    super::emit(args.out.as_deref(), &report::json(&report))
}

#[derive(clap::Args)]
pub struct Run3pcArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Plain TCP instead of TLS with fresh certificates (made for the run by `keygen`).
    #[arg(long, conflicts_with = "tls")]
    pub no_tls: bool,
    /// Fractional bits (default: 13, or as many as the values leave room for).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=62))]
    pub frac_bits: Option<u32>,
    /// Output format: an aligned table, the per-party table as CSV or Markdown, JSON.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the output to this file instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// One party's line in `run3pc`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct PartyLine {
    pub id: u8,
    pub payload_bytes_sent: u64,
    pub payload_bytes_received: u64,
    /// The simulator's bits this party sends, over the same images.
    pub simulated_bits_sent: u64,
    /// Payload bytes per receiver equal the simulator's bits / 8 per receiver.
    pub matches_simulator: bool,
    pub setup_bytes_sent: u64,
    pub framing_bytes_sent: u64,
    /// Bytes of TLS records sent, handshakes included (0 with --no-tls).
    pub tls_bytes_sent: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run3pcReport {
    pub architecture: String,
    pub plan: String,
    pub samples: usize,
    pub emulated: Option<String>,
    /// Whether the channels ran TLS.
    pub tls: bool,
    pub parties: Vec<PartyLine>,
    /// Distinct protocol steps seen on the wire, and the simulator's rounds.
    pub rounds: u64,
    pub simulated_rounds: u64,
    /// Fraction of images whose batch's opened output equals the simulator's, element
    /// for element.
    pub agreement: f64,
    /// The slowest party's wall time per image (connections up to the last output).
    pub seconds_per_image: f64,
    /// The simulator's seconds per image for the same run, in this process.
    pub simulator_seconds_per_image: f64,
    /// The time model's estimate per image under the emulated profile (every round
    /// one rtt, all bits over one link): `cost`'s `seconds`.
    pub model_seconds_per_image: Option<f64>,
    /// The time model with the parties on machines of their own (per layer its
    /// busiest sender's bits): `cost`'s `seconds_apart`, what this run emulates.
    pub model_apart_seconds_per_image: Option<f64>,
    /// From the simulator's messages, each directed link apart: per step one rtt
    /// plus the busiest link's bits over the bandwidth (the emulation step by step).
    pub link_model_seconds_per_image: Option<f64>,
}

pub fn run3pc(args: Run3pcArgs) -> Result<()> {
    let run = &args.run;
    let (table, masking, network, plan) = run.load()?;
    let planned = Planned::new(&network, &plan)?;
    let opts = run.options(args.frac_bits.unwrap_or(13), args.frac_bits.is_none(), masking)?;
    let prepared = prepare(&planned, args.model.weights(), args.model.data.as_deref(), &opts)?;
    let frac = prepared.opts.frac;
    conditions(run)?;
    let dir = tempdir()?;
    let tls_dir = match (&run.tls, args.no_tls) {
        (Some(d), _) => Some(d.clone()),
        (None, true) => None,
        (None, false) => {
            let d = dir.join("keys");
            crate::mpc::tls::keygen(&d).map_err(|message| Error::Network { party: "run3pc".into(), message })?;
            Some(d)
        }
    };
    let addrs: Vec<String> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.to_string()))
        .collect::<std::io::Result<_>>()
        .map_err(|source| Error::Write { path: PathBuf::from("127.0.0.1"), source })?;
    let exe = std::env::current_exe().map_err(|source| Error::Read { path: PathBuf::from("explore"), source })?;
    let mut children = Vec::new();
    for id in 0..3u8 {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("party").arg("--id").arg(id.to_string()).arg("--peers").arg(addrs.join(","));
        cmd.arg(&run.arch).arg("--samples").arg(run.samples.to_string()).arg("--seed").arg(run.seed.to_string());
        cmd.arg("--batch").arg(run.batch.to_string());
        cmd.arg("--frac-bits").arg(frac.to_string()).arg("--timeout").arg(run.timeout.to_string());
        cmd.arg("--conv-masking").arg(match masking {
            ConvMasking::Im2col => "im2col",
            ConvMasking::Tensor => "tensor",
        });
        if let Some(p) = &run.plan {
            cmd.arg("--plan").arg(p);
        }
        if let Some(e) = &run.emulate {
            cmd.arg("--emulate").arg(e);
        }
        if let Some(d) = &tls_dir {
            cmd.arg("--tls").arg(d);
        }
        if let Some(p) = &run.profiles {
            cmd.arg("--profiles").arg(p);
        }
        if id == 0 {
            cmd.args(args.model.to_args());
        }
        cmd.arg("-o").arg(dir.join(format!("party-{id}.json")));
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().map_err(|source| Error::Read { path: exe.clone(), source })?);
    }
    // Every party ends by itself (a fault ends the others within the timeout); the
    // first error line is the report.
    let mut failures = Vec::new();
    for (id, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().map_err(|source| Error::Read { path: exe.clone(), source })?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("exited without a message").to_string();
            failures.push(format!("P{id} {}: {}", out.status, line.trim_start_matches("error: ")));
        }
    }
    if !failures.is_empty() {
        std::fs::remove_dir_all(&dir).ok();
        return Err(Error::Network { party: "run3pc".into(), message: failures.join("; ") });
    }
    let reports: Vec<PartyReport> = (0..3)
        .map(|id| {
            let path = dir.join(format!("party-{id}.json"));
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
            serde_json::from_str(&text).map_err(|e| Error::syntax(&path, None, e.to_string()))
        })
        .collect::<Result<_>>()?;
    std::fs::remove_dir_all(&dir).ok();

    // The simulator on the same images, whole layers per DReLU as the parties run them.
    let profile = match &run.emulate {
        Some(name) => super::cost::profiles_or_builtin(run.profiles.as_deref())?.into_iter().find(|p| &p.name == name),
        None => None,
    };
    let (mut sim_bits, mut sim_steps, mut agree, mut link_model) = ([[0u64; 3]; 3], 0u64, 0usize, 0.0);
    let sim_start = Instant::now();
    let batch = prepared.opts.batch;
    for (k, sample) in (0..run.samples).step_by(batch).enumerate() {
        let input = batch_input(&planned, &prepared.inputs, &prepared.opts, sample);
        let mut secure = Secure::new(protocol_seed(run.seed, 0, sample), frac, masking);
        secure.ctx.drelu_part = usize::MAX;
        let outs = run_batch(&mut secure, &planned, &prepared.params, &input, batch, run.seed.wrapping_add(sample as u64));
        let opened = secure.open(outs.last().expect("a network has layers")).expect("P0 is here");
        agree += batch * usize::from(reports[0].outputs.get(k) == Some(&opened));
        for m in &secure.ctx.net.log {
            sim_bits[m.from as usize][m.to as usize] += m.bits;
        }
        sim_steps = secure.ctx.net.log.iter().map(|m| m.step).collect::<std::collections::BTreeSet<_>>().len() as u64;
        if let Some(p) = &profile {
            link_model += link_seconds(&secure.ctx.net.log, p) / run.samples as f64;
        }
    }
    let simulator_seconds = sim_start.elapsed().as_secs_f64() / run.samples as f64;
    let steps: std::collections::BTreeSet<u64> = reports.iter().flat_map(|r| r.steps.iter().copied()).collect();
    let parties = reports
        .iter()
        .map(|r| {
            let i = r.id as usize;
            PartyLine {
                id: r.id,
                payload_bytes_sent: r.payload_bytes_sent.iter().sum(),
                payload_bytes_received: r.payload_bytes_received.iter().sum(),
                simulated_bits_sent: sim_bits[i].iter().sum(),
                matches_simulator: (0..3)
                    .all(|j| r.payload_bytes_sent[j] * 8 == sim_bits[i][j] && r.payload_bytes_received[j] * 8 == sim_bits[j][i]),
                setup_bytes_sent: r.setup_bytes_sent.iter().sum(),
                framing_bytes_sent: r.framing_bytes_sent,
                tls_bytes_sent: r.tls_bytes_sent,
                seconds: r.seconds,
            }
        })
        .collect();
    let estimate = match &profile {
        Some(p) => {
            let priced = crate::cost::price_batch(&planned, &table, Some(masking), std::slice::from_ref(p), batch as u64)?;
            priced.estimates.into_iter().next()
        }
        None => None,
    };
    let per_image = |s: f64| s / batch as f64;
    let report = Run3pcReport {
        architecture: network.name.clone(),
        plan: plan.name.clone(),
        samples: run.samples,
        emulated: run.emulate.clone(),
        tls: tls_dir.is_some(),
        parties,
        rounds: steps.len() as u64,
        simulated_rounds: sim_steps,
        agreement: agree as f64 / run.samples as f64,
        seconds_per_image: reports.iter().map(|r| r.seconds).fold(0.0, f64::max) / run.samples as f64,
        simulator_seconds_per_image: simulator_seconds,
        model_seconds_per_image: estimate.as_ref().map(|e| per_image(e.seconds)),
        model_apart_seconds_per_image: estimate.as_ref().map(|e| per_image(e.seconds_apart)),
        link_model_seconds_per_image: profile.as_ref().map(|_| link_model),
    };
    let text = report::render(args.format, &report, || text(&report), || party_table(&report));
    super::emit(args.out.as_deref(), &text)
}

/// The batch size, when --samples is a whole number of batches.
fn whole_batches(run: &RunArgs) -> Result<usize> {
    if !run.samples.is_multiple_of(run.batch as usize) {
        return Err(Error::invalid(
            &run.arch,
            Some("--samples".into()),
            format!("{} is not a multiple of --batch {}: each secure inference runs a whole batch", run.samples, run.batch),
        ));
    }
    Ok(run.batch as usize)
}

/// Seconds of `log` over links of `p`'s rtt and bandwidth, each directed link apart:
/// per step one rtt, plus the busiest link's bits in that step over the bandwidth.
fn link_seconds(log: &[crate::mpc::transport::Message], p: &crate::spec::profile::Profile) -> f64 {
    let mut steps: std::collections::BTreeMap<u64, [[u64; 3]; 3]> = std::collections::BTreeMap::new();
    for m in log {
        steps.entry(m.step).or_default()[m.from as usize][m.to as usize] += m.bits;
    }
    let busiest = |links: &[[u64; 3]; 3]| links.iter().flatten().copied().max().unwrap_or(0);
    steps.values().map(|links| p.rtt_ms / 1e3 + busiest(links) as f64 / (p.bandwidth_mbps * 1e6)).sum()
}

/// A fresh directory for the parties' reports.
fn tempdir() -> Result<PathBuf> {
    // The process id keeps concurrent runs apart; the clock, runs of one recycled id.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("explore-run3pc-{}-{now}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
    Ok(dir)
}

fn party_table(r: &Run3pcReport) -> Table {
    let header = [
        "party",
        "payload_bytes_sent",
        "payload_bytes_received",
        "simulated_bytes_sent",
        "matches_simulator",
        "setup_bytes_sent",
        "framing_bytes_sent",
        "tls_bytes_sent",
        "seconds",
    ];
    let mut t = Table::new(&header, 1);
    for p in &r.parties {
        t.push(vec![
            format!("P{}", p.id),
            p.payload_bytes_sent.to_string(),
            p.payload_bytes_received.to_string(),
            (p.simulated_bits_sent / 8).to_string(),
            p.matches_simulator.to_string(),
            p.setup_bytes_sent.to_string(),
            p.framing_bytes_sent.to_string(),
            p.tls_bytes_sent.to_string(),
            format!("{:.3}", p.seconds),
        ]);
    }
    t
}

fn text(r: &Run3pcReport) -> String {
    let mut out = format!(
        "{} under plan {}: {} image(s), three processes on loopback, {}{}\n\n",
        r.architecture,
        r.plan,
        r.samples,
        if r.tls { "mutual TLS" } else { "plain TCP" },
        r.emulated.as_ref().map_or(String::new(), |p| format!(", {p} conditions emulated"))
    );
    out.push_str(&party_table(r).text());
    out.push_str(&format!(
        "\nrounds on the wire {} (simulator {}); outputs equal to the simulator's on {:.0}% of images\n",
        r.rounds,
        r.simulated_rounds,
        100.0 * r.agreement
    ));
    out.push_str(&format!(
        "{:.3} s per image over the network, {:.3} s in the simulator",
        r.seconds_per_image, r.simulator_seconds_per_image
    ));
    if let (Some(m), Some(a), Some(l)) = (r.model_seconds_per_image, r.model_apart_seconds_per_image, r.link_model_seconds_per_image) {
        out.push_str(&format!(
            "\ntime model: {a:.3} s with the parties apart ({:+.1}% measured against it), {m:.3} s over one link; \
             {l:.3} s from the simulator's messages, each link and step apart",
            100.0 * (r.seconds_per_image / a - 1.0)
        ));
    }
    out.push('\n');
    out
}

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Directory to write ca.cert.pem and pN.cert.pem, pN.key.pem (N = 0, 1, 2) into.
    pub dir: PathBuf,
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    let files = crate::mpc::tls::keygen(&args.dir).map_err(|message| Error::Network { party: "keygen".into(), message })?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::transport::{Elem, Family, Message};

    #[test]
    fn links_apart_pay_each_step_its_busiest_link() {
        let m = |step, from, to, bits| Message {
            from,
            to,
            step,
            depth: step,
            elem: Elem::Ring,
            count: bits / 64,
            bits,
            family: Family::Linear,
        };
        // Step 1: P0 -> P1 and P1 -> P0 side by side (1 Mbit each); step 2: P2 -> P0 twice (2 Mbit).
        let log = [
            m(1, Party::P0, Party::P1, 1_000_000),
            m(1, Party::P1, Party::P0, 1_000_000),
            m(2, Party::P2, Party::P0, 1_000_000),
            m(2, Party::P2, Party::P0, 1_000_000),
        ];
        let p = crate::spec::profile::Profile { name: "t".into(), bandwidth_mbps: 1.0, rtt_ms: 100.0 };
        // 2 rounds x 0.1 s + (1 + 2) s: the exchange in step 1 costs one link's time, not two.
        assert!((link_seconds(&log, &p) - 3.2).abs() < 1e-9);
    }
}
