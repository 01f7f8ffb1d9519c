//! Ring matrix products and the im2col layout they run convolutions on. This is the
//! hot loop of secure inference: every linear layer costs five products of its size.

/// C = A B over Z_2^64, A m x n, B n x v, all row-major.
///
/// The kernel is compiled twice: for AVX-512 (64-bit lane multiplies, `vpmullq`) and
/// for any x86-64; the CPU is asked at run time which one to use, so one binary is
/// fast here and still runs everywhere.
pub fn matmul(a: &[u64], b: &[u64], m: usize, n: usize, v: usize) -> Vec<u64> {
    assert_eq!(a.len(), m * n, "A is not m x n");
    assert_eq!(b.len(), n * v, "B is not n x v");
    let mut c = vec![0u64; m * v];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
            // Safety: the features this function is compiled for were just detected.
            unsafe { matmul_avx512(a, b, &mut c, m, n, v) };
            return c;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // Safety: as above.
            unsafe { matmul_avx2(a, b, &mut c, m, n, v) };
            return c;
        }
    }
    matmul_into(a, b, &mut c, m, n, v);
    c
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn matmul_avx512(a: &[u64], b: &[u64], c: &mut [u64], m: usize, n: usize, v: usize) {
    matmul_into(a, b, c, m, n, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn matmul_avx2(a: &[u64], b: &[u64], c: &mut [u64], m: usize, n: usize, v: usize) {
    matmul_into(a, b, c, m, n, v)
}

/// Rows of C per register tile.
const MR: usize = 4;
/// Columns of C per register tile: two 512-bit vectors.
const NR: usize = 16;

/// C += A B. Register tiles of MR x NR accumulators: each B vector loaded serves MR
/// rows. Column panels outermost, so a panel of B (n x NR) stays in cache while every
/// row tile of A passes over it.
#[inline(always)]
fn matmul_into(a: &[u64], b: &[u64], c: &mut [u64], m: usize, n: usize, v: usize) {
    let full_cols = v - v % NR;
    let full_rows = m - m % MR;
    for j in (0..full_cols).step_by(NR) {
        for i in (0..full_rows).step_by(MR) {
            let mut acc = [[0u64; NR]; MR];
            for k in 0..n {
                let brow: &[u64; NR] = b[k * v + j..k * v + j + NR].try_into().expect("NR columns");
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
    // Edges: leftover rows over all columns, leftover columns over the full rows.
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
    edge(c, full_rows..m, 0..v);
    edge(c, 0..full_rows, full_cols..v);
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

/// Calls `f(entry, input)` for every entry of the transposed im2col matrix
/// ((C kh kw) x (oh ow), row-major) that reads an input position; entries in the
/// padding are skipped. im2col gathers through it, its adjoint scatters.
#[inline(always)]
pub fn for_each_tap(w: &Window, mut f: impl FnMut(usize, usize)) {
    let (oh, ow) = w.out_hw();
    let (kh, kw) = w.kernel;
    for c in 0..w.channels {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = ((c * kh + ky) * kw + kx) * oh * ow;
                for oy in 0..oh {
                    let iy = (oy * w.stride.0 + ky) as isize - w.padding.0 as isize;
                    if iy < 0 || iy >= w.height as isize {
                        continue;
                    }
                    for ox in 0..ow {
                        let ix = (ox * w.stride.1 + kx) as isize - w.padding.1 as isize;
                        if ix >= 0 && ix < w.width as isize {
                            f(row + oy * ow + ox, (c * w.height + iy as usize) * w.width + ix as usize);
                        }
                    }
                }
            }
        }
    }
}

/// The transposed im2col matrix of a [C, H, W] map: (C kh kw) x (oh ow), zeros where
/// the window reaches into the padding. A kernel matrix O x (C kh kw) times it gives
/// the convolution in [O, oh, ow] layout.
pub fn im2col_t<T: Copy + Default>(x: &[T], w: &Window) -> Vec<T> {
    let (oh, ow) = w.out_hw();
    let mut out = vec![T::default(); w.patch() * oh * ow];
    for_each_tap(w, |entry, input| out[entry] = x[input]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_kernel_matches_the_definition_on_ragged_shapes() {
        let mut g = crate::mpc::prg::Prg::new(5, "mm");
        for (m, n, v) in [(1, 1, 1), (4, 3, 16), (5, 7, 17), (9, 2, 33), (64, 27, 40), (10, 1024, 1)] {
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
        }
    }

    #[test]
    fn matmul_wraps_mod_2_64() {
        let a = [1u64, 2, u64::MAX, 4]; // [[1, 2], [-1, 4]]
        let b = [5u64, 6, 7, 8];
        assert_eq!(matmul(&a, &b, 2, 2, 2), vec![19, 22, 23, 26]);
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
