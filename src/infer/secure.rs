//! Secure inference: every value secret-shared between P0 and P1, every product and
//! comparison run as the SecureNN protocol, every message counted per layer.

use super::{Backend, Product, Taps};
use crate::mpc::matmul::{im2col_t, matmul};
use crate::mpc::prg::Prg;
use crate::mpc::protocols::{beaver, drelu, mat_mul, maxpool, mul, truncate_shares};
use crate::mpc::ring::encode;
use crate::mpc::transport::{Clocks, Family, Link, Party, Tally};
use crate::mpc::{Ctx, Shares};
use crate::spec::protocol::ConvMasking;
use petgraph::graph::NodeIndex;
use std::collections::HashMap;
use std::time::Instant;

pub struct Secure {
    pub ctx: Ctx,
    pub masking: ConvMasking,
    /// The model owner's and the client's randomness for sharing their inputs.
    owner: Prg,
    mark: (usize, u64, u64),
    /// When the current layer began.
    layer_start: Instant,
    /// Messages tallied per layer, in execution order.
    pub layers: Vec<(NodeIndex, Tally)>,
    /// Each layer's messages in `ctx.net.log`, in the same order.
    pub layer_messages: Vec<std::ops::Range<usize>>,
    /// Wall seconds per layer, in the same order: all three parties' local work on
    /// this thread (message passing costs no time in the simulation).
    pub layer_seconds: Vec<f64>,
    /// Each shared layer's group scores and decisions, reconstructed from the two
    /// shares (the simulation's own check; nothing is sent), in run order.
    pub decided: Vec<(NodeIndex, Vec<u64>, Vec<u64>)>,
    /// The wire's clocks before the first layer, and at the end of each layer run.
    origin: Clocks,
    ends: HashMap<NodeIndex, Clocks>,
}

impl Secure {
    /// All three parties in this process (the simulator).
    pub fn new(seed: u64, frac: u32, masking: ConvMasking) -> Secure {
        Secure::with(Ctx::new(seed, frac), seed, masking)
    }

    /// One party of a networked run (`explore party`): P0 stands for the owners of
    /// the model and the input, and deals P1 its shares; P2 holds no share.
    pub fn party(seed: u64, frac: u32, masking: ConvMasking, me: Party, link: Box<dyn Link>) -> Secure {
        Secure::with(Ctx::party(seed, frac, me, link), seed, masking)
    }

    fn with(ctx: Ctx, seed: u64, masking: ConvMasking) -> Secure {
        let origin = ctx.net.clocks();
        Secure {
            origin,
            ends: HashMap::new(),
            ctx,
            masking,
            owner: Prg::new(seed, "owner"),
            mark: (0, 0, 0),
            layer_start: Instant::now(),
            layers: Vec::new(),
            layer_messages: Vec::new(),
            layer_seconds: Vec::new(),
            decided: Vec::new(),
        }
    }

    /// Values the owners share before inference: drawn at P0 (which stands for them)
    /// and dealt to P1 as setup, outside the counted protocol.
    fn encode_share(&mut self, n: usize, x: impl Iterator<Item = u64>) -> Shares {
        let ctx = &mut self.ctx;
        let shares = if ctx.at(Party::P0) {
            let plain: Vec<u64> = x.collect();
            Shares::share(&plain, &mut self.owner)
        } else {
            Shares::absent(n)
        };
        ctx.net.setup_send(Party::P0, Party::P1, &shares.s1);
        match (ctx.at(Party::P0), ctx.at(Party::P1)) {
            (true, true) => shares,
            (true, false) => Shares::new(shares.s0, Vec::new()),
            (false, true) => Shares::new(Vec::new(), ctx.net.setup_recv(Party::P0, Party::P1, n)),
            (false, false) => shares,
        }
    }

    /// Public constants that P1 must apply as P0 does: P0's parameters stand for the
    /// model's, so it sends them along at setup (P1 and P2 run without the model).
    fn public(&mut self, c: Vec<u64>) -> Vec<u64> {
        let n = c.len();
        self.ctx.net.setup_send(Party::P0, Party::P1, &c);
        if self.ctx.at(Party::P1) && !self.ctx.at(Party::P0) { self.ctx.net.setup_recv(Party::P0, Party::P1, n) } else { c }
    }

    /// The output opened to P0 (P1 sends its share as setup): the values where P0 is
    /// here, else `None`.
    pub fn open(&mut self, y: &Shares) -> Option<Vec<u64>> {
        self.ctx.net.setup_send(Party::P1, Party::P0, &y.s1);
        match (self.ctx.at(Party::P0), self.ctx.at(Party::P1)) {
            (true, true) => Some(y.reveal()),
            (true, false) => {
                let s1 = self.ctx.net.setup_recv(Party::P1, Party::P0, y.len());
                Some(Shares::new(y.s0.clone(), s1).reveal())
            }
            _ => None,
        }
    }
}

impl Backend for Secure {
    type V = Shares;
    type W = Shares;

    fn decided(&mut self, node: NodeIndex, scores: &Shares, decisions: &Shares) {
        // The simulation's own check, where both shares are here.
        if scores.held(0) && scores.held(1) {
            self.decided.push((node, scores.reveal(), decisions.reveal()));
        }
    }

    fn weights(&mut self, w: &[f32]) -> Shares {
        let frac = self.ctx.frac;
        self.encode_share(w.len(), w.iter().map(|&v| encode(v as f64, frac)))
    }
    fn input(&mut self, x: &[f32]) -> Shares {
        self.weights(x)
    }
    fn product(&mut self, w: &Shares, x: &Shares, p: Product) -> Shares {
        self.ctx.net.family = Family::Linear;
        match p {
            Product::Conv { window, out_channels, images } => {
                let (oh, ow) = window.out_hw();
                let (patch, positions) = (window.patch(), oh * ow);
                let z = out_channels * positions * images;
                match self.masking {
                    // Open the masked im2col matrix (SecureNN, the paper): one patch x
                    // (images x positions) matrix for the batch, the kernel masked once.
                    ConvMasking::Im2col if images == 1 => {
                        let cols = x.reshape(patch * positions, |s| im2col_t(s, &window));
                        beaver(&mut self.ctx, w, &cols, z, |w, c| matmul(w, c, out_channels, patch, positions), None)
                    }
                    ConvMasking::Im2col => {
                        let cols = x.reshape(patch * positions * images, |s| batch_columns(s, &window, images));
                        let op = |w: &[u64], c: &[u64]| {
                            image_major(&matmul(w, c, out_channels, patch, positions * images), out_channels, positions, images)
                        };
                        beaver(&mut self.ctx, w, &cols, z, op, None)
                    }
                    // Open the masked input tensors; convolution is bilinear, so the
                    // Beaver identity holds with conv in place of the product.
                    ConvMasking::Tensor => {
                        let op = |w: &[u64], x: &[u64]| {
                            x.chunks_exact(x.len() / images)
                                .flat_map(|x| matmul(w, &im2col_t(x, &window), out_channels, patch, positions))
                                .collect::<Vec<u64>>()
                        };
                        beaver(&mut self.ctx, w, x, z, op, None)
                    }
                }
            }
            Product::Linear { inputs, outputs, images: 1 } => mat_mul(&mut self.ctx, w, x, outputs, inputs, 1),
            // The batch as an inputs x images matrix (a local transpose), then back.
            Product::Linear { inputs, outputs, images } => {
                let columns = x.map(|s| transpose(s, images, inputs));
                let y = mat_mul(&mut self.ctx, w, &columns, outputs, inputs, images);
                y.map(|s| transpose(s, outputs, images))
            }
        }
    }
    fn grouped_dot(&mut self, x: &Shares, w: &Shares, weight_of: &[u32], group_of: &[u32], groups: usize) -> Shares {
        self.ctx.net.family = Family::Linear;
        let op = |x: &[u64], w: &[u64]| {
            let mut out = vec![0u64; groups];
            for (i, &g) in group_of.iter().enumerate() {
                out[g as usize] = out[g as usize].wrapping_add(x[i].wrapping_mul(w[weight_of[i] as usize]));
            }
            out
        };
        beaver(&mut self.ctx, x, w, groups, op, None)
    }
    fn truncate(&mut self, x: Shares) -> Shares {
        truncate_shares(&x, self.ctx.frac)
    }
    fn add_bias(&mut self, x: Shares, bias: &[f32], per: usize) -> Shares {
        // Encoded once per bias (rounding per value was 1% of secure inference).
        let b: Vec<u64> =
            bias.iter().cycle().flat_map(|&v| std::iter::repeat_n(encode(v as f64, self.ctx.frac), per)).take(x.len()).collect();
        x.add_public(&b)
    }
    fn scale(&mut self, x: &Shares, c: &[f64]) -> Shares {
        let c: Vec<u64> = c.iter().map(|&c| encode(c, self.ctx.frac)).collect();
        let c = self.public(c);
        x.map(|s| s.iter().zip(&c).map(|(s, c)| s.wrapping_mul(*c)).collect())
    }
    fn taps(&mut self, x: &Shares, t: &Taps) -> Shares {
        x.reshape(t.outputs(), |s| t.apply(s, 0u64, u64::wrapping_add))
    }
    fn maxpool(&mut self, x: &Shares, t: &Taps) -> Shares {
        // Column k: the k-th value of every window; the argmax is not needed here.
        let n = t.of(0).len();
        let columns: Vec<Shares> = (0..n)
            .map(|k| {
                let idx: Vec<u32> = (0..t.outputs()).map(|i| t.of(i)[k]).collect();
                self.taps(x, &Taps::gather(&idx))
            })
            .collect();
        self.ctx.net.family = Family::Drelu;
        maxpool(&mut self.ctx, &columns).0
    }
    fn add(&mut self, a: &Shares, b: &Shares) -> Shares {
        a.add(b)
    }
    fn negate(&mut self, x: &Shares) -> Shares {
        x.map(|s| s.iter().map(|v| v.wrapping_neg()).collect())
    }
    fn drelu(&mut self, x: &Shares) -> Shares {
        self.ctx.net.family = Family::Drelu;
        drelu(&mut self.ctx, x)
    }
    fn flip_public(&mut self, d: &Shares, flip: &[u8]) -> Shares {
        // Public flips are local: P0's share s becomes 1 - s, P1's becomes -s.
        d.each(d.len(), |k, s| {
            let flip0 = |(s, f): (&u64, &u8)| if *f == 1 { 1u64.wrapping_sub(*s) } else { *s };
            let flip1 = |(s, f): (&u64, &u8)| if *f == 1 { s.wrapping_neg() } else { *s };
            if k == 0 { s.iter().zip(flip).map(flip0).collect() } else { s.iter().zip(flip).map(flip1).collect() }
        })
    }
    fn secret_bits(&mut self, bits: &[u8]) -> Shares {
        self.encode_share(bits.len(), bits.iter().map(|&b| b as u64))
    }
    fn mul(&mut self, a: &Shares, b: &Shares) -> Shares {
        self.ctx.net.family = Family::Mul;
        mul(&mut self.ctx, a, b)
    }
    fn scatter(&mut self, x: &Shares, idx: &[u32], v: &Shares) -> Shares {
        let put = |base: &[u64], vals: &[u64]| {
            let mut out = base.to_vec();
            for (i, &j) in idx.iter().enumerate() {
                out[j as usize] = vals[i];
            }
            out
        };
        x.zip(v, |_, base, vals| put(base, vals))
    }
    fn begin_layer(&mut self, _node: NodeIndex, inputs: &[NodeIndex]) {
        // A layer starts when its inputs are done: the branches of a residual block
        // take the same steps side by side, as the cost model's critical path has it.
        let start = inputs.iter().map(|i| self.ends.get(i).copied().unwrap_or(self.origin)).reduce(Clocks::join).unwrap_or(self.origin);
        self.ctx.net.set_clocks(start);
        self.mark = self.ctx.net.mark();
        self.layer_start = Instant::now();
    }
    fn end_layer(&mut self, node: NodeIndex) {
        self.ends.insert(node, self.ctx.net.clocks());
        self.layer_seconds.push(self.layer_start.elapsed().as_secs_f64());
        let t = self.ctx.net.tally_since(self.mark);
        self.layers.push((node, t));
        self.layer_messages.push(self.mark.0..self.ctx.net.log.len());
    }
}

/// The im2col matrices of `images` images side by side: row k holds row k of each
/// image's matrix in turn (patch x (images x positions)).
fn batch_columns(x: &[u64], w: &crate::mpc::matmul::Window, images: usize) -> Vec<u64> {
    let (oh, ow) = w.out_hw();
    let (patch, positions) = (w.patch(), oh * ow);
    let per: Vec<Vec<u64>> = x.chunks_exact(x.len() / images).map(|x| im2col_t(x, w)).collect();
    let mut out = Vec::with_capacity(patch * positions * images);
    for k in 0..patch {
        for cols in &per {
            out.extend_from_slice(&cols[k * positions..(k + 1) * positions]);
        }
    }
    out
}

/// [O][images x positions] to [images][O][positions].
fn image_major(y: &[u64], channels: usize, positions: usize, images: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(y.len());
    for b in 0..images {
        for o in 0..channels {
            let row = o * positions * images + b * positions;
            out.extend_from_slice(&y[row..row + positions]);
        }
    }
    out
}

/// A rows x cols matrix (row-major) transposed.
fn transpose(x: &[u64], rows: usize, cols: usize) -> Vec<u64> {
    (0..cols).flat_map(|j| (0..rows).map(move |i| x[i * cols + j])).collect()
}
