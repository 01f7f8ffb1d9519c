//! The convolutions' f32 products with their operands packed once: the weights once
//! per layer and chunk instead of once per image, and the forward pass's im2col
//! matrix written straight into the kernel's panel layout, so it is never copied a
//! second time.
//!
//! Every entry of C is summed exactly as `net::gemm` (matrixmultiply) sums it: k in
//! blocks of `KC`, each block one chain of fused multiply-adds from zero, added to C
//! block after block. Results are therefore bit for bit those of `net::gemm` on every
//! CPU with FMA (tested), and swapping one for the other changes no trained weight.

use crate::mpc::matmul::{Window, for_each_run, runs_of_row};

/// Rows of A per panel and tile.
pub const MR: usize = 8;
/// Columns of B per panel and tile.
pub const NR: usize = 32;
/// The block of k summed in one chain before it is added to C (matrixmultiply's
/// `S_KC` for f32; the bit-for-bit equality depends on it).
const KC: usize = 256;

/// A (m x k) in panels of `MR` rows: panel p holds, for each k, rows p MR .. p MR + MR
/// (zeros past m).
pub struct PackedA {
    m: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Packs A given by its strides (rows, columns), like `net::gemm`'s operands.
    pub fn new(m: usize, k: usize, a: &[f32], (rs, cs): (usize, usize)) -> PackedA {
        let panels = m.div_ceil(MR);
        let mut data = vec![0f32; panels * k * MR];
        for (p, panel) in data.chunks_exact_mut((k * MR).max(1)).enumerate() {
            let rows = MR.min(m - p * MR);
            for (kk, dst) in panel.chunks_exact_mut(MR).enumerate() {
                for (r, d) in dst[..rows].iter_mut().enumerate() {
                    *d = a[(p * MR + r) * rs + kk * cs];
                }
            }
        }
        PackedA { m, k, data }
    }

    /// C (m x n, rows `ldc` apart) = A B, or C + A B when `accumulate`; B (k x n) is
    /// packed by `pack_b` or `im2col_packed`.
    pub fn times(&self, b: &[f32], n: usize, c: &mut [f32], ldc: usize, accumulate: bool) {
        let (m, k) = (self.m, self.k);
        assert!(b.len() >= packed_b_len(k, n) && (m == 0 || c.len() >= (m - 1) * ldc + n), "packed product operands too short");
        let kernel = Kernel::pick();
        if k == 0 && !accumulate {
            // An empty sum: C = 0, as `net::gemm` leaves it.
            (0..m).for_each(|r| c[r * ldc..][..n].fill(0.0));
        }
        // Ragged tiles go through a buffer; full ones are written into C in place.
        let mut tile = [0f32; MR * NR];
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let add = accumulate || k0 > 0;
            for q in 0..n.div_ceil(NR) {
                let cols = NR.min(n - q * NR);
                let bp = &b[q * k * NR + k0 * NR..][..kc * NR];
                for p in 0..m.div_ceil(MR) {
                    let rows = MR.min(m - p * MR);
                    let ap = &self.data[p * k * MR + k0 * MR..][..kc * MR];
                    let c0 = p * MR * ldc + q * NR;
                    if rows == MR && cols == NR {
                        kernel.run(kc, ap, bp, &mut c[c0..], ldc, add);
                        continue;
                    }
                    kernel.run(kc, ap, bp, &mut tile, NR, false);
                    for (r, t) in tile.chunks_exact(NR).take(rows).enumerate() {
                        let dst = &mut c[c0 + r * ldc..][..cols];
                        if add {
                            dst.iter_mut().zip(t).for_each(|(d, v)| *d += v);
                        } else {
                            dst.copy_from_slice(&t[..cols]);
                        }
                    }
                }
            }
        }
    }
}

impl PackedA {
    /// Backward of a convolution's input: A = W^T (C kh kw x O) times B = dY (O x oh ow,
    /// packed), each entry added at once to the input position it came from (what
    /// `times` into a columns matrix and then `col2im_from` do, without the whole
    /// matrix: `MR` rows at a time, added row by row, so each input position gets its
    /// terms in `col2im_from`'s order; with k <= `KC` each term is one chain, as in
    /// `times`, so the sums are bit for bit the same. Returns false (and adds
    /// nothing) for k > KC.
    pub fn times_col2im(&self, b: &[f32], w: &Window, dx: &mut [f32]) -> bool {
        let (m, k) = (self.m, self.k);
        let (oh, ow) = w.out_hw();
        let n = oh * ow;
        assert!(m == w.patch() && b.len() >= packed_b_len(k, n) && dx.len() >= w.channels * w.height * w.width, "col2im operands");
        if k > KC {
            return false;
        }
        if k == 0 {
            return true;
        }
        let kernel = Kernel::pick();
        let mut tile = [0f32; MR * NR];
        // One row panel's products for all positions: an input position gets terms
        // from several positions of the same row, which must go in row order.
        let mut strip = vec![0f32; MR * n];
        let sx = w.stride.1;
        for p in 0..m.div_ceil(MR) {
            let ap = &self.data[p * k * MR..][..k * MR];
            for q in 0..n.div_ceil(NR) {
                let (cols, bq) = (NR.min(n - q * NR), &b[q * k * NR..][..k * NR]);
                if cols == NR && n >= NR {
                    kernel.run(k, ap, bq, &mut strip[q * NR..], n, false);
                    continue;
                }
                kernel.run(k, ap, bq, &mut tile, NR, false);
                for (dst, t) in strip.chunks_exact_mut(n).zip(tile.chunks_exact(NR)) {
                    dst[q * NR..q * NR + cols].copy_from_slice(&t[..cols]);
                }
            }
            for (r, t) in strip.chunks_exact(n).take(MR.min(m - p * MR)).enumerate() {
                runs_of_row(w, p * MR + r, |oy, ox0, ix0, plane_row, len| {
                    let src = &t[oy * ow + ox0..][..len];
                    let at = plane_row * w.width + ix0;
                    if sx == 1 {
                        dx[at..at + len].iter_mut().zip(src).for_each(|(d, v)| *d += v);
                    } else {
                        src.iter().enumerate().for_each(|(i, v)| dx[at + i * sx] += v);
                    }
                });
            }
        }
        true
    }
}

/// Length of B (k x n) packed in panels of `NR` columns.
pub fn packed_b_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

/// Packs B (k x n, given by its strides) in panels of `NR` columns: panel q holds, for
/// each k, columns q NR .. q NR + NR (zeros past n). `out` is `packed_b_len(k, n)` long.
pub fn pack_b(k: usize, n: usize, b: &[f32], (rs, cs): (usize, usize), out: &mut [f32]) {
    for (q, panel) in out[..packed_b_len(k, n)].chunks_exact_mut((k * NR).max(1)).enumerate() {
        let cols = NR.min(n - q * NR);
        for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
            if cs == 1 {
                dst[..cols].copy_from_slice(&b[kk * rs + q * NR..][..cols]);
            } else {
                dst[..cols].iter_mut().enumerate().for_each(|(j, d)| *d = b[kk * rs + (q * NR + j) * cs]);
            }
        }
    }
}

/// The transposed im2col matrix of one [C, H, W] map ((C kh kw) x (oh ow), as
/// `im2col_into` writes it) packed as B for `PackedA::times`. Entries in the padding
/// are not written: `out` must start zeroed, and stays right for every map of the
/// same window, whose padding lies in the same places.
pub fn im2col_packed(x: &[f32], w: &Window, out: &mut [f32]) {
    let (oh, ow) = w.out_hw();
    let patch = w.patch();
    assert!(out.len() >= packed_b_len(patch, oh * ow) && x.len() >= w.channels * w.height * w.width, "im2col operands too short");
    let (width, sx) = (w.width, w.stride.1);
    for_each_run(w, |row, oy, ox0, ix0, plane_row, len| {
        let src = &x[plane_row * width + ix0..];
        // The run's positions, cut where they cross from one panel into the next.
        let (mut p, mut j) = (oy * ow + ox0, 0);
        while j < len {
            let (q, lane) = (p / NR, p % NR);
            let take = (NR - lane).min(len - j);
            let dst = &mut out[q * patch * NR + row * NR + lane..][..take];
            if sx == 1 {
                dst.copy_from_slice(&src[j..j + take]);
            } else {
                dst.iter_mut().enumerate().for_each(|(t, d)| *d = src[(j + t) * sx]);
            }
            p += take;
            j += take;
        }
    });
}

/// The tile kernel for this CPU: an `MR` x `NR` tile of A B over one block of k.
#[derive(Clone, Copy)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Kernel {
    fn pick() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::mpc::cpu::{Simd, simd};
            match simd() {
                Simd::Avx512 => return Kernel::Avx512,
                Simd::Avx2 if std::arch::is_x86_feature_detected!("fma") => return Kernel::Avx2,
                _ => {}
            }
        }
        Kernel::Portable
    }

    /// C (an MR x NR tile whose rows lie `ldc` apart from the start of `c`) = the
    /// product of kc columns of a packed A panel and kc rows of a packed B panel, or
    /// C + that product when `add`.
    fn run(self, kc: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, add: bool) {
        assert!(a.len() >= kc * MR && b.len() >= kc * NR && ldc >= NR && c.len() >= (MR - 1) * ldc + NR);
        match self {
            // Safety: `pick` chose these only where the CPU has their instructions;
            // the assertion above keeps the reads and writes in bounds.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { tile_avx512(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, add) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { tile_avx2(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, add) },
            Kernel::Portable => tile_portable(kc, a, b, c, ldc, add),
        }
    }
}

fn tile_portable(kc: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, add: bool) {
    let mut acc = [[0f32; NR]; MR];
    for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (row, &av) in acc.iter_mut().zip(ak) {
            row.iter_mut().zip(bk).for_each(|(t, &bv)| *t = av.mul_add(bv, *t));
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let dst = &mut c[r * ldc..][..NR];
        if add {
            dst.iter_mut().zip(row).for_each(|(d, v)| *d += v);
        } else {
            dst.copy_from_slice(row);
        }
    }
}

/// 8 x 32: sixteen 16-lane accumulators, two loads of B and eight broadcasts of A per k.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, add: bool) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..kc {
        // Safety (all reads): the caller passes kc MR entries of A and kc NR of B.
        let (b0, b1) = unsafe { (_mm512_loadu_ps(b.add(kk * NR)), _mm512_loadu_ps(b.add(kk * NR + 16))) };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(unsafe { *a.add(kk * MR + r) });
            acc_r[0] = _mm512_fmadd_ps(av, b0, acc_r[0]);
            acc_r[1] = _mm512_fmadd_ps(av, b1, acc_r[1]);
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (v, &sum) in acc_r.iter().enumerate() {
            // Safety: the caller's tile has MR rows of NR = 32 entries, ldc apart.
            unsafe {
                let at = c.add(r * ldc + 16 * v);
                _mm512_storeu_ps(at, if add { _mm512_add_ps(_mm512_loadu_ps(at), sum) } else { sum });
            }
        }
    }
}

/// 8 x 32 as four 2 x 32 strips: eight 8-lane accumulators (sixteen registers in all).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, add: bool) {
    use std::arch::x86_64::*;
    for r0 in (0..MR).step_by(2) {
        let mut acc = [[_mm256_setzero_ps(); 4]; 2];
        for kk in 0..kc {
            // Safety (all reads): the caller passes kc MR entries of A and kc NR of B.
            let bv: [__m256; 4] = std::array::from_fn(|v| unsafe { _mm256_loadu_ps(b.add(kk * NR + 8 * v)) });
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_ps(unsafe { *a.add(kk * MR + r0 + r) });
                for (acc_v, &bv) in acc_r.iter_mut().zip(&bv) {
                    *acc_v = _mm256_fmadd_ps(av, bv, *acc_v);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &sum) in acc_r.iter().enumerate() {
                // Safety: the caller's tile has MR rows of NR = 32 entries, ldc apart.
                unsafe {
                    let at = c.add((r0 + r) * ldc + 8 * v);
                    _mm256_storeu_ps(at, if add { _mm256_add_ps(_mm256_loadu_ps(at), sum) } else { sum });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::matmul::im2col_into;
    use crate::mpc::prg::Prg;
    use crate::train::net::gemm;

    fn random(len: usize, g: &mut Prg) -> Vec<f32> {
        (0..len).map(|_| (g.below(20001) as f32 - 10000.0) / 3333.0).collect()
    }

    fn kernels() -> Vec<Kernel> {
        let mut all = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use crate::mpc::cpu::{Simd, simd};
            let s = simd();
            if s == Simd::Avx512 {
                all.push(Kernel::Avx512);
            }
            if s != Simd::Baseline && std::arch::is_x86_feature_detected!("fma") {
                all.push(Kernel::Avx2);
            }
        }
        crate::mpc::cpu::note_skipped("sgemm kernels", &crate::mpc::cpu::vector_variants());
        all
    }

    #[test]
    fn every_kernel_computes_the_same_tile() {
        let mut g = Prg::new(3, "sgemm-tile");
        let (a, b) = (random(300 * MR, &mut g), random(300 * NR, &mut g));
        let tiles: Vec<[f32; MR * NR]> = kernels()
            .into_iter()
            .map(|k| {
                let mut t = [1f32; MR * NR];
                k.run(300, &a, &b, &mut t, NR, true);
                t
            })
            .collect();
        assert!(tiles.windows(2).all(|w| w[0].iter().zip(&w[1]).all(|(x, y)| x.to_bits() == y.to_bits())));
    }

    /// Bit for bit the products of `net::gemm`, across block edges of k, ragged
    /// tiles and transposed operands.
    #[test]
    fn packed_products_equal_gemm_bit_for_bit() {
        let mut g = Prg::new(1, "sgemm");
        for &(m, k, n) in &[(64, 576, 1024), (16, 64, 64), (10, 1, 3), (10, 0, 3), (13, 257, 45), (8, 512, 32), (3, 700, 100)] {
            for (transposed, accumulate) in [(false, false), (true, true), (false, true)] {
                let (a, b) = (random(m * k, &mut g), random(k * n, &mut g));
                let a_strides = if transposed { (1, m) } else { (k, 1) };
                let start = random(m * n, &mut g);
                let mut want = start.clone();
                gemm(m, k, n, &a, a_strides, &b, (n, 1), &mut want, accumulate);
                let packed = PackedA::new(m, k, &a, a_strides);
                let mut bp = vec![0f32; packed_b_len(k, n)];
                pack_b(k, n, &b, (n, 1), &mut bp);
                let mut got = start.clone();
                packed.times(&bp, n, &mut got, n, accumulate);
                let same = want.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{m} x {k} x {n}, transposed A {transposed}, accumulate {accumulate}");
            }
        }
    }

    #[test]
    fn fused_col2im_adds_what_col2im_adds() {
        let mut g = Prg::new(4, "col2im");
        for (w, o) in [
            (Window { channels: 64, height: 16, width: 16, kernel: (3, 3), stride: (1, 1), padding: (1, 1) }, 64),
            (Window { channels: 5, height: 9, width: 7, kernel: (3, 2), stride: (2, 2), padding: (1, 0) }, 7),
            (Window { channels: 4, height: 8, width: 8, kernel: (1, 1), stride: (1, 1), padding: (0, 0) }, 16),
            (Window { channels: 3, height: 11, width: 13, kernel: (5, 5), stride: (1, 3), padding: (2, 2) }, 9),
        ] {
            let (oh, ow) = w.out_hw();
            let (patch, pos) = (w.patch(), oh * ow);
            let (wt, dy) = (random(o * patch, &mut g), random(o * pos, &mut g));
            let a = PackedA::new(patch, o, &wt, (1, patch));
            let mut bp = vec![0f32; packed_b_len(o, pos)];
            pack_b(o, pos, &dy, (pos, 1), &mut bp);
            let start = random(w.channels * w.height * w.width, &mut g);
            let mut dcols = vec![0f32; patch * pos];
            a.times(&bp, pos, &mut dcols, pos, false);
            let mut want = start.clone();
            crate::mpc::matmul::col2im_from(&dcols, &w, pos, 0, &mut want);
            let mut got = start.clone();
            assert!(a.times_col2im(&bp, &w, &mut got));
            assert!(want.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits()), "{w:?}");
        }
    }

    #[test]
    fn packed_im2col_is_im2col_packed() {
        let mut g = Prg::new(2, "im2col-packed");
        for w in [
            Window { channels: 3, height: 32, width: 32, kernel: (3, 3), stride: (1, 1), padding: (1, 1) },
            Window { channels: 5, height: 9, width: 7, kernel: (3, 2), stride: (2, 2), padding: (1, 0) },
            Window { channels: 4, height: 8, width: 8, kernel: (1, 1), stride: (1, 1), padding: (0, 0) },
        ] {
            let (oh, ow) = w.out_hw();
            let x = random(w.channels * w.height * w.width, &mut g);
            let mut cols = vec![0f32; w.patch() * oh * ow];
            im2col_into(&x, &w, &mut cols, oh * ow, 0);
            let mut want = vec![0f32; packed_b_len(w.patch(), oh * ow)];
            pack_b(w.patch(), oh * ow, &cols, (oh * ow, 1), &mut want);
            let mut got = vec![0f32; want.len()];
            im2col_packed(&x, &w, &mut got);
            assert_eq!(want, got, "{w:?}");
        }
    }
}
