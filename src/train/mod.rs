//! The embedded training loop: minibatch SGD with momentum (or Adam), weight decay,
//! step or cosine learning-rate schedules, optional augmentation, evaluation on the
//! test split every epoch, and the plan's shared ReLU trained in place.
//!
//! Reproducibility: a batch is cut into fixed chunks of `CHUNK` images; chunks run in
//! parallel and their gradients are added in chunk order, so the same seed gives
//! bit-identical weights on any number of threads.

pub mod cluster;
pub mod net;
pub mod record;
pub mod sgemm;

pub use crate::spec::train::{Distill, Optimizer, Schedule, TrainConfig};

use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::graph::sharing::Planned;
use crate::infer::model::Params;
use crate::mpc::prg::Prg;
use crate::spec::PlanSpec;
use net::{Mode, Prepared, backward, forward};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Images per chunk: the unit of parallel work and of gradient summation order.
pub const CHUNK: usize = 16;

/// Most memory a fine-tune spends on the teacher's remembered logits (CIFAR-10's
/// 50,000 x 10 take 2 MB); above it the teacher runs on every batch instead.
const REMEMBER_BYTES: usize = 1 << 30;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub seconds: f64,
    pub lr: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainReport {
    pub architecture: String,
    pub plan: String,
    pub dataset: String,
    pub train_images: usize,
    pub test_images: usize,
    pub config: TrainConfig,
    pub threads: usize,
    pub history: Vec<EpochLog>,
    pub epochs: usize,
    pub test_accuracy: f64,
    pub train_seconds: f64,
    pub images_per_second: f64,
}

/// Optimiser state: one buffer (SGD momentum) or two (Adam) per parameter.
pub struct State {
    m: Params,
    v: Params,
    t: i32,
}

impl State {
    pub fn new(params: &Params) -> State {
        State { m: zeros_like(params), v: zeros_like(params), t: 0 }
    }
}

/// One optimisation step on a batch of `labels.len()` images (concatenated in `x`):
/// forward and backward in parallel chunks, gradients summed in chunk order, then
/// the optimiser update. Returns the summed loss and the correct predictions.
#[allow(clippy::too_many_arguments)]
pub fn batch_step(
    prepared: &Prepared,
    params: &mut Params,
    state: &mut State,
    cfg: &TrainConfig,
    x: &[f32],
    labels: &[u8],
    lr: f64,
    seed: u64,
    teacher: Option<Taught>,
) -> (f64, usize) {
    let net = prepared.planned.network;
    let classes = net.node(net.output).output.numel();
    let n = labels.len();
    let len = x.len() / n.max(1);
    #[allow(clippy::type_complexity)]
    let results: Vec<(f64, usize, Params, Vec<(String, Vec<f32>, Vec<f32>)>, usize)> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (a, b) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let pass = forward(prepared, params, &x[a * len..b * len], b - a, Mode::Train { seed: seed.wrapping_add(c as u64) });
            let (l, k, mut dlogits) = softmax_xent(pass.logits(net), &labels[a..b], classes, n as f32);
            match teacher {
                Some(Taught::Run(t)) => {
                    let taught = forward(&t.prepared, &t.params, &x[a * len..b * len], b - a, Mode::Eval { seed });
                    distill_into(&mut dlogits, pass.logits(net), taught.logits(net), classes, t.distill, n as f32);
                }
                Some(Taught::Logits(logits, d)) => {
                    distill_into(&mut dlogits, pass.logits(net), &logits[a * classes..b * classes], classes, d, n as f32)
                }
                None => {}
            }
            let grads = backward(prepared, params, &pass, dlogits);
            (l, k, grads, pass.norm_stats, b - a)
        })
        .collect();
    let mut grads = zeros_like(params);
    let (mut loss, mut correct) = (0.0, 0);
    for (l, k, g, _, _) in &results {
        loss += l;
        correct += k;
        add_into(&mut grads, g);
    }
    step(cfg, prepared.planned, params, &grads, state, lr);
    // Batchnorm running statistics: the chunks' statistics weighted by chunk size,
    // in chunk order, then PyTorch's exponential average (momentum 0.1).
    let mut batch: Vec<(String, Vec<f32>)> = Vec::new();
    for (_, _, _, stats, size) in &results {
        for (k, (name, mean, var)) in stats.iter().enumerate() {
            let w = *size as f32 / n as f32;
            if batch.len() <= k {
                batch.push((name.clone(), vec![0.0; mean.len() + var.len()]));
            }
            batch[k].1.iter_mut().zip(mean.iter().chain(var)).for_each(|(acc, v)| *acc += w * v);
        }
    }
    for (name, stat) in batch {
        let buffers = &mut params.layers.get_mut(&name).expect("batchnorm has parameters").buffers;
        buffers.iter_mut().zip(&stat).for_each(|(r, s)| *r = 0.9 * *r + 0.1 * s);
    }
    (loss, correct)
}

fn zeros_like(p: &Params) -> Params {
    Params { layers: p.layers.iter().map(|(k, v)| (k.clone(), v.zeros_like())).collect() }
}

fn add_into(acc: &mut Params, g: &Params) {
    for (k, gl) in &g.layers {
        let al = acc.layers.get_mut(k).expect("same layers");
        al.weight.iter_mut().zip(&gl.weight).for_each(|(a, b)| *a += b);
        al.bias.iter_mut().zip(&gl.bias).for_each(|(a, b)| *a += b);
    }
}

fn step(cfg: &TrainConfig, planned: &Planned, params: &mut Params, grads: &Params, state: &mut State, lr: f64) {
    state.t += 1;
    let (lr, wd, mu) = (lr as f32, cfg.weight_decay as f32, cfg.momentum as f32);
    let mut names: Vec<String> = params.layers.keys().cloned().collect();
    names.sort();
    for name in &names {
        // Decay conv and linear weights, not biases, batchnorm or decision weights.
        let decays = planned
            .network
            .find(name)
            .is_some_and(|n| matches!(planned.network.node(n).op, Some(crate::spec::Op::Conv { .. } | crate::spec::Op::Linear { .. })));
        let p = params.layers.get_mut(name).expect("listed");
        let g = &grads.layers[name];
        let (m, v) = (state.m.layers.get_mut(name).expect("same layers"), state.v.layers.get_mut(name).expect("same layers"));
        for (w, gw, mw, vw, decay) in [
            (&mut p.weight, &g.weight, &mut m.weight, &mut v.weight, if decays { wd } else { 0.0 }),
            (&mut p.bias, &g.bias, &mut m.bias, &mut v.bias, 0.0),
        ] {
            for i in 0..w.len() {
                let gi = gw[i] + decay * w[i];
                match cfg.optimizer {
                    Optimizer::Sgd => {
                        mw[i] = mu * mw[i] + gi;
                        w[i] -= lr * mw[i];
                    }
                    Optimizer::Adam => {
                        let (b1, b2) = (0.9f32, 0.999f32);
                        mw[i] = b1 * mw[i] + (1.0 - b1) * gi;
                        vw[i] = b2 * vw[i] + (1.0 - b2) * gi * gi;
                        let mh = mw[i] / (1.0 - b1.powi(state.t));
                        let vh = vw[i] / (1.0 - b2.powi(state.t));
                        w[i] -= lr * mh / (vh.sqrt() + 1e-8);
                    }
                }
            }
        }
    }
}

/// Softmax cross-entropy over `n` rows of `classes` logits: (summed loss, correct
/// predictions, gradient of the loss divided by `scale`).
pub fn softmax_xent(logits: &[f32], labels: &[u8], classes: usize, scale: f32) -> (f64, usize, Vec<f32>) {
    let mut grad = vec![0f32; logits.len()];
    let (mut loss, mut correct) = (0f64, 0usize);
    for (r, row) in logits.chunks(classes).enumerate() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let y = labels[r] as usize;
        loss += -((exps[y] / sum).max(1e-30) as f64).ln();
        let pred = row.iter().enumerate().fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
        correct += (pred == y) as usize;
        for (i, e) in exps.iter().enumerate() {
            grad[r * classes + i] = (e / sum - (i == y) as u8 as f32) / scale;
        }
    }
    (loss, correct, grad)
}

/// The trained network a fine-tune distils from: the original plan's forward pass in
/// evaluation mode, with its settings.
pub struct Teacher<'a> {
    pub prepared: Prepared<'a>,
    pub params: Params,
    pub distill: Distill,
    /// Its logits for every training image, when the images do not change from epoch
    /// to epoch (no augmentation): one forward pass per image for the whole fine-tune.
    pub remembered: Option<Vec<f32>>,
}

impl Teacher<'_> {
    /// Computes the teacher's logits for every image of `split` once. Evaluation
    /// mode computes each image on its own, so they equal, bit for bit, what the
    /// teacher gives for the same image inside any batch.
    pub fn remember(&mut self, split: &Split, seed: u64) {
        let net = self.prepared.planned.network;
        let len = split.image_len();
        let chunks: Vec<Vec<f32>> = (0..split.len().div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let (a, b) = (c * CHUNK, ((c + 1) * CHUNK).min(split.len()));
                let pass = forward(&self.prepared, &self.params, &split.images[a * len..b * len], b - a, Mode::Eval { seed });
                pass.logits(net).to_vec()
            })
            .collect();
        self.remembered = Some(chunks.concat());
    }
}

/// What a batch step distils from: the teacher run on the batch, or its remembered
/// logits for the batch's images (in batch order).
#[derive(Clone, Copy)]
pub enum Taught<'a> {
    Run(&'a Teacher<'a>),
    Logits(&'a [f32], Distill),
}

/// Mixes the teacher into the cross-entropy gradient `grad` (of `student` logits,
/// divided by `scale`): (1 - w) grad + w T (softmax(s / T) - softmax(t / T)) / scale,
/// the gradient of (1 - w) CE + w T^2 KL(teacher || student) at temperature T.
pub fn distill_into(grad: &mut [f32], student: &[f32], teacher: &[f32], classes: usize, d: Distill, scale: f32) {
    let (t, w) = (d.temperature as f32, d.weight as f32);
    let softened = |row: &[f32]| -> Vec<f32> {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = row.iter().map(|v| ((v - max) / t).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.into_iter().map(|v| v / sum).collect()
    };
    for ((g, s), te) in grad.chunks_mut(classes).zip(student.chunks(classes)).zip(teacher.chunks(classes)) {
        let (ps, pt) = (softened(s), softened(te));
        for ((gi, a), b) in g.iter_mut().zip(&ps).zip(&pt) {
            *gi = (1.0 - w) * *gi + w * t * (a - b) / scale;
        }
    }
}

/// One augmented copy of image `i`: random crop after 4-pixel zero padding and a
/// random horizontal flip, drawn from `rng`.
fn augmented(split: &Split, i: usize, rng: &mut Prg) -> Vec<f32> {
    let [c, h, w] = split.shape;
    let src = split.image(i);
    let (dy, dx, flip) = (rng.below(9) as isize - 4, rng.below(9) as isize - 4, rng.below(2) == 1);
    let mut out = vec![0f32; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (y as isize + dy, if flip { (w - 1 - x) as isize } else { x as isize } + dx);
                if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                    out[(ch * h + y) * w + x] = src[(ch * h + sy as usize) * w + sx as usize];
                }
            }
        }
    }
    out
}

/// Whether training on `split` under `cfg` augments its images (random crops and
/// flips apply to colour images only), so that inputs change from epoch to epoch.
fn augments(cfg: &TrainConfig, split: &Split) -> bool {
    cfg.augment && split.shape[0] == 3
}

/// Accuracy on a split, in parallel chunks (evaluation mode).
pub fn evaluate(prepared: &Prepared, params: &Params, split: &Split, classes: usize, seed: u64) -> f64 {
    let net = prepared.planned.network;
    let len = split.image_len();
    let correct: usize = (0..split.len().div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (a, b) = (c * CHUNK, ((c + 1) * CHUNK).min(split.len()));
            let pass = forward(prepared, params, &split.images[a * len..b * len], b - a, Mode::Eval { seed: seed.wrapping_add(c as u64) });
            softmax_xent(pass.logits(net), &split.labels[a..b], classes, 1.0).1
        })
        .sum();
    correct as f64 / split.len().max(1) as f64
}

/// Trains `params` in place on `data`; `on_epoch` sees each epoch's log line and a
/// progress callback sees every finished batch.
pub fn train(
    planned: &Planned,
    params: &mut Params,
    data: &Dataset,
    cfg: &TrainConfig,
    teacher: Option<&Teacher>,
    mut on_batch: impl FnMut(usize, usize),
    mut on_epoch: impl FnMut(&EpochLog),
) -> TrainReport {
    let prepared = Prepared::new(planned);
    let net = planned.network;
    let classes = net.node(net.output).output.numel();
    let train_set = &data.train;
    let len = train_set.image_len();
    let batches = train_set.len().div_ceil(cfg.batch_size);
    let mut state = State::new(params);
    let mut history = Vec::new();
    let started = Instant::now();
    let mut seen = 0usize;
    let mut remembered = Vec::new();
    for epoch in 0..cfg.epochs {
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        let mut rng = Prg::new(cfg.seed, &format!("epoch/{epoch}"));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let (mut loss, mut correct) = (0f64, 0usize);
        let mut lr = cfg.lr;
        for batch in 0..batches {
            let idx = &order[batch * cfg.batch_size..((batch + 1) * cfg.batch_size).min(order.len())];
            let n = idx.len();
            let mut x = Vec::with_capacity(n * len);
            for &i in idx {
                if augments(cfg, train_set) {
                    x.extend(augmented(train_set, i, &mut rng));
                } else {
                    x.extend_from_slice(train_set.image(i));
                }
            }
            let labels: Vec<u8> = idx.iter().map(|&i| train_set.labels[i]).collect();
            let step_seed = cfg.seed ^ ((epoch as u64) << 32 | batch as u64);
            lr = cfg.lr_at(epoch, epoch * batches + batch, cfg.epochs * batches);
            let taught = teacher.map(|t| match &t.remembered {
                Some(all) => {
                    remembered.clear();
                    idx.iter().for_each(|&i| remembered.extend_from_slice(&all[i * classes..(i + 1) * classes]));
                    Taught::Logits(&remembered, t.distill)
                }
                None => Taught::Run(t),
            });
            let (l, k) = batch_step(&prepared, params, &mut state, cfg, &x, &labels, lr, step_seed, taught);
            loss += l;
            correct += k;
            seen += n;
            on_batch(batch + 1, batches);
        }
        let test_accuracy = evaluate(&prepared, params, &data.test, classes, cfg.seed);
        let log = EpochLog {
            epoch: epoch + 1,
            loss: loss / train_set.len().max(1) as f64,
            train_accuracy: correct as f64 / train_set.len().max(1) as f64,
            test_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
            lr,
        };
        on_epoch(&log);
        history.push(log);
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let test_accuracy = history.last().map_or_else(|| evaluate(&prepared, params, &data.test, classes, cfg.seed), |h| h.test_accuracy);
    TrainReport {
        architecture: net.name.clone(),
        plan: planned.plan.name.clone(),
        dataset: data.root.display().to_string(),
        train_images: train_set.len(),
        test_images: data.test.len(),
        config: cfg.clone(),
        threads: rayon::current_num_threads(),
        epochs: cfg.epochs,
        history,
        test_accuracy,
        train_seconds,
        images_per_second: seen as f64 / train_seconds.max(1e-9),
    }
}

/// Bytes a training run of `network` holds at its peak on `threads` threads with
/// `images` images loaded (both splits): the parameters with their gradients and
/// optimiser state, each thread's chunk of `CHUNK` images with every layer's
/// activations and im2col matrices kept for the backward pass, and the images as
/// f32. The factors put the estimate 1.3x or more above the peak RSS of 1-epoch runs
/// on 2 threads: fashion_mnist 183-197 MB (--limit 300 to 10,000), cifar10 204 MB
/// and cifar10_bn 267 MB (--limit 500).
pub fn memory_estimate(network: &crate::graph::Network, threads: usize, images: u64) -> u64 {
    const PER_WEIGHT: u64 = 4 * 6;
    const PER_ACTIVATION: u64 = 4 * 8;
    const BASE: u64 = 192 << 20;
    let (mut weights, mut activations) = (0u64, 0u64);
    for &n in &network.order {
        let sizes = network.sizes(n);
        weights = weights.saturating_add(sizes.weights);
        activations = activations.saturating_add(sizes.outputs).saturating_add(sizes.im2col);
    }
    let input: u64 = network.input_dims().iter().fold(1u64, |a, &d| a.saturating_mul(d as u64));
    BASE.saturating_add(weights.saturating_mul(PER_WEIGHT))
        .saturating_add(activations.saturating_mul(PER_ACTIVATION).saturating_mul((CHUNK * threads.max(1)) as u64))
        .saturating_add(images.saturating_mul(input).saturating_mul(4))
}

/// The dataset as a checkpoint's weights expect it: a dataset loaded with other
/// input statistics than the checkpoint's (a subset) is brought to them.
pub fn as_trained<'a>(dataset: &'a Dataset, meta: &HashMap<String, String>) -> std::borrow::Cow<'a, Dataset> {
    match crate::infer::checkpoint::input_stats(meta, dataset.train.shape[0]) {
        Some((mean, std)) if mean != dataset.mean || std != dataset.std => {
            std::borrow::Cow::Owned(crate::data::renormalised(dataset, &mean, &std))
        }
        _ => std::borrow::Cow::Borrowed(dataset),
    }
}

/// Where training starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// Seeded random weights (`TrainConfig::seed`).
    Random,
    /// A checkpoint of the same plan, continued.
    Resume(&'a Path),
    /// A checkpoint of the same architecture under any plan (`checkpoint::load_init`).
    Init(&'a Path),
}

/// Trains a planned network on a loaded dataset from `start`, drawing each epoch's progress on `bar`
/// and logging one line per epoch on standard error; writes the checkpoint to `out`
/// when given, with the settings and the input normalisation in its metadata.
pub fn train_planned(
    planned: &Planned,
    dataset: &Dataset,
    start: Start,
    out: Option<&Path>,
    cfg: &TrainConfig,
    bar: indicatif::ProgressBar,
) -> Result<TrainReport> {
    if dataset.train.is_empty() || dataset.test.is_empty() {
        return Err(Error::invalid(
            &dataset.root,
            None,
            format!("no images to train on ({} training, {} test)", dataset.train.len(), dataset.test.len()),
        ));
    }
    let (mut params, meta) = match start {
        Start::Random => (Params::random(planned, cfg.seed), Default::default()),
        Start::Resume(ckpt) => crate::infer::checkpoint::load(ckpt, planned)?,
        Start::Init(ckpt) => crate::infer::checkpoint::load_init(ckpt, planned)?,
    };
    let dataset = as_trained(dataset, &meta);
    let dataset = dataset.as_ref();
    // The teacher: the checkpoint the fine-tune starts from, as the original network.
    let original = PlanSpec::original();
    let teacher_net = Planned::new(planned.network, &original)?;
    let teacher = match (cfg.distill, start) {
        (None, _) => None,
        (Some(distill), Start::Init(ckpt)) => {
            let (params, _) = crate::infer::checkpoint::load(ckpt, &teacher_net)?;
            let mut teacher = Teacher { prepared: Prepared::new(&teacher_net), params, distill, remembered: None };
            // Unchanging inputs: the teacher's outputs once, not once per epoch, unless
            // they would take more memory than running it again costs time.
            let classes = planned.network.node(planned.network.output).output.numel();
            let bytes = dataset.train.len().saturating_mul(classes).saturating_mul(4);
            if !augments(cfg, &dataset.train) && bytes <= REMEMBER_BYTES {
                teacher.remember(&dataset.train, cfg.seed);
            }
            Some(teacher)
        }
        (Some(_), _) => {
            return Err(Error::invalid(
                Path::new("(training settings)"),
                Some("distill".into()),
                "distillation needs a teacher: start from the trained original (--init, or a sweep's [train] init)",
            ));
        }
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} batches, {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let epochs = cfg.epochs;
    let mut epoch = 1;
    bar.set_message(format!("1/{epochs}"));
    let prefix = if planned.plan.path.is_some() { format!("{}: ", planned.plan.name) } else { String::new() };
    let report = train(
        planned,
        &mut params,
        dataset,
        cfg,
        teacher.as_ref(),
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        |log| {
            bar.suspend(|| {
                eprintln!(
                    "{prefix}epoch {}/{epochs}: loss {:.4}, train {:.2}%, test {:.2}%, lr {:.4}, {:.1} s",
                    log.epoch,
                    log.loss,
                    100.0 * log.train_accuracy,
                    100.0 * log.test_accuracy,
                    log.lr,
                    log.seconds
                )
            });
            epoch += 1;
            bar.set_message(format!("{}/{epochs}", epoch.min(epochs)));
            bar.set_position(0);
        },
    );
    bar.finish_and_clear();
    if let Some(out) = out {
        // Every value as JSON text, so that readers parse it back exactly.
        fn json<T: Serialize>(v: &T) -> String {
            // Numbers and lists of numbers: serialization cannot fail.
            serde_json::to_string(v).expect("plain data serializes")
        }
        let meta = std::collections::HashMap::from([
            ("epochs".to_string(), json(&report.epochs)),
            ("test_accuracy".to_string(), json(&report.test_accuracy)),
            ("seed".to_string(), json(&cfg.seed)),
            ("input_mean".to_string(), json(&dataset.mean)),
            ("input_std".to_string(), json(&dataset.std)),
            ("dataset".to_string(), json(&dataset.root.display().to_string())),
            ("train_images".to_string(), json(&dataset.train.len())),
            ("test_images".to_string(), json(&dataset.test.len())),
            ("config".to_string(), json(cfg)),
            // The command line that made it (the CLI's, or the program's that called).
            (
                "command".to_string(),
                json(&std::iter::once("explore".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ")),
            ),
        ]);
        crate::infer::checkpoint::save(out, planned, &params, meta)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Network;
    use crate::spec::{ArchSpec, PlanSpec};

    const TINY: &str = "name = \"tiny\"\n[input]\nshape = [2, 6, 6]\n\
        [[layers]]\nname = \"c1\"\nop = \"conv\"\nout_channels = 3\nkernel = 3\npadding = 1\n\
        [[layers]]\nname = \"r1\"\nop = \"relu\"\n\
        [[layers]]\nname = \"c2\"\nop = \"conv\"\nout_channels = 3\nkernel = 1\n\
        [[layers]]\nname = \"sum\"\nop = \"add\"\ninputs = [\"r1\", \"c2\"]\n\
        [[layers]]\nname = \"p1\"\nop = \"avgpool\"\nkernel = 2\n\
        [[layers]]\nname = \"f\"\nop = \"flatten\"\n\
        [[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = 4\n";

    fn net(text: &str) -> Network {
        Network::build(&ArchSpec::parse(Path::new("tiny.toml"), text).unwrap()).unwrap()
    }

    fn loss(prepared: &Prepared, params: &Params, x: &[f32], labels: &[u8]) -> f64 {
        // Training mode: batchnorm uses the batch's statistics, as backward assumes.
        let pass = forward(prepared, params, x, labels.len(), Mode::Train { seed: 0 });
        softmax_xent(pass.logits(prepared.planned.network), labels, 4, 1.0).0
    }

    const TINY_BN: &str = "name = \"tiny-bn\"\n[input]\nshape = [2, 6, 6]\n\
        [[layers]]\nname = \"c1\"\nop = \"conv\"\nout_channels = 3\nkernel = 3\nstride = 2\npadding = 1\n\
        [[layers]]\nname = \"bn\"\nop = \"batchnorm\"\n\
        [[layers]]\nname = \"r1\"\nop = \"relu\"\n\
        [[layers]]\nname = \"f\"\nop = \"flatten\"\n\
        [[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = 4\n";

    /// Overlapping max pooling (3x3 windows every 2), then a ReLU after it.
    const TINY_MAX: &str = "name = \"tiny-max\"\n[input]\nshape = [2, 6, 6]\n\
        [[layers]]\nname = \"c1\"\nop = \"conv\"\nout_channels = 3\nkernel = 3\npadding = 1\n\
        [[layers]]\nname = \"mp\"\nop = \"maxpool\"\nkernel = 3\nstride = 2\n\
        [[layers]]\nname = \"r1\"\nop = \"relu\"\n\
        [[layers]]\nname = \"f\"\nop = \"flatten\"\n\
        [[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = 4\n";

    #[test]
    fn gradients_match_finite_differences() {
        grad_check(TINY);
        grad_check(TINY_BN);
        grad_check(TINY_MAX);
    }

    #[test]
    fn training_and_inference_pool_alike() {
        let network = net(TINY_MAX);
        let plan = PlanSpec::original();
        let planned = Planned::new(&network, &plan).unwrap();
        let params = Params::random(&planned, 5);
        let x: Vec<f32> = (0..72).map(|i| ((i * 5) % 13) as f32 / 6.0 - 1.0).collect();
        let trained = forward(&Prepared::new(&planned), &params, &x, 1, Mode::Eval { seed: 0 });
        let inferred = crate::infer::run(&mut crate::infer::plain::Float, &planned, &params, &x, 0);
        let pooled = network.order.iter().position(|&n| network.node(n).name == "mp").unwrap();
        assert_eq!(inferred[pooled].len(), 3 * 2 * 2);
        for (a, b) in trained.logits(&network).iter().zip(inferred.last().unwrap()) {
            assert!((*a as f64 - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn batchnorm_folds_into_the_conv_for_inference() {
        let network = net(TINY_BN);
        let plan = PlanSpec::original();
        let planned = Planned::new(&network, &plan).unwrap();
        let prepared = Prepared::new(&planned);
        let mut params = Params::random(&planned, 3);
        let bn = params.layers.get_mut("bn").unwrap();
        bn.weight = vec![1.5, 0.5, 2.0];
        bn.bias = vec![0.1, -0.2, 0.3];
        bn.buffers = vec![0.2, -0.1, 0.05, 0.8, 1.3, 0.6];
        let x: Vec<f32> = (0..72).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect();
        let unfolded = forward(&prepared, &params, &x, 1, Mode::Eval { seed: 0 });
        let folded = crate::infer::run(&mut crate::infer::plain::Float, &planned, &params.folded(&network), &x, 0);
        for (a, b) in unfolded.logits(&network).iter().zip(folded.last().unwrap()) {
            assert!((*a as f64 - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    fn grad_check(text: &str) {
        let network = net(text);
        let plan = PlanSpec::original();
        let planned = Planned::new(&network, &plan).unwrap();
        let prepared = Prepared::new(&planned);
        let params = Params::random(&planned, 3);
        let mut g = Prg::new(4, "x");
        let x: Vec<f32> = (0..2 * 72).map(|_| (g.below(2000) as f32 - 1000.0) / 500.0).collect();
        let labels = [1u8, 3];
        let pass = forward(&prepared, &params, &x, 2, Mode::Train { seed: 0 });
        let (_, _, dlogits) = softmax_xent(pass.logits(&network), &labels, 4, 1.0);
        let grads = backward(&prepared, &params, &pass, dlogits);
        let h = 2e-3f32;
        let mut checked = 0;
        for (name, lp) in &params.layers {
            for (part, values, analytic) in
                [("weight", &lp.weight, &grads.layers[name].weight), ("bias", &lp.bias, &grads.layers[name].bias)]
            {
                for i in (0..values.len()).step_by(5) {
                    let bump = |d: f32| {
                        let mut p = params.clone();
                        let t = p.layers.get_mut(name).unwrap();
                        if part == "weight" {
                            t.weight[i] += d
                        } else {
                            t.bias[i] += d
                        }
                        loss(&prepared, &p, &x, &labels)
                    };
                    let numeric = (bump(h) - bump(-h)) / (2.0 * h as f64);
                    let a = analytic[i] as f64;
                    assert!(
                        (numeric - a).abs() <= 2e-2 * numeric.abs().max(a.abs()).max(0.05),
                        "{name}.{part}[{i}]: numeric {numeric}, analytic {a}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 20);
    }

    /// Four classes told apart by which quadrant is bright.
    fn quadrants(n: usize, seed: u64) -> Split {
        let mut g = Prg::new(seed, "quadrants");
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let label = (i % 4) as u8;
            for c in 0..2 {
                for y in 0..6 {
                    for x in 0..6 {
                        let q = (y / 3) * 2 + x / 3;
                        let noise = g.below(100) as f32 / 200.0;
                        images.push(if q == label as usize { 1.0 + c as f32 * 0.1 } else { 0.0 } + noise - 0.5);
                    }
                }
            }
            labels.push(label);
        }
        Split { images, labels, shape: [2, 6, 6] }
    }

    fn dataset() -> Dataset {
        Dataset {
            name: "quadrants".into(),
            root: "quadrants".into(),
            classes: (0..4).map(|c| c.to_string()).collect(),
            train: quadrants(160, 1),
            test: quadrants(80, 2),
            mean: vec![],
            std: vec![],
        }
    }

    fn fit(plan_text: Option<&str>, threads: usize) -> (TrainReport, Params) {
        let network = net(TINY);
        let plan = plan_text.map_or_else(PlanSpec::original, |t| PlanSpec::parse(Path::new("p.toml"), t).unwrap());
        let planned = Planned::new(&network, &plan).unwrap();
        let mut params = Params::random(&planned, 7);
        let cfg = TrainConfig { epochs: 8, batch_size: 32, lr: 0.05, ..TrainConfig::default() };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let report = pool.install(|| train(&planned, &mut params, &dataset(), &cfg, None, |_, _| {}, |_| {}));
        (report, params)
    }

    #[test]
    fn learns_a_toy_task_with_and_without_sharing() {
        let (r, _) = fit(None, 2);
        assert!(r.test_accuracy >= 0.9, "{:?}", r.history);
        let shared = "name = \"s\"\n[relu.r1]\ngroup = \"patch\"\npatch = 3\ndecision = \"learned\"\nweights = \"public\"\nnoise = 0.1\n";
        let (r, p) = fit(Some(shared), 2);
        assert!(r.test_accuracy >= 0.75, "{:?}", r.history);
        assert_eq!(p.layers["r1"].weight.len(), 3 * 36);
        assert!(r.history[0].loss > r.history.last().unwrap().loss);
    }

    #[test]
    fn a_remembered_teacher_trains_exactly_as_a_running_one() {
        // The teacher with batchnorm (its running statistics matter in evaluation mode),
        // the student shares r1's decisions; distilled for two epochs both ways.
        let network = net(TINY_BN);
        let original = PlanSpec::original();
        let teacher_net = Planned::new(&network, &original).unwrap();
        let data = dataset();
        let cfg = TrainConfig { epochs: 2, batch_size: 32, lr: 0.05, ..TrainConfig::default() };
        let mut taught = Params::random(&teacher_net, 3);
        train(&teacher_net, &mut taught, &data, &cfg, None, |_, _| {}, |_| {});
        let shared = PlanSpec::parse(Path::new("p.toml"), "name = \"s\"\n[relu.r1]\ngroup = \"channel\"\n").unwrap();
        let student = Planned::new(&network, &shared).unwrap();
        let distill = Distill { temperature: 4.0, weight: 0.5 };
        let mut teacher = Teacher { prepared: Prepared::new(&teacher_net), params: taught.clone(), distill, remembered: None };
        let fine_tune = |teacher: &Teacher| {
            let mut p = taught.clone();
            let r = train(&student, &mut p, &data, &cfg, Some(teacher), |_, _| {}, |_| {});
            (r.history.iter().map(|h| h.loss).collect::<Vec<_>>(), p)
        };
        let running = fine_tune(&teacher);
        teacher.remember(&data.train, cfg.seed);
        assert_eq!(teacher.remembered.as_ref().unwrap().len(), data.train.len() * 4);
        let remembered = fine_tune(&teacher);
        assert_eq!(running, remembered);
        // And the teacher does change the result.
        let mut plain = taught.clone();
        train(&student, &mut plain, &data, &cfg, None, |_, _| {}, |_| {});
        assert_ne!(plain, running.1);
    }

    #[test]
    fn same_seed_gives_identical_weights_on_any_thread_count() {
        let (_, a) = fit(None, 1);
        let (_, b) = fit(None, 2);
        assert_eq!(a, b);
    }

    /// The distillation gradient is the derivative of (1 - w) CE + w T^2 KL(teacher ||
    /// student) (central differences in f64 on the same formula), and weight 0 leaves
    /// the cross-entropy gradient as it was.
    #[test]
    fn distillation_gradient_is_the_derivative_of_its_loss() {
        let (classes, scale) = (4, 2.0f32);
        let student = [0.3f32, -1.2, 2.0, 0.5, 1.0, 0.0, -0.5, 0.25];
        let teacher = [1.5f32, -0.2, 0.7, 0.1, -1.0, 2.0, 0.3, 0.0];
        let labels = [2u8, 1];
        let d = Distill { temperature: 3.0, weight: 0.7 };
        let (_, _, mut grad) = softmax_xent(&student, &labels, classes, scale);
        let ce_only = grad.clone();
        distill_into(&mut grad, &student, &teacher, classes, Distill { weight: 0.0, ..d }, scale);
        assert_eq!(grad, ce_only);
        distill_into(&mut grad, &student, &teacher, classes, d, scale);
        let loss = |z: &[f64]| -> f64 {
            let soft = |row: &[f64], t: f64| {
                let e: Vec<f64> = row.iter().map(|v| (v / t).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(|v| v / s).collect::<Vec<f64>>()
            };
            let mut total = 0.0;
            for (r, (zr, tr)) in z.chunks(classes).zip(teacher.chunks(classes)).enumerate() {
                let tr: Vec<f64> = tr.iter().map(|&v| v as f64).collect();
                let (p, ps, pt) = (soft(zr, 1.0), soft(zr, d.temperature), soft(&tr, d.temperature));
                let kl: f64 = pt.iter().zip(&ps).map(|(a, b)| a * (a / b).ln()).sum();
                total += (1.0 - d.weight) * -p[labels[r] as usize].ln() + d.weight * d.temperature * d.temperature * kl;
            }
            total / scale as f64
        };
        let z: Vec<f64> = student.iter().map(|&v| v as f64).collect();
        for i in 0..z.len() {
            let (mut up, mut down) = (z.clone(), z.clone());
            up[i] += 1e-5;
            down[i] -= 1e-5;
            let numeric = (loss(&up) - loss(&down)) / 2e-5;
            assert!((numeric - grad[i] as f64).abs() < 1e-4, "logit {i}: numeric {numeric}, analytic {}", grad[i]);
        }
    }
}
