//! `explore simulate`: secure inference of a whole network under SecureNN, checked
//! three ways. Every message is counted and compared with the cost model's
//! prediction (the two are independent implementations); every layer's
//! reconstructed output is compared with plaintext fixed point; the predicted class
//! is compared with the float model.

pub mod calibrate;

use crate::cost::{self, CostReport};
use crate::graph::Network;
use crate::graph::sharing::Planned;
use crate::infer::checkpoint;
use crate::infer::model::Params;
use crate::infer::plain::{Fixed, Float};
use crate::infer::secure::Secure;
use crate::infer::{run, run_batch};
use crate::mpc::prg::Prg;
use crate::mpc::transport::{Elem, Family, Message, Party, Tally, transfers};
use crate::spec::PerParty;
use crate::spec::protocol::{ConvMasking, ProtocolTable};
use petgraph::graph::NodeIndex;
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub samples: usize,
    /// Seeds the inputs, random weights and noise, and (with `run`) the protocols.
    pub seed: u64,
    /// Fractional bits of the fixed-point encoding.
    pub frac: u32,
    /// When the network's values leave too few bits for `frac`, use as many as fit
    /// (and report them) instead of refusing: for a default the user did not choose.
    pub fit_frac: bool,
    pub masking: Option<ConvMasking>,
    /// Images per secure inference (1 to `cost::MAX_BATCH`): each batch is one run of
    /// the protocols, the weights masked once for it; `samples` must be a multiple.
    pub batch: usize,
    /// Which run this is among runs of one seed (a sweep gives each design point its
    /// own): the protocols' randomness differs between runs, inputs and weights do not.
    pub run: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options { samples: 1, seed: 1, frac: 13, fit_frac: false, masking: None, batch: 1, run: 0 }
    }
}

/// The seed of the protocols' generators for one image of one run: SHA-256 of seed,
/// run and image, so that no two (run, image) pairs of a seed share a mask stream
/// (`mpc::prg` says which generator masks what). Within an image the layers draw from
/// the same generators one after another, so they never reuse a stream either.
pub fn protocol_seed(seed: u64, run: u64, sample: usize) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"explore protocol seed");
    for v in [seed, run, sample as u64] {
        h.update(v.to_le_bytes());
    }
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// Counts in the cost model's terms, measured or predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub rounds: u64,
    pub rounds_depth: u64,
    pub bits: u64,
    pub bits_by_party: PerParty<u64>,
    pub bits_by_protocol: cost::BitsByProtocol,
}

impl Counts {
    fn measured(t: &Tally) -> Counts {
        let [linear, drelu, mul] = t.bits_by_family;
        Counts {
            rounds: t.steps,
            rounds_depth: t.depth,
            bits: t.bits_by_party.sum(),
            bits_by_party: t.bits_by_party,
            bits_by_protocol: cost::BitsByProtocol { linear, drelu, mul },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSim {
    pub name: String,
    pub op: String,
    pub measured: Counts,
    pub predicted: Counts,
    /// Largest |secure - plaintext fixed point| over the samples, in units of the
    /// last fractional bit.
    pub max_error_lsb: u64,
    /// Shared ReLU layers only: how their secure decisions compare with fixed point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decisions: Option<DecisionCheck>,
    /// Wall seconds of this layer's secure inference per image (mean over the
    /// samples): all three parties' local work, one image per thread, as in
    /// `TotalSim::secure_seconds_per_image`.
    pub seconds: f64,
    /// The cost model's local computation for this layer, when the protocol table
    /// has a `[compute]` section (`explore calibrate` writes one); else null.
    pub predicted_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TotalSim {
    pub measured: Counts,
    pub predicted: Counts,
    pub samples: usize,
    /// Fraction of samples whose secure prediction equals the label (real images only).
    pub accuracy: Option<f64>,
    /// Fraction of samples whose secure predicted class equals the float model's.
    pub agreement: f64,
    /// Same, against plaintext fixed point.
    pub agreement_fixed: f64,
    /// Wall seconds of the whole run divided by the samples (all three evaluations
    /// of each sample included), on `threads` threads.
    pub seconds_per_image: f64,
    pub threads: usize,
    /// Secure inference alone (no references, no checks), per image, one thread;
    /// each thread's first, untimed run excluded (it pays for fresh memory).
    pub secure_seconds_per_image: f64,
    /// Plaintext fixed-point inference alone, per image, one thread, likewise.
    pub plaintext_fixed_seconds_per_image: f64,
    /// The cost model's local computation per image (the sum of the layers'), when
    /// the protocol table has a `[compute]` section; else null.
    pub predicted_seconds_per_image: Option<f64>,
    /// A digest of every message of every sample, payloads included, in sample order
    /// (16 hex digits; FNV-style, a fingerprint rather than a cryptographic hash): equal
    /// seeds give equal digests on any machine and any thread count.
    pub transcript: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The first sample's messages (every sample sends the same), for `messages_csv`.
    #[serde(skip)]
    pub messages: Vec<MessageRow>,
    pub architecture: String,
    pub plan: String,
    pub protocol: String,
    pub conv_masking: ConvMasking,
    pub frac_bits: u32,
    pub seed: u64,
    /// Images per secure inference: layer counts and totals are per batch. Left out
    /// of JSON for one image.
    #[serde(skip_serializing_if = "is_one")]
    pub batch: usize,
    /// Where the weights came from.
    pub weights: String,
    /// Where the inputs came from.
    pub inputs: String,
    pub layers: Vec<LayerSim>,
    pub total: TotalSim,
}

/// One row of `explore simulate --messages`: what one party sends another in one
/// round of a layer (`transport::transfers`). Rounds and depths count from the
/// start of the network, as the totals do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRow {
    pub layer: String,
    pub round: u64,
    pub depth: u64,
    pub from: &'static str,
    pub to: &'static str,
    /// `ring` (Z_2^64), `odd` (Z_(2^64 - 1)) or `field` (Z_67).
    pub element: &'static str,
    /// The cost model's family: `linear`, `drelu` or `mul`.
    pub protocol: &'static str,
    pub count: u64,
    pub bits: u64,
}

impl MessageRow {
    fn new(layer: &str, t: &Message) -> MessageRow {
        let party = |p: Party| match p {
            Party::P0 => "P0",
            Party::P1 => "P1",
            Party::P2 => "P2",
        };
        MessageRow {
            layer: layer.to_string(),
            round: t.step,
            depth: t.depth,
            from: party(t.from),
            to: party(t.to),
            element: match t.elem {
                Elem::Ring => "ring",
                Elem::Odd => "odd",
                Elem::Field => "field",
            },
            protocol: match t.family {
                Family::Linear => "linear",
                Family::Drelu => "drelu",
                Family::Mul => "mul",
            },
            count: t.count,
            bits: t.bits,
        }
    }
}

/// The report's messages as CSV, one row per layer, round, sender, receiver, element
/// type and protocol.
pub fn messages_csv(report: &SimReport) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in &report.messages {
        // Writing into memory cannot fail.
        w.serialize(row).expect("a row serialises");
    }
    String::from_utf8(w.into_inner().expect("an in-memory writer")).expect("CSV of ASCII names and numbers")
}

fn predicted(c: &cost::LayerCost) -> Counts {
    Counts {
        rounds: c.rounds,
        rounds_depth: c.rounds_depth,
        bits: c.bits,
        bits_by_party: c.bits_by_party,
        bits_by_protocol: c.bits_by_protocol,
    }
}

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, x)| if *x > v[best] { i } else { best })
}

/// A generated input: N(0, 1) per element, like a normalised image.
pub fn generated_input(len: usize, seed: u64, sample: usize) -> Vec<f32> {
    let mut rng = Prg::new(seed, &format!("input/{sample}"));
    (0..len).map(|_| rng.normal() as f32).collect()
}

/// One batch of images (one image without `--batch`) through the three inferences.
struct Sample {
    max_error: Vec<u64>,
    /// Per layer in `network.order`: its decision check (shared layers only).
    decisions: Vec<Option<DecisionCheck>>,
    /// Images whose secure prediction matches the label (real images only).
    correct: usize,
    tallies: Vec<Tally>,
    /// Images whose secure class is the float (fixed-point) one.
    agrees_float: usize,
    agrees_fixed: usize,
    fixed_secs: f64,
    secure_secs: f64,
    /// Secure inference's wall seconds per layer.
    layer_secs: Vec<f64>,
    /// The hash of the sample's transcript.
    transcript: u64,
    /// The messages of the first sample (empty for the others).
    messages: Vec<MessageRow>,
}

fn is_one(b: &usize) -> bool {
    *b == 1
}

/// Where the inputs of a simulation come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// N(0, 1) per element, seeded.
    Generated,
    /// Normalised images with their labels, and a description for the report.
    Images { images: Vec<Vec<f32>>, labels: Vec<u8>, source: String },
}

thread_local! {
    /// Whether this thread has run an inference yet (see `run_sample`).
    static WARMED_UP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A shared ReLU layer's decisions, secure against plaintext fixed point. A group's
/// secure score may differ from the fixed-point one by its truncations: within
/// `gain * e + 2` lsb, where e is the largest error of the layer's input and gain
/// is `infer::score_gain` (1 for the centre). A decision may flip only where the
/// fixed-point score lies that close to zero; a score outside the bound is a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DecisionCheck {
    /// Groups (shared decisions) over all samples.
    pub groups: u64,
    /// Groups whose secure decision differs from the fixed-point one.
    pub flips: u64,
    /// Flips whose fixed-point score lies further from zero than the bound: a wrong
    /// decision, not a truncation (0 unless the protocol is wrong).
    pub unexplained_flips: u64,
    /// Groups whose secure score is further from the fixed-point score than the bound
    /// (0 unless the protocol is wrong).
    pub beyond_bound: u64,
    /// Largest |secure - fixed| score difference, and the largest bound, in lsb.
    pub max_score_error_lsb: u64,
    pub max_bound_lsb: u64,
}

impl DecisionCheck {
    fn merge(self, o: DecisionCheck) -> DecisionCheck {
        DecisionCheck {
            groups: self.groups + o.groups,
            flips: self.flips + o.flips,
            unexplained_flips: self.unexplained_flips + o.unexplained_flips,
            beyond_bound: self.beyond_bound + o.beyond_bound,
            max_score_error_lsb: self.max_score_error_lsb.max(o.max_score_error_lsb),
            max_bound_lsb: self.max_bound_lsb.max(o.max_bound_lsb),
        }
    }
}

/// Checks each shared layer's recorded decisions (`Backend::decided`), per layer in
/// `network.order`; `max_error` holds each layer output's largest error.
fn check_decisions(
    planned: &Planned,
    params: &Params,
    frac: u32,
    fixed: &[(NodeIndex, Vec<u64>, Vec<u64>)],
    secure: &[(NodeIndex, Vec<u64>, Vec<u64>)],
    max_error: &[u64],
) -> Vec<Option<DecisionCheck>> {
    let net = planned.network;
    let mut out = vec![None; net.order.len()];
    for ((node, fs, fd), (snode, ss, sd)) in fixed.iter().zip(secure) {
        assert_eq!(node, snode, "both backends run the layers in one order");
        let producer = net.node(*node).inputs[0];
        // The input is encoded alike in both: no error before the first layer.
        let e = net.order.iter().position(|&n| n == producer).map_or(0, |i| max_error[i]) as f64;
        // Per group of one image; a batch holds the images' groups one after another.
        let gain = crate::infer::score_gain(planned, params, *node, frac);
        let mut c = DecisionCheck { groups: fs.len() as u64, ..DecisionCheck::default() };
        for i in 0..fs.len() {
            let diff = (ss[i].wrapping_sub(fs[i]) as i64).unsigned_abs();
            let bound = (gain[i % gain.len()] * e).ceil() as u64 + 2;
            let flip = fd[i] != sd[i];
            c.flips += u64::from(flip);
            c.unexplained_flips += u64::from(flip && (fs[i] as i64).unsigned_abs() > bound);
            c.beyond_bound += u64::from(diff > bound);
            c.max_score_error_lsb = c.max_score_error_lsb.max(diff);
            c.max_bound_lsb = c.max_bound_lsb.max(bound);
        }
        if let Some(i) = net.order.iter().position(|n| n == node) {
            out[i] = Some(c);
        }
    }
    out
}

/// Inputs `sample` to `sample + opts.batch`, one after another.
pub fn batch_input(planned: &Planned, inputs: &Inputs, opts: &Options, sample: usize) -> Vec<f32> {
    let input_len = planned.network.node(planned.network.input).output.numel();
    (sample..sample + opts.batch)
        .flat_map(|s| match inputs {
            Inputs::Generated => generated_input(input_len, opts.seed, s),
            Inputs::Images { images, .. } => images[s].clone(),
        })
        .collect()
}

/// Inputs `sample` to `sample + opts.batch` (one batch) through float, plaintext
/// fixed point and secure inference.
fn run_sample(planned: &Planned, params: &Params, inputs: &Inputs, masking: ConvMasking, opts: &Options, sample: usize) -> Sample {
    let images = opts.batch;
    let input = batch_input(planned, inputs, opts, sample);
    let noise_seed = opts.seed.wrapping_add(sample as u64);
    let secure_seed = protocol_seed(opts.seed, opts.run, sample);
    // A thread's first inferences wait on the OS zeroing fresh memory (90 to 270 ms
    // for a CIFAR-10 image here), which is not per-image work: they run once untimed,
    // so that the per-image times below are those of every later image.
    if !WARMED_UP.replace(true) {
        run_batch(&mut Fixed::new(opts.frac), planned, params, &input, images, noise_seed);
        run_batch(&mut Secure::new(secure_seed, opts.frac, masking), planned, params, &input, images, noise_seed);
    }
    let float_out = run_batch(&mut Float, planned, params, &input, images, noise_seed);
    let t = Instant::now();
    let mut fixed = Fixed::new(opts.frac);
    let fixed_out = run_batch(&mut fixed, planned, params, &input, images, noise_seed);
    let fixed_secs = t.elapsed().as_secs_f64();
    let mut secure = Secure::new(secure_seed, opts.frac, masking);
    let t = Instant::now();
    let secure_out = run_batch(&mut secure, planned, params, &input, images, noise_seed);
    let secure_secs = t.elapsed().as_secs_f64();
    let max_error: Vec<u64> = secure_out
        .iter()
        .zip(&fixed_out)
        .map(|(s, f)| s.reveal().iter().zip(f).map(|(a, b)| (a.wrapping_sub(*b) as i64).unsigned_abs()).max().unwrap_or(0))
        .collect();
    let decisions = check_decisions(planned, params, opts.frac, &fixed.decided, &secure.decided, &max_error);
    let decode = |v: &[u64]| v.iter().map(|&x| crate::mpc::ring::decode(x, opts.frac)).collect::<Vec<f64>>();
    // Each image's logits, then its class under each inference.
    let classes = |logits: Vec<f64>| -> Vec<usize> { logits.chunks_exact(logits.len() / images).map(argmax).collect() };
    let secure_class = classes(decode(&secure_out.last().expect("a network has layers").reveal()));
    let float_class = classes(float_out.last().expect("layers").clone());
    let fixed_class = classes(decode(fixed_out.last().expect("layers")));
    let same = |a: &[usize]| a.iter().zip(&secure_class).filter(|(x, y)| x == y).count();
    let correct = match inputs {
        Inputs::Images { labels, .. } => secure_class.iter().zip(&labels[sample..]).filter(|(c, l)| **c == **l as usize).count(),
        Inputs::Generated => 0,
    };
    Sample {
        max_error,
        decisions,
        correct,
        tallies: secure.layers.iter().map(|(_, t)| *t).collect(),
        agrees_float: same(&float_class),
        agrees_fixed: same(&fixed_class),
        fixed_secs,
        secure_secs,
        messages: if sample == 0 {
            secure
                .layers
                .iter()
                .zip(&secure.layer_messages)
                .flat_map(|((node, _), range)| {
                    let name = &planned.network.node(*node).name;
                    transfers(&secure.ctx.net.log[range.clone()]).into_iter().map(move |t| MessageRow::new(name, &t))
                })
                .collect()
        } else {
            Vec::new()
        },
        layer_secs: secure.layer_seconds,
        transcript: secure.ctx.net.transcript,
    }
}

/// Runs secure inference on `opts.samples` inputs (fewer if fewer images are given)
/// with the given parameters, described by `weights` in the report, counting the
/// finished samples on `bar`.
pub fn simulate(
    planned: &Planned,
    table: &ProtocolTable,
    opts: &Options,
    params: &Params,
    weights: &str,
    inputs: &Inputs,
    bar: &indicatif::ProgressBar,
) -> crate::error::Result<SimReport> {
    let batch = opts.batch.max(1);
    let samples = match inputs {
        Inputs::Generated => opts.samples,
        Inputs::Images { images, .. } => opts.samples.min(images.len()),
    };
    // Whole batches only (callers ask for a multiple of the batch).
    let samples = samples / batch * batch;
    let masking = opts.masking.unwrap_or(table.conv_masking);
    let prediction: CostReport = cost::price_batch(planned, table, Some(masking), &[], batch as u64)?;
    let net = planned.network;
    let n_layers = net.order.len();
    // Samples run in parallel (rayon); each has its own seeds, so the results do not
    // depend on the thread count.
    bar.set_style(
        indicatif::ProgressStyle::with_template("secure inference [{bar:30}] {pos}/{len} samples, {elapsed}, {eta} left")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_length(samples as u64);
    let wall = Instant::now();
    let results: Vec<Sample> = (0..samples / batch)
        .into_par_iter()
        .map(|k| {
            let result = run_sample(planned, params, inputs, masking, opts, k * batch);
            bar.inc(batch as u64);
            result
        })
        .collect();
    let wall_secs = wall.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut max_error = vec![0u64; n_layers];
    let mut decisions: Vec<Option<DecisionCheck>> = vec![None; n_layers];
    let mut layer_secs = vec![0.0; n_layers];
    let mut measured: Option<Vec<Tally>> = None;
    let (mut agree, mut agree_fixed, mut fixed_secs, mut secure_secs, mut correct) = (0usize, 0usize, 0.0, 0.0, 0usize);
    let mut transcripts = Vec::with_capacity(8 * results.len());
    let mut messages = Vec::new();
    for mut r in results {
        if messages.is_empty() {
            messages = std::mem::take(&mut r.messages);
        }
        transcripts.extend_from_slice(&r.transcript.to_le_bytes());
        for (m, e) in max_error.iter_mut().zip(&r.max_error) {
            *m = (*m).max(*e);
        }
        for (d, c) in decisions.iter_mut().zip(&r.decisions) {
            if let Some(c) = c {
                *d = Some(d.unwrap_or_default().merge(*c));
            }
        }
        for (s, t) in layer_secs.iter_mut().zip(&r.layer_secs) {
            *s += t / samples as f64;
        }
        // Messages do not depend on the data: every sample sends the same counts.
        if let Some(first) = &measured {
            assert_eq!(first, &r.tallies, "message counts changed between samples");
        } else {
            measured = Some(r.tallies);
        }
        agree += r.agrees_float;
        agree_fixed += r.agrees_fixed;
        fixed_secs += r.fixed_secs;
        secure_secs += r.secure_secs;
        correct += r.correct;
    }
    let measured = measured.unwrap_or_default();
    let layers: Vec<LayerSim> = prediction
        .layers
        .iter()
        .enumerate()
        .map(|(i, c)| LayerSim {
            name: c.name.clone(),
            op: c.op.clone(),
            measured: measured.get(i).map(Counts::measured).unwrap_or_else(|| Counts::measured(&Tally::default())),
            predicted: predicted(c),
            max_error_lsb: max_error[i],
            decisions: decisions[i],
            seconds: layer_secs[i],
            predicted_seconds: table.compute.is_some().then_some(c.compute_seconds),
        })
        .collect();
    // Bits add up; rounds run along the critical path (branches side by side).
    let sum = |f: &dyn Fn(&LayerSim) -> Counts| {
        let (rounds, rounds_depth) = cost::critical_rounds(net, &net.order, &layers, |l| (f(l).rounds, f(l).rounds_depth));
        let summed = layers.iter().map(f).fold(Counts::measured(&Tally::default()), |a, b| Counts {
            rounds: a.rounds + b.rounds,
            rounds_depth: a.rounds_depth + b.rounds_depth,
            bits: a.bits + b.bits,
            bits_by_party: a.bits_by_party + b.bits_by_party,
            bits_by_protocol: cost::BitsByProtocol {
                linear: a.bits_by_protocol.linear + b.bits_by_protocol.linear,
                drelu: a.bits_by_protocol.drelu + b.bits_by_protocol.drelu,
                mul: a.bits_by_protocol.mul + b.bits_by_protocol.mul,
            },
        });
        Counts { rounds, rounds_depth, ..summed }
    };
    let count = samples;
    let samples = samples.max(1) as f64;
    let total = TotalSim {
        accuracy: matches!(inputs, Inputs::Images { .. }).then(|| correct as f64 / samples),
        measured: sum(&|l| l.measured),
        predicted: sum(&|l| l.predicted),
        samples: count,
        agreement: agree as f64 / samples,
        agreement_fixed: agree_fixed as f64 / samples,
        seconds_per_image: wall_secs / samples,
        threads: rayon::current_num_threads(),
        secure_seconds_per_image: secure_secs / samples,
        plaintext_fixed_seconds_per_image: fixed_secs / samples,
        predicted_seconds_per_image: table.compute.is_some().then(|| layers.iter().filter_map(|l| l.predicted_seconds).sum()),
        transcript: format!("{:016x}", crate::mpc::prg::fnv1a(&transcripts)),
    };
    Ok(SimReport {
        messages,
        architecture: net.name.clone(),
        plan: planned.plan.name.clone(),
        protocol: table.name.clone(),
        conv_masking: masking,
        frac_bits: opts.frac,
        seed: opts.seed,
        batch,
        weights: weights.to_string(),
        inputs: match inputs {
            Inputs::Generated => format!("generated (N(0, 1) per element, seed {})", opts.seed),
            Inputs::Images { source, .. } => source.clone(),
        },
        layers,
        total,
    })
}

/// Bytes a simulation of `network` holds at its peak with `at_once` samples running
/// side by side: every parameter as f32, its fixed-point encoding and two shares;
/// per sample every layer's output kept (float, fixed point and two shares) plus
/// the largest layer's im2col matrix as masked shares and Beaver triples, and each
/// thread's buffers (keystreams, product panels). The factors put the estimate 1.7x
/// or more above the peak RSS of the four shipped networks with 1 and 4 samples on 2
/// threads (`/usr/bin/time -f %M`; cifar10 105 and 199 MB, estimated 241 and 409).
pub fn memory_estimate(network: &crate::graph::Network, at_once: usize) -> u64 {
    const PER_WEIGHT: u64 = 4 * 2 + 8 * 4;
    const PER_OUTPUT: u64 = 8 * 11;
    const PER_IM2COL: u64 = 8 * 13;
    const PER_THREAD: u64 = 64 << 20;
    const BASE: u64 = 64 << 20;
    let (mut weights, mut outputs, mut im2col) = (0u64, 0u64, 0u64);
    for &n in &network.order {
        let s = network.sizes(n);
        weights = weights.saturating_add(s.weights);
        outputs = outputs.saturating_add(s.outputs);
        im2col = im2col.max(s.im2col.saturating_add(s.inputs));
    }
    let per_sample = outputs.saturating_mul(PER_OUTPUT).saturating_add(im2col.saturating_mul(PER_IM2COL)).saturating_add(PER_THREAD);
    BASE.saturating_add(weights.saturating_mul(PER_WEIGHT)).saturating_add(per_sample.saturating_mul(at_once as u64))
}

/// The largest error each layer's secure output may have against plaintext fixed
/// point, in lsb, when nothing fails: per truncation floor or floor + 1 (SecureML's
/// local truncation; fixed point floors), grown by the layers after it. A conv or
/// linear layer turns an input error e into at most (largest row sum of |weight|) e
/// plus one truncation; average pooling into about e and one truncation; a regular ReLU
/// keeps it (|relu(a) - relu(b)| <= |a - b|); an addition adds its inputs'. `None`
/// from a shared ReLU layer on: a flipped group is off by its whole value
/// (`DecisionCheck` bounds those instead). In `network.order`.
pub fn error_bounds(planned: &Planned, params: &Params, frac: u32) -> Vec<Option<u64>> {
    use crate::spec::Op;
    let net = planned.network;
    let scale = (1u64 << frac) as f64;
    // Weights as the fixed-point encoding holds them, in value units.
    let encoded = |w: f32| (w as f64 * scale).round().abs() / scale;
    let mut bound: Vec<Option<f64>> = vec![None; net.graph.node_count()];
    bound[net.input.index()] = Some(0.0);
    let mut out = Vec::with_capacity(net.order.len());
    for (node, layer) in net.layers() {
        let input = |i: usize| bound[layer.inputs[i].index()];
        let e = match layer.op.as_ref().expect("layers() yields layers") {
            Op::Conv { .. } | Op::Linear { .. } => input(0).map(|e| {
                let w = &params.layers[&layer.name].weight;
                let rows = layer.output.chw().map_or(layer.output.numel(), |(c, _, _)| c);
                let row_sum = w.chunks(w.len() / rows.max(1)).map(|r| r.iter().map(|&v| encoded(v)).sum::<f64>()).fold(0.0, f64::max);
                (row_sum * e).ceil() + 1.0
            }),
            // The n taps' errors times the encoded 1/n, which is at most 1/n + 1/2 lsb.
            Op::AvgPool { kernel, .. } => input(0).map(|e| (e * (1.0 + (kernel.0 * kernel.1) as f64 / (2.0 * scale))).ceil() + 1.0),
            // A maximum moves by no more than its inputs do.
            Op::MaxPool { .. } => input(0),
            Op::Relu if planned.relu_plan(node).is_none() => input(0),
            Op::Relu => None,
            Op::Add => input(0).zip(input(1)).map(|(a, b)| a + b),
            Op::Flatten | Op::Dropout { .. } | Op::BatchNorm => input(0),
        };
        bound[node.index()] = e;
        out.push(e.map(|e| e as u64));
    }
    out
}

/// Expected share-truncation failures per image allowed, as a power of two: each
/// truncated element x fails with probability about |x| / 2^63
/// (`ring::truncate_share`), and a failure is an error of about 2^(64 - f).
const FAILURE_LOG2: f64 = -10.0;

/// The most fractional bits the 64-bit ring holds for this network and these
/// weights. A product of two encoded values carries 2f fractional bits before it is
/// truncated, so with the largest layer value |y| (measured in float on the first
/// input, doubled for the others) and N truncated elements per image (every layer
/// output, an upper bound), N 2|y| 2^(2f) / 2^63 expected failures per image must
/// stay under 2^FAILURE_LOG2. Returns the bound, |y| and N.
pub fn max_frac_bits(planned: &Planned, params: &Params, inputs: &Inputs, opts: &Options) -> (u32, f64, u64) {
    let network = planned.network;
    let input = match inputs {
        Inputs::Images { images, .. } if !images.is_empty() => images[0].clone(),
        _ => generated_input(network.input_dims().iter().product(), opts.seed, 0),
    };
    let outputs = run(&mut Float, planned, params, &input, opts.seed);
    let in_layers = outputs.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    let largest = input.iter().fold(in_layers.max(1.0), |m, &v| m.max((v as f64).abs()));
    let truncated = network.order.iter().fold(0u64, |n, &l| n.saturating_add(network.sizes(l).outputs)).max(1);
    let bits = ((63.0 + FAILURE_LOG2 - (truncated as f64).log2() - (2.0 * largest).log2()) / 2.0).floor();
    (bits.clamp(0.0, 62.0) as u32, largest, truncated)
}

/// Which weights a secure inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights<'a> {
    /// Seeded random He-normal weights (`Options::seed`).
    Random,
    /// A checkpoint of this very plan (`explore train --plan` wrote it).
    Trained(&'a Path),
    /// The original network's trained checkpoint under any plan: every conv, linear
    /// and batchnorm tensor transfers, shared decisions start from their default
    /// weights (`checkpoint::load_init`).
    Original(&'a Path),
    /// The network's shipped original (`[trained]` in its file) when present, else random.
    Shipped,
}

impl<'a> Weights<'a> {
    /// `Shipped` made concrete for this network.
    pub fn resolve(self, network: &'a Network) -> Weights<'a> {
        match (self, &network.trained) {
            (Weights::Shipped, Some(t)) => Weights::Original(&t.weights),
            (Weights::Shipped, None) => Weights::Random,
            (w, _) => w,
        }
    }

    /// The images to run without a dataset: the shipped test images, with the
    /// shipped weights they go with.
    pub fn default_inputs(self, network: &'a Network) -> Option<&'a Path> {
        let t = network.trained.as_ref()?;
        match self.resolve(network) {
            Weights::Original(p) if p == t.weights => t.test_images.as_deref(),
            _ => None,
        }
    }
}

/// Secure inference of a planned network with `weights` on the test images of
/// `data_dir` (without one, the network's shipped test images when the weights are
/// its shipped original, else generated inputs). Batchnorm is folded into the layer
/// before it, as inference runs it.
pub fn run_planned(
    planned: &Planned,
    weights: Weights,
    data_dir: Option<&Path>,
    table: &ProtocolTable,
    opts: &Options,
    bar: &indicatif::ProgressBar,
) -> crate::error::Result<SimReport> {
    let p = prepare(planned, weights, data_dir, opts)?;
    simulate(planned, table, &p.opts, &p.params, &p.described, &p.inputs, bar)
}

/// What a secure inference runs on: parameters (batchnorm folded), inputs, their
/// description, and the options with the precision fitted.
pub struct Prepared {
    pub params: Params,
    pub inputs: Inputs,
    pub described: String,
    pub opts: Options,
}

/// Loads the weights and inputs of `run_planned` and fits the precision.
pub fn prepare(planned: &Planned, weights: Weights, data_dir: Option<&Path>, opts: &Options) -> crate::error::Result<Prepared> {
    let network = planned.network;
    let data_dir = data_dir.or_else(|| weights.default_inputs(network));
    let (params, stats, described) = match weights.resolve(network) {
        Weights::Trained(ckpt) => {
            let (p, meta) = checkpoint::load(ckpt, planned)?;
            (p, checkpoint::input_stats(&meta, network.input_dims()[0]), format!("checkpoint {}", ckpt.display()))
        }
        Weights::Original(ckpt) => {
            let (p, meta) = checkpoint::load_init(ckpt, planned)?;
            let what = if planned.plan.relu.is_empty() { "" } else { " (the original's, shared decisions at their defaults)" };
            (p, checkpoint::input_stats(&meta, network.input_dims()[0]), format!("checkpoint {}{what}", ckpt.display()))
        }
        Weights::Random | Weights::Shipped => (Params::random(planned, opts.seed), None, format!("random (He-normal, seed {})", opts.seed)),
    };
    let inputs = match data_dir {
        None => Inputs::Generated,
        Some(dir) => {
            let ds = crate::data::load_normalised(dir, opts.samples, network.input_dims(), stats)?;
            let images = (0..ds.test.len()).map(|i| ds.test.image(i).to_vec()).collect();
            Inputs::Images { images, labels: ds.test.labels.clone(), source: format!("test images of {}", dir.display()) }
        }
    };
    let params = params.folded(network);
    let (bound, largest, truncated) = max_frac_bits(planned, &params, &inputs, opts);
    let mut opts = *opts;
    if opts.frac > bound && opts.fit_frac {
        opts.frac = bound;
    }
    if opts.frac > bound {
        return Err(crate::error::Error::invalid(
            &network.path,
            Some(format!("--frac-bits {}", opts.frac)),
            format!(
                "too many for the 64-bit ring: values reach {largest:.2}, and {truncated} truncations x 2 x {largest:.2} x 2^(2 x {}) / 2^63 expected wrap-arounds per image must stay under 2^{FAILURE_LOG2}; use at most {bound}",
                opts.frac
            ),
        ));
    }
    Ok(Prepared { params, inputs, described, opts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Network;
    use crate::spec::{ArchSpec, PlanSpec};
    use std::path::Path;

    #[test]
    fn a_wrong_decision_and_a_score_off_by_more_than_truncation_are_caught() {
        let arch = ArchSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("architectures/svhn.toml")).unwrap();
        let net = Network::build(&arch).unwrap();
        let text = "name = \"p\"\narchitecture = \"svhn\"\n[relu.relu1]\ngroup = \"channel\"\ndecision = \"center\"\n";
        let plan = PlanSpec::parse(Path::new("p.toml"), text).unwrap();
        let planned = Planned::new(&net, &plan).unwrap();
        let params = Params::random(&planned, 1);
        let relu1 = net.find("relu1").unwrap();
        let ring = |v: &[i64]| v.iter().map(|&x| x as u64).collect::<Vec<u64>>();
        let mut fixed_scores = vec![100; 32];
        let mut fixed_decisions = vec![1; 32];
        let (mut secure_scores, mut secure_decisions) = (fixed_scores.clone(), fixed_decisions.clone());
        // Group 0: a wrong decision at score 1000. Group 1: a flip at -1 (truncation).
        // Group 2: a score 7 lsb off, with no error in the layer's input (bound 2).
        fixed_scores[..3].copy_from_slice(&[1000, -1, 50]);
        secure_scores[..3].copy_from_slice(&[1000, 1, 57]);
        fixed_decisions[1] = 0;
        secure_decisions[0] = 0;
        let fixed = [(relu1, ring(&fixed_scores), ring(&fixed_decisions))];
        let secure = [(relu1, ring(&secure_scores), ring(&secure_decisions))];
        let checks = check_decisions(&planned, &params, 13, &fixed, &secure, &vec![0; net.order.len()]);
        let c = checks.iter().flatten().next().copied().unwrap();
        assert_eq!((c.groups, c.flips, c.unexplained_flips, c.beyond_bound), (32, 2, 1, 1));
        assert_eq!((c.max_score_error_lsb, c.max_bound_lsb), (7, 2));
    }

    /// No two (run, image) pairs of a seed, nor the same pair under two seeds, share
    /// the protocols' seed (so no mask stream is reused across images or points).
    #[test]
    fn protocol_seeds_never_repeat_across_runs_images_and_seeds() {
        let mut seen = std::collections::HashSet::new();
        for seed in [1, 2] {
            for run in 0..200 {
                for sample in 0..500 {
                    assert!(seen.insert(protocol_seed(seed, run, sample)), "seed {seed}, run {run}, image {sample}");
                }
            }
        }
    }
}
