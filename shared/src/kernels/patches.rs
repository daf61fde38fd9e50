//! Moving between a channels-last grid and its 4x4 patches (stride 2, padding 1).
//!
//! `gather` writes, for every pixel of the half-size output grid, the 16 input pixels its
//! kernel covers as one row (`[ky][kx][c]`; pixels outside the grid read as zero). `scatter`
//! is its adjoint: it adds every row back onto the pixels it came from. A halving convolution
//! is `gather` then a matrix product; a doubling transposed convolution is a matrix product
//! then `scatter`; each one's gradient uses the other.

/// A channels-last grid `[batch, height, width, channels]` (the full-size side of the pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl Grid {
    pub fn dims(&self) -> [usize; 4] {
        [self.batch, self.height, self.width, self.channels]
    }

    pub fn len(&self) -> usize {
        self.batch * self.height * self.width * self.channels
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixels of the half-size grid, i.e. rows of the patch matrix.
    pub fn patch_rows(&self) -> usize {
        self.batch * (self.height / 2) * (self.width / 2)
    }

    /// Values in one patch row.
    pub fn patch_width(&self) -> usize {
        16 * self.channels
    }

    /// Kernel rows `ky` of output row `oy` that land inside the grid, with the input row each
    /// reads.
    fn rows(&self, oy: usize) -> impl Iterator<Item = (usize, usize)> {
        let height = self.height;
        (0..4).filter_map(move |ky| {
            (2 * oy + ky)
                .checked_sub(1)
                .filter(|&y| y < height)
                .map(|y| (ky, y))
        })
    }

    fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// For patch column `2 * ox + kx - 1` of kernel columns `0..4`: the first kernel column and
    /// the input column it reads, and how many consecutive kernel columns stay inside the grid.
    fn columns(&self, ox: usize) -> (usize, usize, usize) {
        let first_kx = usize::from(ox == 0);
        let x = 2 * ox + first_kx - 1;
        let count = (4 - first_kx).min(self.width - x);
        (first_kx, x, count)
    }
}

/// `values [B, H, W, C]` -> `patches [B * H/2 * W/2, 16 * C]`. Every value of `patches` is
/// written (taps outside the grid as zero), so it may hold anything beforehand.
pub fn gather(values: &[f32], grid: Grid, patches: &mut [f32]) {
    assert_eq!(values.len(), grid.len(), "gather: grid size");
    let (ho, wo, c) = (grid.height / 2, grid.width / 2, grid.channels);
    let row = grid.patch_width();
    assert_eq!(
        patches.len(),
        grid.patch_rows() * row,
        "gather: patch matrix size"
    );
    for (b, image) in patches.chunks_mut(ho * wo * row).enumerate() {
        let source = &values[b * grid.image_len()..][..grid.image_len()];
        for oy in 0..ho {
            for ox in 0..wo {
                let patch = &mut image[(oy * wo + ox) * row..][..row];
                let (kx, x, count) = grid.columns(ox);
                let interior = oy > 0 && oy + 1 < ho && kx == 0 && count == 4;
                if !interior {
                    patch.fill(0.0);
                }
                for (ky, y) in grid.rows(oy) {
                    let from = &source[(y * grid.width + x) * c..][..count * c];
                    patch[(ky * 4 + kx) * c..][..count * c].copy_from_slice(from);
                }
            }
        }
    }
}

super::simd::wide_fn! {
    /// Adds patches `[B * H/2 * W/2, 16 * C]` onto `values [B, H, W, C]`, summing where patches
    /// overlap: the adjoint of [`gather`].
    pub fn scatter_add(patches: &[f32], grid: Grid, values: &mut [f32]) {
        let (ho, wo, c) = (grid.height / 2, grid.width / 2, grid.channels);
        let row = grid.patch_width();
        assert_eq!(
            patches.len(),
            grid.patch_rows() * row,
            "scatter: patch matrix size"
        );
        assert_eq!(values.len(), grid.len(), "scatter: grid size");
        for (b, image) in values.chunks_mut(grid.image_len()).enumerate() {
            let rows = &patches[b * ho * wo * row..][..ho * wo * row];
            for oy in 0..ho {
                for ox in 0..wo {
                    let patch = &rows[(oy * wo + ox) * row..][..row];
                    let (kx, x, count) = grid.columns(ox);
                    for (ky, y) in grid.rows(oy) {
                        let to = &mut image[(y * grid.width + x) * c..][..count * c];
                        let from = &patch[(ky * 4 + kx) * c..][..count * c];
                        for (t, f) in to.iter_mut().zip(from) {
                            *t += f;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid {
            batch: 2,
            height: 4,
            width: 6,
            channels: 3,
        }
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()
    }

    /// Straight from the definition: patch (b, oy, ox) tap (ky, kx) reads pixel
    /// (2 oy + ky - 1, 2 ox + kx - 1) when it lies inside the grid.
    fn gather_by_definition(values: &[f32], g: Grid) -> Vec<f32> {
        let mut out = Vec::new();
        for b in 0..g.batch {
            for oy in 0..g.height / 2 {
                for ox in 0..g.width / 2 {
                    for ky in 0..4 {
                        for kx in 0..4 {
                            for ch in 0..g.channels {
                                let (y, x) = (2 * oy + ky, 2 * ox + kx);
                                let inside =
                                    (1..=g.height).contains(&y) && (1..=g.width).contains(&x);
                                out.push(if inside {
                                    values[((b * g.height + y - 1) * g.width + x - 1) * g.channels
                                        + ch]
                                } else {
                                    0.0
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn gather_reads_every_tap_from_its_pixel() {
        let g = grid();
        let values = ramp(g.len());
        // Whatever the buffer held before is overwritten.
        let mut patches = vec![f32::NAN; g.patch_rows() * g.patch_width()];
        gather(&values, g, &mut patches);
        assert_eq!(patches, gather_by_definition(&values, g));
    }

    #[test]
    fn scatter_is_the_adjoint_of_gather() {
        // <gather(v), p> == <v, scatter(p)> for all v, p is what makes one the other's gradient.
        let g = grid();
        let values = ramp(g.len());
        let patches: Vec<f32> = (0..g.patch_rows() * g.patch_width())
            .map(|i| ((i * 7) % 11) as f32 - 5.0)
            .collect();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum::<f64>();
        let mut gathered = vec![0f32; patches.len()];
        gather(&values, g, &mut gathered);
        let left = dot(&gathered, &patches);
        let mut scattered = vec![0f32; g.len()];
        scatter_add(&patches, g, &mut scattered);
        let right = dot(&values, &scattered);
        assert!(
            (left - right).abs() < 1e-6 * left.abs().max(1.0),
            "{left} vs {right}"
        );
    }
}
