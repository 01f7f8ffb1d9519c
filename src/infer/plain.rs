//! The two plaintext references: float (f64) and fixed point in Z_2^64 with the same
//! encoding and truncation points as secure inference, truncating exactly (floor).

use super::{Backend, Product, Taps};
use crate::mpc::matmul::{im2col_t, matmul};
use crate::mpc::ring::{encode, truncate};
use petgraph::graph::NodeIndex;

/// Float inference: what the trained model computes.
pub struct Float;

impl Backend for Float {
    type V = Vec<f64>;
    type W = Vec<f64>;

    fn weights(&mut self, w: &[f32]) -> Vec<f64> {
        w.iter().map(|&v| v as f64).collect()
    }
    fn input(&mut self, x: &[f32]) -> Vec<f64> {
        x.iter().map(|&v| v as f64).collect()
    }
    fn product(&mut self, w: &Vec<f64>, x: &Vec<f64>, p: Product) -> Vec<f64> {
        per_image(x, p, |x| match p {
            Product::Conv { window, out_channels, .. } => {
                let (oh, ow) = window.out_hw();
                let cols = float_im2col(x, &window);
                float_matmul(w, &cols, out_channels, window.patch(), oh * ow)
            }
            Product::Linear { inputs, outputs, .. } => float_matmul(w, x, outputs, inputs, 1),
        })
    }
    fn grouped_dot(&mut self, x: &Vec<f64>, w: &Vec<f64>, weight_of: &[u32], group_of: &[u32], groups: usize) -> Vec<f64> {
        let mut out = vec![0.0; groups];
        for (i, &g) in group_of.iter().enumerate() {
            out[g as usize] += x[i] * w[weight_of[i] as usize];
        }
        out
    }
    fn truncate(&mut self, x: Vec<f64>) -> Vec<f64> {
        x
    }
    fn add_bias(&mut self, mut x: Vec<f64>, bias: &[f32], per: usize) -> Vec<f64> {
        for (i, v) in x.iter_mut().enumerate() {
            *v += bias[(i / per) % bias.len()] as f64;
        }
        x
    }
    fn scale(&mut self, x: &Vec<f64>, c: &[f64]) -> Vec<f64> {
        x.iter().zip(c).map(|(x, c)| x * c).collect()
    }
    fn taps(&mut self, x: &Vec<f64>, t: &Taps) -> Vec<f64> {
        t.apply(x, 0.0, |a, b| a + b)
    }
    fn maxpool(&mut self, x: &Vec<f64>, t: &Taps) -> Vec<f64> {
        t.fold_max(x, |m, v| m - v >= 0.0)
    }
    fn add(&mut self, a: &Vec<f64>, b: &Vec<f64>) -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| a + b).collect()
    }
    fn negate(&mut self, x: &Vec<f64>) -> Vec<f64> {
        x.iter().map(|v| -v).collect()
    }
    fn drelu(&mut self, x: &Vec<f64>) -> Vec<f64> {
        x.iter().map(|&v| if v >= 0.0 { 1.0 } else { 0.0 }).collect()
    }
    fn flip_public(&mut self, d: &Vec<f64>, flip: &[u8]) -> Vec<f64> {
        d.iter().zip(flip).map(|(d, f)| if *f == 1 { 1.0 - d } else { *d }).collect()
    }
    fn secret_bits(&mut self, bits: &[u8]) -> Vec<f64> {
        bits.iter().map(|&b| b as f64).collect()
    }
    fn mul(&mut self, a: &Vec<f64>, b: &Vec<f64>) -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| a * b).collect()
    }
    fn scatter(&mut self, x: &Vec<f64>, idx: &[u32], v: &Vec<f64>) -> Vec<f64> {
        let mut out = x.clone();
        for (i, &j) in idx.iter().enumerate() {
            out[j as usize] = v[i];
        }
        out
    }
}

/// A product applied image by image to a batch laid one image after another.
fn per_image<T: Copy>(x: &[T], p: Product, f: impl Fn(&[T]) -> Vec<T>) -> Vec<T> {
    let images = match p {
        Product::Conv { images, .. } | Product::Linear { images, .. } => images,
    };
    if images == 1 {
        return f(x);
    }
    x.chunks_exact(x.len() / images).flat_map(f).collect()
}

fn float_matmul(a: &[f64], b: &[f64], m: usize, n: usize, v: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * v];
    for i in 0..m {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..v {
                c[i * v + j] += aik * b[k * v + j];
            }
        }
    }
    c
}

fn float_im2col(x: &[f64], w: &crate::mpc::matmul::Window) -> Vec<f64> {
    im2col_t(x, w)
}

/// Fixed point in Z_2^64: the secure computation's arithmetic without the secrecy,
/// with exact (floor) truncation where secure inference truncates each share.
pub struct Fixed {
    pub frac: u32,
    /// Each shared layer's group scores and decisions, in run order.
    pub decided: Vec<(NodeIndex, Vec<u64>, Vec<u64>)>,
}

impl Fixed {
    pub fn new(frac: u32) -> Fixed {
        Fixed { frac, decided: Vec::new() }
    }
}

impl Backend for Fixed {
    type V = Vec<u64>;
    type W = Vec<u64>;

    fn decided(&mut self, node: NodeIndex, scores: &Vec<u64>, decisions: &Vec<u64>) {
        self.decided.push((node, scores.clone(), decisions.clone()));
    }

    fn weights(&mut self, w: &[f32]) -> Vec<u64> {
        w.iter().map(|&v| encode(v as f64, self.frac)).collect()
    }
    fn input(&mut self, x: &[f32]) -> Vec<u64> {
        self.weights(x)
    }
    fn product(&mut self, w: &Vec<u64>, x: &Vec<u64>, p: Product) -> Vec<u64> {
        per_image(x, p, |x| match p {
            Product::Conv { window, out_channels, .. } => {
                let (oh, ow) = window.out_hw();
                matmul(w, &im2col_t(x, &window), out_channels, window.patch(), oh * ow)
            }
            Product::Linear { inputs, outputs, .. } => matmul(w, x, outputs, inputs, 1),
        })
    }
    fn grouped_dot(&mut self, x: &Vec<u64>, w: &Vec<u64>, weight_of: &[u32], group_of: &[u32], groups: usize) -> Vec<u64> {
        let mut out = vec![0u64; groups];
        for (i, &g) in group_of.iter().enumerate() {
            out[g as usize] = out[g as usize].wrapping_add(x[i].wrapping_mul(w[weight_of[i] as usize]));
        }
        out
    }
    fn truncate(&mut self, x: Vec<u64>) -> Vec<u64> {
        x.into_iter().map(|v| truncate(v, self.frac)).collect()
    }
    fn add_bias(&mut self, mut x: Vec<u64>, bias: &[f32], per: usize) -> Vec<u64> {
        for (values, b) in x.chunks_mut(per).zip(bias.iter().cycle()) {
            let b = encode(*b as f64, self.frac);
            values.iter_mut().for_each(|v| *v = v.wrapping_add(b));
        }
        x
    }
    fn scale(&mut self, x: &Vec<u64>, c: &[f64]) -> Vec<u64> {
        x.iter().zip(c).map(|(x, c)| x.wrapping_mul(encode(*c, self.frac))).collect()
    }
    fn taps(&mut self, x: &Vec<u64>, t: &Taps) -> Vec<u64> {
        t.apply(x, 0u64, u64::wrapping_add)
    }
    fn maxpool(&mut self, x: &Vec<u64>, t: &Taps) -> Vec<u64> {
        // DReLU(max - x) in the ring, as the secure protocol decides.
        t.fold_max(x, |m, v| (m.wrapping_sub(v) as i64) >= 0)
    }
    fn add(&mut self, a: &Vec<u64>, b: &Vec<u64>) -> Vec<u64> {
        a.iter().zip(b).map(|(a, b)| a.wrapping_add(*b)).collect()
    }
    fn negate(&mut self, x: &Vec<u64>) -> Vec<u64> {
        x.iter().map(|v| v.wrapping_neg()).collect()
    }
    fn drelu(&mut self, x: &Vec<u64>) -> Vec<u64> {
        x.iter().map(|&v| ((v as i64) >= 0) as u64).collect()
    }
    fn flip_public(&mut self, d: &Vec<u64>, flip: &[u8]) -> Vec<u64> {
        d.iter().zip(flip).map(|(d, f)| d ^ *f as u64).collect()
    }
    fn secret_bits(&mut self, bits: &[u8]) -> Vec<u64> {
        bits.iter().map(|&b| b as u64).collect()
    }
    fn mul(&mut self, a: &Vec<u64>, b: &Vec<u64>) -> Vec<u64> {
        a.iter().zip(b).map(|(a, b)| a.wrapping_mul(*b)).collect()
    }
    fn scatter(&mut self, x: &Vec<u64>, idx: &[u32], v: &Vec<u64>) -> Vec<u64> {
        let mut out = x.clone();
        for (i, &j) in idx.iter().enumerate() {
            out[j as usize] = v[i];
        }
        out
    }
}
