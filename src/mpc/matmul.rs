//! Ring matrix products and the im2col layout they run convolutions on. This is the
//! hot loop of secure inference: every linear layer costs five products of its size.

use super::cpu::{Simd, simd};

/// C = A B over Z_2^64, A m x n, B n x v, all row-major.
///
/// The tiled kernel is compiled for AVX-512 (64-bit lane multiplies, `vpmullq`) and
/// for any x86-64; AVX2 has a kernel of its own. `cpu::simd` picks one at run time.
pub fn matmul(a: &[u64], b: &[u64], m: usize, n: usize, v: usize) -> Vec<u64> {
    assert_eq!(a.len(), m * n, "A is not m x n");
    assert_eq!(b.len(), n * v, "B is not n x v");
    if v == 1 && n > 0 {
        // A matrix times a vector (a fully connected layer): one dot product per
        // row; the tiled kernel would do it all in its scalar edge loop.
        return a.chunks_exact(n).map(|row| dot(row, b)).collect();
    }
    let mut c = vec![0u64; m * v];
    match simd() {
        // Safety: `simd` found the features these variants are compiled for.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { matmul_avx512(a, b, &mut c, m, n, v) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { matmul_avx2(a, b, &mut c, m, n, v) },
        _ => matmul_into(a, b, &mut c, m, n, v),
    }
    c
}

/// sum_k x_k y_k in Z_2^64, as four interleaved sums: a 128 x 3136 matrix times a
/// vector (Fashion-MNIST's fc1) took 0.195-0.219 ms against 0.275-0.333 with one
/// running sum (a throwaway loop, medians of 20, three runs).
fn dot(x: &[u64], y: &[u64]) -> u64 {
    let mut sums = [0u64; 4];
    let (xs, ys) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail = xs.remainder().iter().zip(ys.remainder()).fold(0u64, |s, (x, y)| s.wrapping_add(x.wrapping_mul(*y)));
    for (x, y) in xs.zip(ys) {
        for t in 0..4 {
            sums[t] = sums[t].wrapping_add(x[t].wrapping_mul(y[t]));
        }
    }
    sums.iter().fold(tail, |s, v| s.wrapping_add(*v))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn matmul_avx512(a: &[u64], b: &[u64], c: &mut [u64], m: usize, n: usize, v: usize) {
    matmul_into(a, b, c, m, n, v)
}

/// AVX2 has no 64-bit lane multiply, and its integer multiplies (one 256-bit one per
/// cycle here) bound the kernel, so it does half of them: Winograd's inner product,
/// which holds in any commutative ring, over pairs of depths k = 2q, 2q + 1:
///
///   sum_k a_k b_k = sum_q (a_2q + b_2q+1)(a_2q+1 + b_2q) - sum_q a_2q a_2q+1 - sum_q b_2q b_2q+1,
///
/// where the first correction depends on A's row alone and the second on B's column
/// alone, each computed once per panel. Each product x y mod 2^64 is
/// x_lo y_lo + ((x_lo y_hi + x_hi y_lo) mod 2^32) 2^32: one `vpmuludq` for x_lo y_lo
/// and one `vpmulld` against y with its 32-bit halves swapped for both cross terms,
/// summed into separate accumulators and combined once per tile. Tiles of 2 rows x 8
/// columns: 8 accumulators, a pair's 4 panel vectors and 4 broadcasts. Compiled from
/// `matmul_into` each product took three 32-bit multiplies and the 8 x 16 tile did
/// not fit the 16 registers; one `vpmuludq` and one `vpmulld` per product (against a
/// swapped copy of B kept in the panel) ran at 2.7-5.6 G/s on a CIFAR-10 convolution
/// where this kernel runs at 5.2-8.9 (`kernels_bench`, alternating runs).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn matmul_avx2(a: &[u64], b: &[u64], c: &mut [u64], m: usize, n: usize, v: usize) {
    use std::arch::x86_64::*;
    const MR: usize = 2;
    const NR: usize = 8;
    // Depth of a panel; even, so that no pair straddles two panels. A block's panel
    // (256 pairs, 32 KiB) ran as fast as one half as deep.
    const KC: usize = 512;
    let full_rows = m - m % MR;
    let pairs_of = |depth: usize| depth.div_ceil(2);
    // A's row terms, one per row and panel: sum over the panel's pairs of a_2q a_2q+1
    // (an odd last depth pairs with zero).
    let panels = n.div_ceil(KC);
    let mut row_terms = vec![0u64; full_rows * panels];
    for i in 0..full_rows {
        for (p, k0) in (0..n).step_by(KC).enumerate() {
            let row = &a[i * n + k0..i * n + (k0 + KC).min(n)];
            row_terms[i * panels + p] = row.chunks(2).fold(0u64, |s, pair| match pair {
                [x, y] => s.wrapping_add(x.wrapping_mul(*y)),
                _ => s,
            });
        }
    }
    // Pair q of a block's panel: B[k0 + 2q, j..j + 8] then B[k0 + 2q + 1, j..j + 8].
    // GROUP blocks are packed together so that each row of B is read 512 bytes at a
    // time: read 64 bytes per block, with rows 8 KiB apart (a CIFAR-10 convolution),
    // they mapped onto a few cache sets and came from L3.
    const GROUP: usize = 8;
    let max_pairs = pairs_of(KC.min(n));
    // The panels' buffer is kept per thread (256 KiB): zeroing a fresh one for every
    // product was 0.4% of a steady CIFAR-10 image's profile. Only packed pairs are read.
    let mut panels_buf = PANELS.take();
    panels_buf.resize(GROUP * max_pairs, [0; 2 * NR]);
    let mut col_terms = [[0u64; NR]; GROUP];
    // A last block narrower than NR is packed with zero columns and stored in part: in
    // the scalar edge loop, 4 columns left over (a 64 x 512 x 36 product, SVHN's conv2)
    // took longer than the 32 before them.
    for j0 in (0..v).step_by(GROUP * NR) {
        let end = v.min(j0 + GROUP * NR);
        let blocks = (end - j0).div_ceil(NR);
        for (p, k0) in (0..n).step_by(KC).enumerate() {
            let depth = KC.min(n - k0);
            let pairs = pairs_of(depth);
            pack_pairs(b, v, k0..k0 + depth, j0..end, &mut panels_buf, max_pairs, &mut col_terms[..blocks]);
            for g in 0..blocks {
                let (j, panel) = (j0 + g * NR, &panels_buf[g * max_pairs..g * max_pairs + pairs]);
                let width = NR.min(v - j);
                for i in (0..full_rows).step_by(MR) {
                    let zero = _mm256_setzero_si256();
                    let (mut lo, mut cross) = ([zero; 4], [zero; 4]);
                    let (a0, a1) = (&a[i * n + k0..i * n + k0 + depth], &a[(i + 1) * n + k0..(i + 1) * n + k0 + depth]);
                    let whole = depth / 2;
                    for ((brow, x0), x1) in panel[..whole].iter().zip(a0.chunks_exact(2)).zip(a1.chunks_exact(2)) {
                        // Safety (both steps): AVX2 is enabled in this function.
                        unsafe { pair_step(&mut lo, &mut cross, brow, [[x0[0], x0[1]], [x1[0], x1[1]]]) };
                    }
                    if depth % 2 == 1 {
                        unsafe { pair_step(&mut lo, &mut cross, &panel[whole], [[a0[depth - 1], 0], [a1[depth - 1], 0]]) };
                    }
                    for r in 0..MR {
                        let fix = _mm256_set1_epi64x(row_terms[(i + r) * panels + p] as i64);
                        let mut sums = [0u64; NR];
                        for h in 0..2 {
                            let (at, terms) = (&mut sums[4 * h..4 * h + 4], &col_terms[g][4 * h..4 * h + 4]);
                            // Safety: a 4-u64 load from `terms`, a store into `at`.
                            unsafe {
                                let terms = _mm256_add_epi64(fix, _mm256_loadu_si256(terms.as_ptr().cast()));
                                let sum = _mm256_sub_epi64(products(lo[2 * r + h], cross[2 * r + h]), terms);
                                _mm256_storeu_si256(at.as_mut_ptr().cast(), sum);
                            }
                        }
                        let out = &mut c[(i + r) * v + j..][..width];
                        if width == NR {
                            // Safety: 4-u64 loads and stores within `out` and `sums`.
                            unsafe {
                                for h in 0..2 {
                                    let (at, sum) = (out[4 * h..].as_mut_ptr().cast(), sums[4 * h..].as_ptr().cast());
                                    _mm256_storeu_si256(at, _mm256_add_epi64(_mm256_loadu_si256(at), _mm256_loadu_si256(sum)));
                                }
                            }
                        } else {
                            for (out, sum) in out.iter_mut().zip(sums) {
                                *out = out.wrapping_add(sum);
                            }
                        }
                    }
                }
            }
        }
    }
    PANELS.set(panels_buf);
    edges(a, b, c, m, n, v, full_rows, v);
}

thread_local! {
    /// `matmul_avx2`'s pair panels, reused by the next product on the thread.
    static PANELS: std::cell::Cell<Vec<[u64; 16]>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Packs rows `rows` and columns `cols` of B (n x v), `col_terms.len()` blocks of 8
/// columns (the last perhaps narrower, padded with zeros), into the pair panels of
/// `matmul_avx2`: block g's pair q, at `panels[g * stride + q]`, is B[2q, j..j + 8] then
/// B[2q + 1, j..j + 8] of those rows (zeros past the last). It sets each block's
/// column terms, the sum over pairs of b_2q b_2q+1, from the registers the copy
/// passes through, as the kernel sums its products; a second pass over the panels
/// with scalar multiplies took half the packing's time.
///
/// The rows `PREFETCH` further down are requested while these are copied: rows of B
/// lie a page or more apart in a convolution (8 KiB in CIFAR-10's conv2), beyond the
/// reach of the hardware prefetchers, and the loads of B took 70% of the packing's
/// time without it. (Products of 64 x 576 by 576 x 1024 and 576 x 256: 3-9% less
/// time with it, medians of 40, three runs in one process; 4, 8 and 16 rows ahead
/// alike.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pack_pairs(
    b: &[u64],
    v: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    panels: &mut [[u64; 16]],
    stride: usize,
    col_terms: &mut [[u64; 8]],
) {
    use std::arch::x86_64::*;
    let row = |k: usize| if k < rows.end { &b[k * v + cols.start..k * v + cols.end] } else { &[][..] };
    // Safety: 4-u64 loads within an 8-u64 array.
    let load = |x: &[u64; 8]| unsafe { [0, 4].map(|h| _mm256_loadu_si256(x[h..].as_ptr().cast())) };
    // Each block's low products and cross terms, by half (4 columns).
    let mut sums = [[_mm256_setzero_si256(); 4]; 8];
    for (q, k) in rows.clone().step_by(2).enumerate() {
        for ahead in [k + PREFETCH, k + 1 + PREFETCH] {
            if let Some(line) = b.get(ahead * v + cols.start..ahead * v + cols.end) {
                for line in line.chunks(8) {
                    _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
                }
            }
        }
        let (even, odd) = (row(k), row(k + 1));
        for (g, sums) in sums[..col_terms.len()].iter_mut().enumerate() {
            let (x, y) = match (even.get(8 * g..8 * g + 8), odd.get(8 * g..8 * g + 8)) {
                (Some(x), Some(y)) => (load(x.try_into().expect("8")), load(y.try_into().expect("8"))),
                _ => {
                    // A narrow last block or an odd last row: zero-padded.
                    let (mut x, mut y) = ([0u64; 8], [0u64; 8]);
                    for (to, r) in [(&mut x, even), (&mut y, odd)] {
                        let part = r.get(8 * g..r.len().min(8 * g + 8)).unwrap_or(&[]);
                        to[..part.len()].copy_from_slice(part);
                    }
                    (load(&x), load(&y))
                }
            };
            let pair = &mut panels[g * stride + q];
            for h in 0..2 {
                // Safety: 4-u64 stores within the pair's 16.
                unsafe {
                    _mm256_storeu_si256(pair[4 * h..].as_mut_ptr().cast(), x[h]);
                    _mm256_storeu_si256(pair[8 + 4 * h..].as_mut_ptr().cast(), y[h]);
                }
                sums[2 * h] = _mm256_add_epi64(sums[2 * h], _mm256_mul_epu32(x[h], y[h]));
                sums[2 * h + 1] = _mm256_add_epi32(sums[2 * h + 1], _mm256_mullo_epi32(x[h], _mm256_shuffle_epi32::<0b10_11_00_01>(y[h])));
            }
        }
    }
    for (terms, sums) in col_terms.iter_mut().zip(&sums) {
        for h in 0..2 {
            // Safety: a 4-u64 store within the block's 8 terms.
            unsafe { _mm256_storeu_si256(terms[4 * h..].as_mut_ptr().cast(), products(sums[2 * h], sums[2 * h + 1])) };
        }
    }
}

/// Sums of 64-bit lane products x y mod 2^64 from their two accumulators: the low
/// products x_lo y_lo (`vpmuludq`) and the cross terms x_lo y_hi and x_hi y_lo, added
/// as 32-bit halves (`vpmulld` against y with its halves swapped), which go to the
/// high half.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn products(lo: std::arch::x86_64::__m256i, cross: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    _mm256_add_epi64(lo, _mm256_slli_epi64::<32>(_mm256_add_epi32(cross, _mm256_srli_epi64::<32>(cross))))
}

/// How many rows ahead `pack_pairs` prefetches.
const PREFETCH: usize = 8;

/// One pair of depths in `matmul_avx2`'s 2 x 8 tile: for rows r and column
/// vectors h, (a_2q + b_2q+1)(a_2q+1 + b_2q) into the low-product and cross-term
/// accumulators.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn pair_step(
    lo: &mut [std::arch::x86_64::__m256i; 4],
    cross: &mut [std::arch::x86_64::__m256i; 4],
    brow: &[u64; 16],
    x: [[u64; 2]; 2],
) {
    use std::arch::x86_64::*;
    // Safety: the caller enables AVX2; each load reads 4 of the panel row's 16 u64.
    unsafe {
        let bv = [0, 4, 8, 12].map(|t| _mm256_loadu_si256(brow[t..].as_ptr().cast()));
        for (r, [x0, x1]) in x.into_iter().enumerate() {
            let (x0, x1) = (_mm256_set1_epi64x(x0 as i64), _mm256_set1_epi64x(x1 as i64));
            for h in 0..2 {
                let s = _mm256_add_epi64(x0, bv[2 + h]);
                let t = _mm256_add_epi64(x1, bv[h]);
                let swapped = _mm256_shuffle_epi32::<0b10_11_00_01>(t);
                lo[2 * r + h] = _mm256_add_epi64(lo[2 * r + h], _mm256_mul_epu32(s, t));
                cross[2 * r + h] = _mm256_add_epi32(cross[2 * r + h], _mm256_mullo_epi32(s, swapped));
            }
        }
    }
}

/// Rows of C per register tile.
const MR: usize = 8;
/// Columns of C per register tile: two 512-bit vectors.
const NR: usize = 16;
/// Depth of a packed slice of a B panel: KC x NR elements, 16 KiB, stay in L1.
const KC: usize = 128;

/// C += A B. Register tiles of MR x NR accumulators (16 vectors on AVX-512): each B
/// vector loaded serves MR rows. Column panels outermost; each panel of B is copied,
/// KC rows at a time, into a contiguous buffer that stays in L1 while every row tile
/// of A passes over it. Read in place instead (B's rows are 8 KiB apart for a
/// CIFAR-10 convolution) the kernel ran at 13.6 G multiply-accumulates per second
/// here; packed, `kernels_bench` measures 16.7 against 17.4 to 18.0 for a loop of the
/// same vector multiply-adds on registers alone.
#[inline(always)]
fn matmul_into(a: &[u64], b: &[u64], c: &mut [u64], m: usize, n: usize, v: usize) {
    let full_cols = v - v % NR;
    let full_rows = m - m % MR;
    let mut panel = vec![[0u64; NR]; KC.min(n)];
    for j in (0..full_cols).step_by(NR) {
        for k0 in (0..n).step_by(KC) {
            let depth = KC.min(n - k0);
            for (dk, row) in panel[..depth].iter_mut().enumerate() {
                let at = (k0 + dk) * v + j;
                row.copy_from_slice(&b[at..at + NR]);
            }
            for i in (0..full_rows).step_by(MR) {
                let mut acc = [[0u64; NR]; MR];
                for (dk, brow) in panel[..depth].iter().enumerate() {
                    let k = k0 + dk;
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        let ar = a[(i + r) * n + k];
                        for t in 0..NR {
                            acc_r[t] = acc_r[t].wrapping_add(ar.wrapping_mul(brow[t]));
                        }
                    }
                }
                for (r, acc_r) in acc.iter().enumerate() {
                    let row = &mut c[(i + r) * v + j..(i + r) * v + j + NR];
                    for t in 0..NR {
                        row[t] = row[t].wrapping_add(acc_r[t]);
                    }
                }
            }
        }
    }
    edges(a, b, c, m, n, v, full_rows, full_cols);
}

/// What the tiles leave: rows from `full_rows` over all columns, then columns from
/// `full_cols` over the rows before.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn edges(a: &[u64], b: &[u64], c: &mut [u64], m: usize, n: usize, v: usize, full_rows: usize, full_cols: usize) {
    let edge = |c: &mut [u64], rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
        for i in rows {
            for k in 0..n {
                let aik = a[i * n + k];
                let (brow, crow) = (&b[k * v..(k + 1) * v], &mut c[i * v..(i + 1) * v]);
                for j in cols.clone() {
                    crow[j] = crow[j].wrapping_add(aik.wrapping_mul(brow[j]));
                }
            }
        }
    };
    // (An empty range of columns still walked all of A: 37,000 steps for nothing per
    // CIFAR-10 convolution product.)
    if full_rows < m {
        edge(c, full_rows..m, 0..v);
    }
    if full_cols < v {
        edge(c, 0..full_rows, full_cols..v);
    }
}

/// Geometry of a 2-D convolution or pooling window over a [C, H, W] map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl Window {
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.height + 2 * self.padding.0 - self.kernel.0) / self.stride.0 + 1,
            (self.width + 2 * self.padding.1 - self.kernel.1) / self.stride.1 + 1,
        )
    }

    /// Rows of the im2col matrix: C * kh * kw.
    pub fn patch(&self) -> usize {
        self.channels * self.kernel.0 * self.kernel.1
    }
}

/// Walks the transposed im2col matrix ((C kh kw) x (oh ow)) in runs: calls
/// `f(row, oy, ox0, ix0, iy, len)` for each run of `len` entries of matrix row `row`
/// at output row `oy` and columns ox0.. that read input row `iy`, columns ix0,
/// ix0 + stride, ... of channel-major input plane `row / (kh kw)`. Entries in the
/// padding are skipped (they stay zero). With stride 1 a run is a contiguous copy.
#[inline(always)]
pub(crate) fn for_each_run(w: &Window, mut f: impl FnMut(usize, usize, usize, usize, usize, usize)) {
    for row in 0..w.patch() {
        runs_of_row(w, row, |oy, ox0, ix0, plane_row, len| f(row, oy, ox0, ix0, plane_row, len));
    }
}

/// The runs of one row of the transposed im2col matrix, in order: `f(oy, ox0, ix0,
/// iy, len)` as `for_each_run` calls it.
#[inline(always)]
pub(crate) fn runs_of_row(w: &Window, row: usize, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let (oh, ow) = w.out_hw();
    let (kh, kw) = w.kernel;
    let (sy, sx) = w.stride;
    let (py, px) = (w.padding.0 as isize, w.padding.1 as isize);
    let (c, ky, kx) = (row / (kh * kw), (row / kw) % kh, row % kw);
    // Output columns whose input column ox * sx + kx - px lies in [0, W).
    let first = (px - kx as isize).max(0) as usize;
    let ox0 = first.div_ceil(sx);
    let ox1 = ((w.width as isize + px - kx as isize - 1).div_euclid(sx as isize) + 1).clamp(0, ow as isize) as usize;
    if ox0 >= ox1 {
        return;
    }
    for oy in 0..oh {
        let iy = (oy * sy + ky) as isize - py;
        if iy < 0 || iy >= w.height as isize {
            continue;
        }
        let ix0 = (ox0 * sx + kx) as isize - px;
        f(oy, ox0, ix0 as usize, c * w.height + iy as usize, ox1 - ox0);
    }
}

/// Writes the transposed im2col matrix of one [C, H, W] map into `out`, whose rows
/// are `ld` long, at column `offset` (so a chunk of images can sit side by side).
pub fn im2col_into<T: Copy>(x: &[T], w: &Window, out: &mut [T], ld: usize, offset: usize) {
    let (_, ow) = w.out_hw();
    let (width, sx) = (w.width, w.stride.1);
    for_each_run(w, |row, oy, ox0, ix0, plane_row, len| {
        let src = &x[plane_row * width + ix0..];
        let dst = &mut out[row * ld + offset + oy * ow + ox0..][..len];
        if sx == 1 {
            dst.copy_from_slice(&src[..len]);
        } else {
            for (j, d) in dst.iter_mut().enumerate() {
                *d = src[j * sx];
            }
        }
    });
}

/// The adjoint of `im2col_into`: adds every entry back to the input position it
/// was read from.
pub fn col2im_from(cols: &[f32], w: &Window, ld: usize, offset: usize, dx: &mut [f32]) {
    let (_, ow) = w.out_hw();
    let (width, sx) = (w.width, w.stride.1);
    for_each_run(w, |row, oy, ox0, ix0, plane_row, len| {
        let src = &cols[row * ld + offset + oy * ow + ox0..][..len];
        let dst = &mut dx[plane_row * width + ix0..];
        if sx == 1 {
            // Contiguous: a slice add the compiler vectorises.
            dst[..len].iter_mut().zip(src).for_each(|(d, v)| *d += v);
        } else {
            for (j, v) in src.iter().enumerate() {
                dst[j * sx] += v;
            }
        }
    });
}

/// The transposed im2col matrix of a [C, H, W] map: (C kh kw) x (oh ow), zeros where
/// the window reaches into the padding. A kernel matrix O x (C kh kw) times it gives
/// the convolution in [O, oh, ow] layout.
///
/// The runs come in order of their place in the matrix, so it is written front to
/// back, the padding's zeros as they come: zeroed first and then written, CIFAR-10's
/// conv2 input (64 x 32 x 32, 3 x 3) took 0.28-0.32 ms, written in order 0.22
/// (medians of 30, three runs in one process).
pub fn im2col_t<T: Copy + Default>(x: &[T], w: &Window) -> Vec<T> {
    let (oh, ow) = w.out_hw();
    let (len, width, sx) = (w.patch() * oh * ow, w.width, w.stride.1);
    let mut out = Vec::with_capacity(len);
    for_each_run(w, |row, oy, ox0, ix0, plane_row, n| {
        out.resize(row * oh * ow + oy * ow + ox0, T::default());
        let src = &x[plane_row * width + ix0..];
        if sx == 1 {
            out.extend_from_slice(&src[..n]);
        } else {
            out.extend((0..n).map(|j| src[j * sx]));
        }
    });
    out.resize(len, T::default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_kernel_matches_the_definition_on_ragged_shapes() {
        let mut g = crate::mpc::prg::Prg::new(5, "mm");
        for (m, n, v) in [
            (1, 1, 1),
            (4, 3, 16),
            (5, 7, 17),
            (9, 2, 33),
            (64, 27, 40),
            (10, 1024, 1),
            (7, 1027, 1),
            (3, 2, 1),
            (16, 300, 32),
            (17, 129, 49),
            (6, 1100, 20),
            (5, 1025, 150),
            (4, 33, 72),
            // A last block narrower than 8 columns: in a later group, and alone.
            (3, 10, 71),
            (4, 3, 5),
            (64, 512, 36),
        ] {
            let (a, b) = (g.ring(m * n), g.ring(n * v));
            let mut want = vec![0u64; m * v];
            for i in 0..m {
                for j in 0..v {
                    want[i * v + j] = (0..n).fold(0u64, |s, k| s.wrapping_add(a[i * n + k].wrapping_mul(b[k * v + j])));
                }
            }
            assert_eq!(matmul(&a, &b, m, n, v), want, "{m}x{n}x{v}");
            let mut generic = vec![0u64; m * v];
            matmul_into(&a, &b, &mut generic, m, n, v);
            assert_eq!(generic, want, "generic {m}x{n}x{v}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut avx2 = vec![0u64; m * v];
                // Safety: the variant's features were just detected.
                unsafe { matmul_avx2(&a, &b, &mut avx2, m, n, v) };
                assert_eq!(avx2, want, "avx2 {m}x{n}x{v}");
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> = <x, col2im(c)> for strides and paddings.
        for (stride, padding) in [((1, 1), (1, 1)), ((2, 1), (1, 0)), ((2, 3), (0, 2))] {
            let w = Window { channels: 2, height: 5, width: 7, kernel: (3, 2), stride, padding };
            let (oh, ow) = w.out_hw();
            let x: Vec<f32> = (0..70).map(|i| (i % 13) as f32 - 6.0).collect();
            let c: Vec<f32> = (0..w.patch() * oh * ow).map(|i| (i % 7) as f32 - 3.0).collect();
            let lhs: f32 = im2col_t(&x, &w).iter().zip(&c).map(|(a, b)| a * b).sum();
            let mut back = vec![0f32; 70];
            col2im_from(&c, &w, oh * ow, 0, &mut back);
            let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{stride:?} {padding:?}");
        }
    }

    #[test]
    fn matmul_wraps_mod_2_64() {
        let a = [1u64, 2, u64::MAX, 4]; // [[1, 2], [-1, 4]]
        let b = [5u64, 6, 7, 8];
        assert_eq!(matmul(&a, &b, 2, 2, 2), vec![19, 22, 23, 26]);
    }

    #[test]
    fn im2col_t_writes_what_im2col_into_writes_over_zeros() {
        for (c, h, wd, k, st, pad) in [
            (2, 4, 5, (3, 3), (1, 1), (1, 1)),
            (3, 7, 6, (3, 3), (2, 2), (1, 1)),
            (1, 6, 7, (5, 5), (1, 2), (2, 2)),
            (2, 4, 4, (2, 2), (2, 2), (0, 0)),
            (1, 2, 2, (3, 3), (1, 1), (2, 2)),
        ] {
            let w = Window { channels: c, height: h, width: wd, kernel: k, stride: st, padding: pad };
            let x: Vec<u64> = (1..=(c * h * wd) as u64).collect();
            let (oh, ow) = w.out_hw();
            let mut expected = vec![0u64; w.patch() * oh * ow];
            im2col_into(&x, &w, &mut expected, oh * ow, 0);
            assert_eq!(im2col_t(&x, &w), expected, "{w:?}");
        }
    }

    #[test]
    fn im2col_convolution_matches_direct_sum() {
        let w = Window { channels: 2, height: 4, width: 5, kernel: (3, 3), stride: (2, 1), padding: (1, 1) };
        let x: Vec<u64> = (0..40).map(|i| i * 7 % 11).collect();
        let k: Vec<u64> = (0..3 * w.patch() as u64).map(|i| i % 5).collect();
        let y = matmul(&k, &im2col_t(&x, &w), 3, w.patch(), w.out_hw().0 * w.out_hw().1);
        let (oh, ow) = w.out_hw();
        assert_eq!((oh, ow), (2, 5));
        for o in 0..3 {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0u64;
                    for c in 0..2 {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = ((oy * 2 + ky) as isize - 1, (ox + kx) as isize - 1);
                                if (0..4).contains(&iy) && (0..5).contains(&ix) {
                                    s += k[o * 18 + c * 9 + ky * 3 + kx] * x[c * 20 + iy as usize * 5 + ix as usize];
                                }
                            }
                        }
                    }
                    assert_eq!(y[(o * oh + oy) * ow + ox], s);
                }
            }
        }
    }
}
