//! Ring matrix products and the im2col layout they run convolutions on. This is the
//! hot loop of secure inference: every linear layer costs five products of its size.

/// C = A B over Z_2^64, A m x n, B n x v, all row-major.
pub fn matmul(a: &[u64], b: &[u64], m: usize, n: usize, v: usize) -> Vec<u64> {
    debug_assert_eq!(a.len(), m * n);
    debug_assert_eq!(b.len(), n * v);
    let mut c = vec![0u64; m * v];
    // i-k-j order: the inner loop runs along contiguous rows of B and C, which the
    // compiler vectorises (64-bit lane multiplies where the CPU has them).
    for (i, row) in c.chunks_exact_mut(v.max(1)).enumerate().take(m) {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0 {
                continue;
            }
            let brow = &b[k * v..(k + 1) * v];
            for (cj, bj) in row.iter_mut().zip(brow) {
                *cj = cj.wrapping_add(aik.wrapping_mul(*bj));
            }
        }
    }
    c
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

/// The transposed im2col matrix of a [C, H, W] map: (C kh kw) x (oh ow), zeros where
/// the window reaches into the padding. A kernel matrix O x (C kh kw) times it gives
/// the convolution in [O, oh, ow] layout.
pub fn im2col_t(x: &[u64], w: &Window) -> Vec<u64> {
    let (oh, ow) = w.out_hw();
    let (kh, kw) = w.kernel;
    let mut out = vec![0u64; w.patch() * oh * ow];
    for c in 0..w.channels {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = (c * kh + ky) * kw + kx;
                let dst = &mut out[row * oh * ow..(row + 1) * oh * ow];
                for oy in 0..oh {
                    let iy = (oy * w.stride.0 + ky) as isize - w.padding.0 as isize;
                    if iy < 0 || iy >= w.height as isize {
                        continue;
                    }
                    for ox in 0..ow {
                        let ix = (ox * w.stride.1 + kx) as isize - w.padding.1 as isize;
                        if ix >= 0 && ix < w.width as isize {
                            dst[oy * ow + ox] = x[(c * w.height + iy as usize) * w.width + ix as usize];
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
